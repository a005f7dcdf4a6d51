"""Tried and not kept: the co-occurrence signals of a batch in one dense [B, n_rows] bincount against one
`Cooccur.signal` per query (identical signals, checked). Usage: python batch_signal.py BUNDLE"""
import sys
import time

import numpy as np

from recengine import Engine
from recengine.cooccur import _EMPTY, Signal

eng = Engine.open(sys.argv[1], device="cpu", threads=1)
st = eng._state  # noqa: SLF001
co, alive = st.cooccur, st.catalogue.alive
hists = [st.users.history(r) for r in range(st.users.n)]


def batch(histories):
    n_rows, size = alive.shape[0], len(histories)
    hs, ages, qs = [], [], []
    for b, hist in enumerate(histories):
        h = np.asarray(hist, dtype=np.int64)[-co.reach:]
        age = np.arange(h.size - 1, -1, -1, dtype=np.float64)
        known = (h >= 0) & (h < co.n)
        hs.append(h[known])
        ages.append(age[known])
        qs.append(np.full(int(known.sum()), b))
    h, age, q = np.concatenate(hs), np.concatenate(ages), np.concatenate(qs)
    idx = co.indices[h]
    val = co.scores[h] * (co.decay ** age)[:, None].astype(np.float32)
    ok = idx >= 0
    dense = np.bincount((idx + (q * n_rows)[:, None])[ok], weights=val[ok], minlength=size * n_rows)
    dense = dense.reshape(size, n_rows)
    dense[:, ~alive] = 0.0
    qq, rows = np.nonzero(dense > 0)
    sums = dense[qq, rows]
    starts = np.searchsorted(qq, np.arange(size + 1))
    out = []
    for b in range(size):
        r, s = rows[starts[b]:starts[b + 1]], sums[starts[b]:starts[b + 1]]
        top = float(s.max()) if r.size else 0.0
        out.append(Signal(r, s / top if top > 0 else s, top) if r.size else _EMPTY)
    return out


rng = np.random.default_rng(0)
for B in (1, 4, 8):
    groups = [[hists[int(i)] for i in rng.integers(0, len(hists), B)] for _ in range(300)]
    for g in groups[:20]:
        for x, y in zip(batch(g), [co.signal(h, alive) for h in g]):
            assert np.array_equal(x.rows, y.rows) and np.array_equal(x.values, y.values) and x.top == y.top
    t1, t2 = [], []
    for g in groups:
        s = time.perf_counter()
        [co.signal(h, alive) for h in g]
        t1.append(time.perf_counter() - s)
        s = time.perf_counter()
        batch(g)
        t2.append(time.perf_counter() - s)
    print(B, "lone", round(np.median(t1) / B * 1e6, 1), "batched", round(np.median(t2) / B * 1e6, 1), "µs per query")
