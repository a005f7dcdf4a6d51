"""Toy data sets whose right answer is known, for the baseline tests."""

from __future__ import annotations

import numpy as np

from recengine.bench.baselines import TrainData


def from_histories(histories: list[list[int]], n_items: int, seed: int = 0) -> TrainData:
    indptr = np.zeros(len(histories) + 1, np.int64)
    np.cumsum([len(h) for h in histories], out=indptr[1:])
    indices = np.array([i for h in histories for i in h], np.int64)
    return TrainData(len(histories), n_items, indptr, indices, [f"item {i}" for i in range(n_items)], seed)


def blocks(n_users: int = 40, n_items: int = 20, seed: int = 0) -> tuple[TrainData, np.ndarray]:
    """Two communities: even users like items < n/2, odd users the rest; each user has 6 of their half."""
    rng = np.random.default_rng(seed)
    half = n_items // 2
    group = np.arange(n_users) % 2
    hist = [list(rng.choice(half, 6, replace=False) + g * half) for g in group]
    return from_histories(hist, n_items, seed), group


def pairs(n_pairs: int = 10, users_per_pair: int = 4) -> TrainData:
    """Items come in pairs (2p, 2p+1) always consumed together; a probe user holds only item 0."""
    hist = [[2 * p, 2 * p + 1] for p in range(n_pairs) for _ in range(users_per_pair)]
    hist.append([0])
    return from_histories(hist, 2 * n_pairs)


def cycle(n_items: int = 12, n_users: int = 60, length: int = 8, seed: int = 0) -> TrainData:
    """Strictly sequential: every history walks the cycle 0 -> 1 -> ... -> n-1 -> 0 from a random start."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n_items, n_users)
    hist = [[(s + t) % n_items for t in range(length)] for s in starts]
    return from_histories(hist, n_items, seed)
