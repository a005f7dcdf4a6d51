"""CPU per request of `recommend` by stored user: lone calls against `recommend_batch(independent=True)` (what
`recengine serve` coalesces concurrent calls into), alternating rounds, and whether the lists are the same.

    python batch_cost.py BUNDLE [B ...]
"""

import json
import sys
import time

import numpy as np

import recengine

bundle, sizes = sys.argv[1], [int(b) for b in sys.argv[2:]] or [4, 8]
eng = recengine.Engine.open(bundle, threads=1)
users = eng.user_ids()
out: dict = {"bundle": bundle, "n_users": len(users), "loadavg_start": open("/proc/loadavg").read().split()[:3]}
for B in sizes:
    same = 0
    for i in range(0, len(users) - B + 1, B):
        lone = [eng.recommend(user_id=u, k=10) for u in users[i:i + B]]
        together = eng.recommend_batch([{"user_id": u, "k": 10} for u in users[i:i + B]], independent=True)
        same += sum([r.item_id for r in a] == [r.item_id for r in b] for a, b in zip(lone, together))
    n = len(users) // B * B
    lone_us, together_us = [], []
    for _ in range(6):
        for together, acc in ((False, lone_us), (True, together_us)):
            t0 = time.process_time()
            for i in range(0, n, B):
                group = users[i:i + B]
                if together:
                    eng.recommend_batch([{"user_id": u, "k": 10} for u in group], independent=True)
                else:
                    for u in group:
                        eng.recommend(user_id=u, k=10)
            acc.append((time.process_time() - t0) / n * 1e6)
    out[f"batch{B}"] = {"lone_cpu_us_per_request": round(float(np.median(lone_us)), 1),
                        "together_cpu_us_per_request": round(float(np.median(together_us)), 1),
                        "ratio": round(float(np.median(together_us) / np.median(lone_us)), 3),
                        "same_lists": f"{same} of {n}"}
out["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
print(json.dumps(out, indent=1))
