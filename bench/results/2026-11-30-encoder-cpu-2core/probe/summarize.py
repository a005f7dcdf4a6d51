import collections
import json
import sys

import numpy as np

rows = [json.loads(line) for line in open(sys.argv[1])]
by = collections.defaultdict(lambda: collections.defaultdict(list))
for r in rows:
    e = r["engine"].split("/")[-1].replace(".onnx", "")
    for k in ("t19", "t19_cpu", "t32", "t32_cpu"):
        by[e][k].append(r[k])
base = {k: np.median(by["q_rr0"][k]) for k in ("t19_cpu", "t32_cpu")}
print(f"{'engine':24s} n  cpu19  cpu32  wall19 wall32  /ref19 /ref32  (cpu-time medians of per-process medians)")
for e, d in sorted(by.items(), key=lambda kv: np.median(kv[1]["t19_cpu"])):
    m = {k: float(np.median(v)) for k, v in d.items()}
    r19, r32 = m["t19_cpu"] / base["t19_cpu"], m["t32_cpu"] / base["t32_cpu"]
    print(f"{e:24s} {len(d['t19'])}  {m['t19_cpu']:5.2f}  {m['t32_cpu']:5.2f}  {m['t19']:6.2f} {m['t32']:6.2f}  "
          f"{r19:.3f}  {r32:.3f}")
