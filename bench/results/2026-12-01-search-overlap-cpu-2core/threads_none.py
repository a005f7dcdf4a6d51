"""With `threads=None` (ONNX Runtime's default: every core to the encoder) no helper is made; this forces one
to see what it would do. Dense, hybrid with a forced helper, hybrid in sequence. Usage: python threads_none.py
BUNDLE"""
import sys
import time

import _paths  # noqa: F401
import common
import numpy as np

from recengine import Engine, neighbours
from recengine.overlap import Helper

orig = Engine.open
Engine.open = classmethod(lambda cls, b, device="cpu", threads=1: orig(b, device=device, threads=None))
eng, fam = common.open_families(sys.argv[1])
st = eng._state  # noqa: SLF001
print("helper", st.helper)
helper = Helper()


def forced(q):
    st.helper = helper
    try:
        return neighbours.search(st, q, 10, None)
    finally:
        st.helper = None


def seq(q):
    return neighbours.search(st, q, 10, None)


def dense(q):
    return neighbours.search(st, q, 10, None, mode="dense")


print("load", open("/proc/loadavg").read().strip())
for name, qs in fam.items():
    res: dict[str, list[float]] = {"dense": [], "overlap": [], "sequence": []}
    fns = (("dense", dense), ("overlap", forced), ("sequence", seq))
    for rep in range(6):
        for q in qs:
            for n, f in fns[:: 1 if rep % 2 else -1]:
                s = time.perf_counter()
                f(q)
                res[n].append(time.perf_counter() - s)
    b = np.median(res["dense"])
    print(name, {k: (round(float(np.median(v)) * 1e6), round(float(np.median(v) / b), 3)) for k, v in res.items()})
print("load", open("/proc/loadavg").read().strip())
