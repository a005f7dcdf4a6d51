"""Offline evaluation on a leave-last-out split, shared by the export (early stopping, ablations, each ONNX
variant's validation) and the bench: queries, histories, and full-ranking metrics.

Everything that reports a metric goes through `evaluate_queries`, so all numbers are computed the same way
by `recengine.metrics.evaluate_full_ranking`. A bundle is measured through the code that serves it:
`engine_row_scorer` builds `RowQuery`s and asks `Engine.score_catalogue` (the serving pipeline with exact
retrieval) for full score rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .metrics import RankingResult, evaluate_full_ranking
from .requests import RowQuery
from .split import Split, to_csr

STAGES = ("valid", "test")
RowScoreFn = Callable[[np.ndarray], np.ndarray]


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

    def excluded(self, q: int) -> np.ndarray:
        """Item rows query `q` must not rank (its known items)."""
        rows = self.exclude_indices[self.exclude_indptr[q]:self.exclude_indptr[q + 1]]
        if self.exclude_extra is not None:
            extra = [x[q] for x in self.exclude_extra if x[q] >= 0]
            if extra:
                rows = np.concatenate([rows, np.asarray(extra, dtype=np.int64)])
        return rows


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
    q_indices = (np.concatenate([indices[indptr[u]:indptr[u + 1]] for u in users]) if len(users)
                 else np.zeros(0, np.int64))
    extra = None
    if stage == "test":
        valid_item = np.full(split.n_users, -1, dtype=np.int64)
        valid_item[split.valid.user] = split.valid.item
        extra = [valid_item[users]]
    return Queries(users=users, targets=targets, scene_rows=order, exclude_indptr=q_indptr,
                   exclude_indices=q_indices.astype(np.int64), exclude_extra=extra,
                   popularity=split.item_popularity())


def evaluate_queries(score_queries: RowScoreFn, queries: Queries, batch_size: int = 256) -> RankingResult:
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


def csr_rows(indptr: np.ndarray, indices: np.ndarray, users: np.ndarray) -> list[np.ndarray]:
    """Each user's slice of a CSR history (oldest first)."""
    return [indices[indptr[u]:indptr[u + 1]] for u in np.asarray(users, dtype=np.int64)]


def engine_row_scorer(engine: Any, histories_: list[np.ndarray], scene: np.ndarray, profile: np.ndarray,
                      exclude: list[np.ndarray], fresh: float = 0.0, k: int = 10,
                      long_tail: float = 0.0) -> RowScoreFn:
    """Row scores of `engine` as served: query q reads `histories_[q]` in `scene[q]` with `profile[q]`,
    never ranks `exclude[q]`; `Engine.score_catalogue` does the scoring (one path with `recommend`).
    `fresh`/`k`: the fresh-item policy's share of the first k slots (see `RecommendRequest.fresh`)."""
    queries = [RowQuery(history=h, scene=s, profile=p, exclude=e, fresh=fresh, k=k, long_tail=long_tail)
               for h, s, p, e in zip(histories_, scene, profile, exclude)]

    def score(rows: np.ndarray) -> np.ndarray:
        return engine.score_catalogue([queries[int(r)] for r in rows])

    return score


def evaluate_engine(engine: Any, split: Split, stage: str, scene_codes: np.ndarray | None = None) -> dict[str, float]:
    """Full-ranking metrics of a served bundle on `stage` of `split` (the bundle's catalogue and user rows
    must be the split's item and user indices, as for a bundle exported from the same data).

    `scene_codes`: int64 [len(held-out events), slots], the encoded scene of each held-out event (None:
    unknown scenes). Profiles are the bundle's stored ones."""
    q = make_queries(split, stage)
    indptr, indices = histories(split, stage)
    slots = engine.scene_slots
    scene = (np.zeros((len(q.users), slots), np.int64) if scene_codes is None
             else np.asarray(scene_codes, dtype=np.int64)[q.scene_rows])
    profile = engine.user_profiles(q.users)
    scorer = engine_row_scorer(engine, csr_rows(indptr, indices, q.users), scene, profile,
                               [q.excluded(i) for i in range(len(q.users))])
    return evaluate_queries(scorer, q).metrics


__all__ = ["Queries", "STAGES", "make_queries", "evaluate_queries", "histories", "csr_rows", "engine_row_scorer",
           "evaluate_engine", "RowScoreFn"]
