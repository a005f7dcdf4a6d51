"""`topk_rows` before (argpartition over every score) and now (sampled threshold, `retrieval._top_of_row`) on
the same rows, one process, alternating. Usage: python topk_micro.py OLD_RETRIEVAL.py
(OLD_RETRIEVAL.py: `git show ac14f35:runtime/retrieval.py`, the module before the change)."""
import sys
import time

import numpy as np

from recengine.retrieval import topk_rows as new

src = open(sys.argv[1]).read().replace("from .errors import", "from recengine.errors import")
ns: dict = {}
exec(compile(src, "old_retrieval", "exec"), ns)
old = ns["topk_rows"]


def t(f, n=2000):
    f()
    s = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - s) / n * 1e6


rng = np.random.default_rng(0)
M = rng.standard_normal((9742, 64)).astype(np.float32)
for B, n, k, what in ((1, 9742, 10, "q @ M.T"), (1, 9742, 60, "q @ M.T"), (1, 9742, 200, "q @ M.T"),
                      (1, 1682, 100, "normal"), (1, 100000, 100, "normal"), (64, 1682, 100, "normal"),
                      (64, 9742, 100, "normal")):
    S = rng.standard_normal((1, 64)).astype(np.float32) @ M.T if what != "normal" else \
        rng.standard_normal((B, n)).astype(np.float32)
    before = t(lambda S=S, k=k: old(S, k), 500)
    now = t(lambda S=S, k=k: new(S, k), 500)
    print(f"B={B} n={n} k={k} ({what}): before {before:.1f} us, now {now:.1f} us")
