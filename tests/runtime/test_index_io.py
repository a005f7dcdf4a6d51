"""`recengine.index_io.calibrate_ef`: the stored ef is the smallest that reaches the recall asked for."""

from __future__ import annotations

import numpy as np

from recengine.index_io import EF_LADDER, calibrate_ef
from recengine.retrieval import HnswBackend


def _clustered(n: int = 3000, d: int = 48, seed: int = 0) -> np.ndarray:
    """Unit vectors in tight clusters: hard for a small ef (many near-ties), as fine-tuned text spaces are."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(30, d))
    x = centres[rng.integers(30, size=n)] + 0.15 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _recall(backend: HnswBackend, x: np.ndarray, ef: int, k: int = 10) -> float:
    backend.index.set_ef(ef)
    q = x[:200]
    found, _ = backend.search(q, k + 1)
    s = q @ x.T
    s[np.arange(200), np.arange(200)] = -np.inf
    exact = np.argpartition(-s, k - 1, axis=1)[:, :k]
    return float(np.mean([len(set(f[f != i][:k].tolist()) & set(e.tolist())) / k
                          for i, (f, e) in enumerate(zip(found, exact))]))


def test_calibrated_ef_is_the_smallest_reaching_the_recall():
    x = _clustered()
    rows = np.arange(len(x))
    b = HnswBackend.build(x, rows, M=4, ef_construction=16, ef=64, seed=0)
    ef, recall = calibrate_ef(b, x, rows, floor=64, min_recall=0.97)
    assert ef in EF_LADDER and recall >= 0.97
    assert b.ef == 64  # the backend's own ef is left as it was
    if ef > 64:  # the ef below did not reach it (measured the same way on other queries: close, not equal)
        below = EF_LADDER[EF_LADDER.index(ef) - 1]
        assert _recall(b, x, below) < _recall(b, x, ef)
    # an easy target is met at the floor; the floor is never undercut
    assert calibrate_ef(b, x, rows, floor=128, min_recall=0.1)[0] == 128
    # an unreachable target: the ladder's top, with the recall measured there
    ef_max, r = calibrate_ef(b, x, rows, floor=64, min_recall=1.01)
    assert ef_max == EF_LADDER[-1] and 0 < r <= 1


def test_calibrate_ef_on_a_subset_of_rows_and_tiny_catalogues():
    x = _clustered(n=600)
    rows = np.arange(0, 600, 2)  # an index over every other row: queries and neighbours come from those rows
    b = HnswBackend.build(x, rows, M=8, ef_construction=64, ef=64, seed=0)
    ef, recall = calibrate_ef(b, x, rows, floor=64, min_recall=0.9)
    assert ef >= 64 and recall >= 0.9
    # no probe queries (a data set without users): the index's own rows probe it
    assert calibrate_ef(b, x, rows, 64, 0.9, queries=np.zeros((0, x.shape[1]), np.float32)) == (ef, recall)
    # rows in any order: the same choice as sorted (each probe's own row is left out by position)
    shuffled = np.random.default_rng(1).permutation(rows)
    b2 = HnswBackend.build(x, shuffled, M=8, ef_construction=64, ef=64, seed=0)
    ef2, recall2 = calibrate_ef(b2, x, shuffled, floor=64, min_recall=0.9)
    assert ef2 < EF_LADDER[-1] and recall2 >= 0.9
    # a floor off the ladder is tried first (the quick profile's ef 50)
    assert calibrate_ef(b, x, rows, floor=50, min_recall=0.1)[0] == 50
    tiny = HnswBackend.build(x, rows[:5], ef=50)
    assert calibrate_ef(tiny, x, rows[:5], floor=50, min_recall=0.95) == (50, 1.0)
