"""The cooccur micro-optimisations (cached reach and recency weights, `stand_in`) are bit-identical to the
runtime before them: signals and text terms of 1,200 random histories at four decays, against the module as it
was at e4a561d (loaded from a snapshot). Usage: python bitcheck.py OLD_COOCCUR_PY BUNDLE"""
import dataclasses
import sys

import numpy as np

from recengine import Engine

src = open(sys.argv[1]).read().replace("from .errors", "from recengine.errors")
old = type(sys)("oldco")
sys.modules["oldco"] = old
exec(compile(src, "oldco", "exec"), old.__dict__)
e = Engine.open(sys.argv[2], device="cpu", threads=1)
c, cat = e._state.cooccur, e._state.catalogue
o = old.Cooccur(indices=c.indices, scores=c.scores, weight=c.weight, decay=c.decay, max_history=c.max_history,
                text_cos=c.text_cos, text_sim=c.text_sim)
rng = np.random.default_rng(0)
bad = 0
for dec in (1.0, 0.7, 0.4, 0.0):
    cn, co = dataclasses.replace(c, decay=dec), dataclasses.replace(o, decay=dec)
    for _ in range(300):
        h = rng.integers(0, cat.n_rows, size=int(rng.integers(0, 60)))
        a, b = cn.signal(h, cat.alive), co.signal(h, cat.alive)
        bad += not (np.array_equal(a.rows, b.rows) and np.array_equal(a.values, b.values) and a.top == b.top)
        rows = rng.integers(0, cat.n_rows, size=50)
        rows[:5] = np.flatnonzero(~cn.has_list)[:5]
        text = cat.unit_vectors
        bad += not np.array_equal(cn.text_term(h, rows, text, a), co.text_term(h, rows, text, b))
print("mismatches", bad)
