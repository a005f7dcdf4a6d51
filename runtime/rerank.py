"""Optional re-ranking of scored candidates: long-tail boost, MMR diversity, explanations.

Scores from the fusion head are logits on an arbitrary scale, so both re-rankers first standardise the
candidate scores of a request (z-scores), which makes `long_tail` and `diversity` mean the same thing on
every bundle: `long_tail=1` moves an item by at most one standard deviation of the candidate scores
(the most popular item loses the most), `diversity=λ` trades relevance against similarity to the
already chosen items (Maximal Marginal Relevance, λ=0 keeps the relevance order).
"""

from __future__ import annotations

import numpy as np


def standardize(scores: np.ndarray) -> np.ndarray:
    s = scores.astype(np.float64)
    std = s.std()
    return (s - s.mean()) / std if std > 1e-12 else s - s.mean()


def long_tail_boost(scores: np.ndarray, popularity: np.ndarray, strength: float) -> np.ndarray:
    """Relevance minus `strength` x relative log-popularity (0 for unseen items, 1 for the most popular)."""
    if strength == 0.0 or scores.size == 0:
        return scores.astype(np.float64)
    logpop = np.log1p(np.maximum(popularity.astype(np.float64), 0.0))
    top = logpop.max()
    rel = logpop / top if top > 0 else logpop
    return standardize(scores) - float(strength) * rel


def mmr(scores: np.ndarray, unit_vectors: np.ndarray, k: int, diversity: float) -> np.ndarray:
    """Indices (into `scores`) of k items chosen greedily by MMR over cosine similarity of item vectors."""
    n = scores.shape[0]
    k = min(k, n)
    if diversity <= 0.0 or n == 0:
        return np.argsort(-scores, kind="stable")[:k]
    rel = standardize(scores)
    span = rel.max() - rel.min()
    rel = (rel - rel.min()) / span if span > 1e-12 else np.zeros_like(rel)
    lam = float(diversity)
    chosen = [int(np.argmax(rel))]
    # one matrix-vector product per pick (k x C x d) instead of the full C x C similarity matrix
    max_sim = np.einsum("ij,j->i", unit_vectors, unit_vectors[chosen[0]])  # BLAS-free: see inner_products
    available = np.ones(n, dtype=bool)
    available[chosen[0]] = False
    while len(chosen) < k:
        value = (1.0 - lam) * rel - lam * max_sim
        value[~available] = -np.inf
        nxt = int(np.argmax(value))
        chosen.append(nxt)
        available[nxt] = False
        np.maximum(max_sim, np.einsum("ij,j->i", unit_vectors, unit_vectors[nxt]), out=max_sim)
    return np.asarray(chosen, dtype=np.int64)


def intra_list_similarity(unit_vectors: np.ndarray) -> float:
    """Mean pairwise cosine of a result list (lower = more diverse); used by tests and benchmarks."""
    n = unit_vectors.shape[0]
    if n < 2:
        return 0.0
    sims = unit_vectors @ unit_vectors.T
    return float((sims.sum() - np.trace(sims)) / (n * (n - 1)))


def explain(result_unit: np.ndarray, history_unit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each result, the index of the most similar history item and that cosine."""
    if history_unit.shape[0] == 0 or result_unit.shape[0] == 0:
        return np.full(result_unit.shape[0], -1, np.int64), np.zeros(result_unit.shape[0])
    sims = np.einsum("ij,kj->ik", result_unit, history_unit)  # BLAS-free (see recengine.scan)
    best = sims.argmax(axis=1)
    return best.astype(np.int64), sims[np.arange(sims.shape[0]), best]
