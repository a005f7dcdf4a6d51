"""What the co-occurrence blend costs a request: `recommend_batch` of 4 (the coalescing lane's call) and a lone
`recommend`, per request, with the bundle's blend and with `cooccur_weight=0`, alternating engines.
Usage: python batch_w0.py BUNDLE"""
import sys
import time

import numpy as np

from recengine import Engine

for w in (None, 0.0, None, 0.0):
    eng = Engine.open(sys.argv[1], device="cpu", threads=1, cooccur_weight=w)
    eng.warmup()
    users = eng.user_ids()
    rng = np.random.default_rng(0)
    batches = [[{"user_id": users[int(i)], "k": 10} for i in rng.integers(0, len(users), 4)] for _ in range(600)]
    for b in batches[:50]:
        eng.recommend_batch(b, independent=True)
    ts = []
    for b in batches:
        s = time.perf_counter()
        eng.recommend_batch(b, independent=True)
        ts.append(time.perf_counter() - s)
    lone = []
    for b in batches[:300]:
        s = time.perf_counter()
        eng.recommend(**b[0])
        lone.append(time.perf_counter() - s)
    print("cooccur_weight", w, "batch4 per request µs", round(np.median(ts) / 4 * 1e6), "lone",
          round(np.median(lone) * 1e6), open("/proc/loadavg").read().split()[:3])
