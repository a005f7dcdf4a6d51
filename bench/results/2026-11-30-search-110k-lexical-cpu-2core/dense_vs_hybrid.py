"""`search` p50, dense-only vs hybrid, alternating, five rounds per family. Usage: python dense_vs_hybrid.py BUNDLE"""
import json
import sys
import time

import numpy as np
from common import open_families

from recengine import neighbours

eng, families = open_families(sys.argv[1])
st = eng._state  # noqa: SLF001
print("load", open("/proc/loadavg").read().strip())
for fam, qs in families.items():
    t: dict[str, list[float]] = {"dense": [], "hybrid": []}
    for rep in range(5):
        for j, q in enumerate(qs):
            for mode in (("dense", "hybrid") if (rep + j) % 2 else ("hybrid", "dense")):
                s0 = time.perf_counter()
                neighbours.search(st, q, 10, None, mode=mode)
                t[mode].append(time.perf_counter() - s0)
    d, h = (float(np.percentile(t[m], 50) * 1e3) for m in ("dense", "hybrid"))
    print(fam, json.dumps({"dense_p50_ms": round(d, 3), "hybrid_p50_ms": round(h, 3), "ratio": round(h / d, 3)}))
print("load", open("/proc/loadavg").read().strip())
