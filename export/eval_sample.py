"""Which users the export's evaluations score: every query user, or a seeded sample of at most `EVAL_USERS`.

A full-ranking evaluation scores every item for every query user, so one pass costs users x items. The export
runs one at every early-stopping check (graph, user tower, fusion head), for each ablation and for each ONNX
variant; with users growing with the interactions, those passes made the export's cost grow with the data
squared (`recengine bench export`, 2026-11-30: fusion CPU exponent 1.97, eval_int8 1.46). On a sample of at
most `EVAL_USERS` users a pass costs at most `EVAL_USERS` x items: linear in the catalogue, and no longer
growing with the users. Data sets with at most `EVAL_USERS` query users (the embedded MovieLens: 610) are
evaluated on every user, exactly as before.
"""

from __future__ import annotations

import numpy as np

from recengine.evaluation import Queries

EVAL_USERS = 5_000
"""Most query users one export evaluation scores (per stage: validation, test).

Why 5,000: NDCG@10 of one query is 0 or 1/log2(rank+1), so its spread over users is wide: on the embedded
MovieLens's standard export (validation NDCG@10 0.0571, as served) the per-user standard deviation is 0.180,
which puts the standard error of a mean over 5,000 users at 0.0025 (10,000 users: 0.0018, for twice the cost
of every pass). Early stopping and the fusion head's keep-or-drop decision compare two models on the same
users (paired), whose difference is estimated more tightly than either number. A pass over a 1M-item
catalogue stays at 5e9 inner products."""
EVAL_SEED = 0
"""Seed of the sample. Fixed (not the export's seed): every evaluation of an export, and exports with different
training seeds, score the same users, so their numbers compare."""


def sample_rows(n: int, max_users: int = EVAL_USERS, seed: int = EVAL_SEED) -> np.ndarray:
    """Sorted rows of a seeded sample of `min(n, max_users)` of `n` queries (all of them, in order, when
    `n <= max_users` or `max_users <= 0`)."""
    if max_users <= 0 or n <= max_users:
        return np.arange(n, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_users, replace=False)).astype(np.int64)


def subset_queries(queries: Queries, rows: np.ndarray) -> Queries:
    """The queries at `rows` (in that order), exclusions and extra exclusions included."""
    rows = np.asarray(rows, dtype=np.int64)
    starts, ends = queries.exclude_indptr[rows], queries.exclude_indptr[rows + 1]
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(ends - starts, out=indptr[1:])
    indices = (np.concatenate([queries.exclude_indices[s:e] for s, e in zip(starts, ends)]) if len(rows)
               else np.zeros(0, np.int64)).astype(np.int64)
    extra = None if queries.exclude_extra is None else [np.asarray(x)[rows] for x in queries.exclude_extra]
    return Queries(users=queries.users[rows], targets=queries.targets[rows], scene_rows=queries.scene_rows[rows],
                   exclude_indptr=indptr, exclude_indices=indices, exclude_extra=extra,
                   popularity=queries.popularity)


def sample_queries(queries: Queries, max_users: int = EVAL_USERS, seed: int = EVAL_SEED) -> Queries:
    """`queries` itself when it has at most `max_users` users, else a seeded sample of `max_users` of them
    (kept in the original order)."""
    n = len(queries.users)
    if max_users <= 0 or n <= max_users:
        return queries
    return subset_queries(queries, sample_rows(n, max_users, seed))


__all__ = ["EVAL_USERS", "EVAL_SEED", "sample_rows", "subset_queries", "sample_queries"]
