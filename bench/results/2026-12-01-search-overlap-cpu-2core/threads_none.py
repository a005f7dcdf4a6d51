import sys, time
import numpy as np
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent / "2026-11-30-search-110k-lexical-cpu-2core"))
import common
from recengine import Engine, neighbours
from recengine.overlap import Helper
orig = Engine.open
Engine.open = classmethod(lambda cls, b, device="cpu", threads=1: orig(b, device=device, threads=None))
eng, fam = common.open_families(sys.argv[1])
st = eng._state
print("helper", st.helper)
helper = Helper()
def served(q):
    st.helper = helper
    try: return neighbours.search(st, q, 10, None)
    finally: st.helper = None
def seq(q): return neighbours.search(st, q, 10, None)
def dense(q): return neighbours.search(st, q, 10, None, mode="dense")
print("load", open("/proc/loadavg").read().strip())
for name, qs in fam.items():
    res = {"dense": [], "overlap": [], "sequence": []}
    fns = (("dense", dense), ("overlap", served), ("sequence", seq))
    for rep in range(6):
        for q in qs:
            for n, f in fns[:: 1 if rep % 2 else -1]:
                s = time.perf_counter(); f(q); res[n].append(time.perf_counter() - s)
    b = np.median(res["dense"])
    print(name, {k: (round(float(np.median(v)) * 1e6), round(float(np.median(v) / b), 3)) for k, v in res.items()})
print("load", open("/proc/loadavg").read().strip())
