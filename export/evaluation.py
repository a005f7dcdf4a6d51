"""Validation/test queries of the leave-last-out split, scored with the foundation's full-ranking metrics.

Everything that reports a metric (training early stopping, ablations, ONNX variants, the bench) goes through
`evaluate_users`, so all numbers are computed the same way by `recengine.metrics.evaluate_full_ranking`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from recengine.metrics import RankingResult, evaluate_full_ranking
from recengine.split import Split, to_csr

STAGES = ("valid", "test")


@dataclass(frozen=True)
class Queries:
    """One query per evaluated user: its held-out item and the items to exclude from its ranking."""

    users: np.ndarray
    targets: np.ndarray
    scene_rows: np.ndarray
    """Row of the held-out event inside `split.valid` / `split.test` (its scene is the request scene)."""
    exclude_indptr: np.ndarray
    exclude_indices: np.ndarray
    exclude_extra: list[np.ndarray] | None
    popularity: np.ndarray


def make_queries(split: Split, stage: str) -> Queries:
    """Queries of `stage` (valid: exclude train items; test: exclude train items and the valid item)."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    held = split.valid if stage == "valid" else split.test
    order = np.argsort(held.user, kind="stable")
    users = held.user[order].astype(np.int64)
    targets = held.item[order].astype(np.int64)
    indptr, indices = split.train_csr()
    # restrict the train CSR to the query users (query q <-> users[q])
    counts = indptr[users + 1] - indptr[users]
    q_indptr = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum(counts, out=q_indptr[1:])
    q_indices = np.concatenate([indices[indptr[u]:indptr[u + 1]] for u in users]) if len(users) else np.zeros(0, np.int64)
    extra = None
    if stage == "test":
        valid_item = np.full(split.n_users, -1, dtype=np.int64)
        valid_item[split.valid.user] = split.valid.item
        extra = [valid_item[users]]
    return Queries(users=users, targets=targets, scene_rows=order, exclude_indptr=q_indptr,
                   exclude_indices=q_indices.astype(np.int64), exclude_extra=extra,
                   popularity=split.item_popularity())


def evaluate_queries(score_queries: Callable[[np.ndarray], np.ndarray], queries: Queries,
                     batch_size: int = 256) -> RankingResult:
    """Full-ranking metrics; `score_queries(q_rows)` returns float [len(q_rows), n_items]."""
    return evaluate_full_ranking(score_queries, queries.targets, queries.exclude_indptr, queries.exclude_indices,
                                 queries.popularity, batch_size=batch_size, exclude_extra=queries.exclude_extra)


def histories(split: Split, stage: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-user chronological history visible at `stage` (CSR): train items, plus the valid item for test."""
    if stage == "valid":
        return split.train_csr()
    users = np.concatenate([split.train.user, split.valid.user])
    items = np.concatenate([split.train.item, split.valid.item])
    # valid events come after every train event of their user: a stable sort by user keeps the order
    return to_csr(users, items, split.n_users)


def left_padded(indptr: np.ndarray, indices: np.ndarray, users: np.ndarray, max_len: int) -> np.ndarray:
    """int64 [len(users), max_len] of the last `max_len` items per user, left-padded with -1."""
    out = np.full((len(users), max_len), -1, dtype=np.int64)
    for row, u in enumerate(users):
        seq = indices[indptr[u]:indptr[u + 1]][-max_len:]
        if len(seq):
            out[row, max_len - len(seq):] = seq
    return out
