"""ItemKNN: item-item cosine similarity with shrinkage and optional TF-IDF / BM25 weighting, K neighbours.

    sim(i, j) = w_i · w_j / (||w_i|| ||w_j|| + shrink)        (w_i = item i's column of the weighted matrix)

keeping each item's K most similar items (self excluded); score(u, j) = sum over the user's items i of
decay^age(i) sim(i, j), age 0 for the latest item (decay 1: the classic order-blind ItemKNN; below 1: the
recency-weighted item-based kNN that session-based recommendation uses, e.g. Ludewig & Jannach's SKNN
family, a strong baseline wherever the next item follows the last few).
The weighting is implicit's (`tfidf_weight`, `bm25_weight` applied to the item-user matrix, as
implicit's TFIDFRecommender / BM25Recommender do): it down-weights heavy users (idf) and, for BM25, long
item columns. `weighting="none", shrink=0` is plain cosine (implicit's CosineRecommender).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recengine._deps import require

from ._implicit import implicit_module
from .base import Recommender, TrainData, ValidateFn

WEIGHTINGS = ("none", "tfidf", "bm25")
DECAYS = (1.0, 0.7, 0.4)


def weighted_matrix(matrix: Any, weighting: str, k1: float = 1.2, b: float = 0.75) -> Any:
    """The binary user-item CSR matrix with implicit's TF-IDF or BM25 weights (per item-user entry)."""
    if weighting == "none":
        return matrix.astype(np.float64)
    nn = implicit_module("nearest_neighbours")
    if weighting == "tfidf":
        return nn.tfidf_weight(matrix.T.astype(np.float64)).T.tocsr()
    if weighting == "bm25":
        return nn.bm25_weight(matrix.T.astype(np.float64), K1=k1, B=b).T.tocsr()
    raise ValueError(f"ItemKNN weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")


BLOCK_BYTES = 1 << 28
"""Similarity rows are computed a block at a time, each block at most this big (256 MiB of float32): a dense
items x items matrix would need 10 GB at 50,000 items and get the bench killed."""


def knn_similarity(weighted: Any, k: int, shrink: float, block_bytes: int = BLOCK_BYTES) -> Any:
    """Sparse CSR [n_items, n_items]: row i holds item i's top-k shrunk cosine similarities (self excluded).

    Computed in blocks of item rows (each row's values and its top k do not depend on the other rows), so
    memory is bounded by `block_bytes` plus the k entries kept per item, whatever the catalogue."""
    sparse = require("scipy.sparse", "The ItemKNN baseline")
    n = weighted.shape[1]
    k = min(k, n - 1) if n > 1 else 0
    if k <= 0:
        return sparse.csr_matrix((n, n), dtype=np.float32)
    items = weighted.T.tocsr()
    sumsq = np.asarray(items.multiply(items).sum(axis=1), dtype=np.float64).ravel().astype(np.float32)
    norms = np.sqrt(np.maximum(sumsq.astype(np.float64), 0.0)).astype(np.float32)
    empty = norms == 0
    step = max(1, block_bytes // (4 * n))
    all_rows, all_cols, all_vals = [], [], []
    for start in range(0, n, step):
        stop = min(n, start + step)
        dots = np.asarray((items[start:stop] @ weighted).todense(), dtype=np.float32)
        dots[np.arange(stop - start), np.arange(start, stop)] = 0.0
        denom = norms[start:stop, None] * norms[None, :] + np.float32(shrink)
        np.divide(dots, denom, out=dots, where=denom > 0)
        dots[:, empty] = 0.0
        top = np.argpartition(-dots, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(dots, top, axis=1).ravel()
        keep = vals > 0
        all_rows.append(np.repeat(np.arange(start, stop), k)[keep])
        all_cols.append(top.ravel()[keep])
        all_vals.append(vals[keep])
    return sparse.csr_matrix((np.concatenate(all_vals), (np.concatenate(all_rows), np.concatenate(all_cols))),
                             shape=(n, n))


def recency_matrix(data: TrainData, decay: float) -> Any:
    """User x item CSR with decay^age for each history item (age 0 = the latest; a repeated item keeps its
    latest age)."""
    sparse = require("scipy.sparse", "The ItemKNN baseline")
    lengths = np.diff(data.indptr)
    pos = np.arange(data.indices.size) - np.repeat(data.indptr[:-1], lengths)
    age = np.repeat(lengths, lengths) - 1 - pos
    users = np.repeat(np.arange(data.n_users), lengths)
    m = sparse.csr_matrix((decay ** age.astype(np.float64), (users, data.indices)), shape=(data.n_users, data.n_items))
    m.sum_duplicates()
    return m


class ItemKNN(Recommender):
    """score(u, j) = sum over the user's items i of sim(i, j) over item i's K nearest neighbours."""

    name = "itemknn"

    @classmethod
    def grid(cls, profile: str) -> list[dict[str, Any]]:
        if profile == "quick":
            return [{"K": 20, "shrink": 0.0, "weighting": "none"}, {"K": 100, "shrink": 10.0, "weighting": "bm25"},
                    {"K": 100, "shrink": 10.0, "weighting": "bm25", "decay": 0.5}]
        # ~3-5 s per setting on MovieLens-small (one item-item product and a top-K per item). Most promising
        # first (a tuning budget cuts the tail): the best classic setting of earlier runs at each decay.
        first = [{"K": 50, "shrink": 100.0, "weighting": "bm25", "decay": d} for d in DECAYS]
        rest = [
            {"K": k, "shrink": s, "weighting": w, "decay": d}
            for d in DECAYS
            for w in WEIGHTINGS
            for s in (0.0, 10.0, 100.0)
            for k in (20, 50, 100, 200)
        ]
        return first + [p for p in rest if p not in first]

    def fit(self, data: TrainData, validate: ValidateFn | None = None) -> ItemKNN:
        p = self.params
        self._user_items = data.user_item_matrix()
        self._recency = recency_matrix(data, float(p.get("decay", 1.0))) if float(p.get("decay", 1.0)) < 1.0 \
            else self._user_items
        weighted = weighted_matrix(self._user_items, str(p.get("weighting", "none")))
        self._similarity = knn_similarity(weighted, int(p.get("K", 100)), float(p.get("shrink", 0.0)))
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.asarray((self._recency[users] @ self._similarity).todense(), dtype=np.float32)
