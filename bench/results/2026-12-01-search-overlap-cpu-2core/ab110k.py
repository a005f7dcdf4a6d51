"""Hybrid against dense-only search p50 on the 110k synthetic bundle, four query families, one process per
snapshot (PYTHONPATH), dense and hybrid alternating per query. NO_HELPER=1 turns the helper thread off.
Usage: python ab110k.py BUNDLE REPS"""
import json
import os
import sys
import time

import _paths  # noqa: F401
import numpy as np
from common import open_families

from recengine import neighbours

eng, fam = open_families(sys.argv[1])
st = eng._state  # noqa: SLF001
if os.environ.get("NO_HELPER"):
    st.helper = None
reps = int(sys.argv[2])
out = {"revision": os.environ.get("RECENGINE_GIT_REVISION"), "helper": getattr(st, "helper", None) is not None,
       "load_before": open("/proc/loadavg").read().strip()}
for name, qs in fam.items():
    res: dict[str, list[float]] = {"dense": [], "hybrid": []}
    for rep in range(reps):
        for q in qs:
            for mode in (("dense", "hybrid") if rep % 2 else ("hybrid", "dense")):
                s = time.perf_counter()
                neighbours.search(st, q, 10, None, mode=mode)
                res[mode].append(time.perf_counter() - s)
    d, h = (float(np.percentile(res[m], 50)) * 1e3 for m in ("dense", "hybrid"))
    out[name] = {"dense_p50_ms": round(d, 3), "hybrid_p50_ms": round(h, 3), "ratio": round(h / d, 3)}
out["load_after"] = open("/proc/loadavg").read().strip()
print(json.dumps(out))
