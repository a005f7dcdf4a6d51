"""CPU per request of `recommend_batch(independent=True)` (8 stored users per call, what the server's lane
runs) with the bundle's co-occurrence blend and with the user tower alone, then the blend's stages one query at
a time (best of 3, µs per query).

    python blend_cost.py BUNDLE
"""

import sys
import time

import numpy as np

import recengine
from recengine import pipeline
from recengine.requests import RecommendRequest

bundle = sys.argv[1]
engines = {"blend": recengine.Engine.open(bundle, threads=1),
           "tower": recengine.Engine.open(bundle, threads=1, cooccur_weight=0)}
users = engines["blend"].user_ids()
batches = [[{"user_id": u, "k": 10} for u in users[i:i + 8]] for i in range(0, len(users) // 8 * 8, 8)]
n = len(batches) * 8
cpu: dict = {name: [] for name in engines}
for _ in range(5):
    for name, engine in engines.items():
        t0 = time.process_time()
        for batch in batches:
            engine.recommend_batch(batch, independent=True)
        cpu[name].append((time.process_time() - t0) / n * 1e6)
print("cpu us per request", {name: round(float(np.median(v)), 1) for name, v in cpu.items()})
st = engines["blend"]._state
queries = [pipeline.prepare(st, RecommendRequest(user_id=u, k=10)) for u in users[:600]]


def per_query(f) -> float:
    best = 1e9
    for _ in range(3):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return round(best / len(queries) * 1e6, 1)


co, alive = st.cooccur, st.catalogue.alive
print("signal", per_query(lambda: [co.signal(q.history, alive) for q in queries]))
for q in queries:
    q.cooc = co.signal(q.history, alive)
print("candidates with the signal's items", per_query(lambda: [pipeline.candidates(st, [q]) for q in queries]))
got = [pipeline.candidates(st, [q]) for q in queries]
print("fuse (blend term)", per_query(lambda: [pipeline.fuse(st, [q], g) for q, g in zip(queries, got)]))
for q in queries:
    q.cooc = None
print("candidates without", per_query(lambda: [pipeline.candidates(st, [q]) for q in queries]))
print("loadavg", open("/proc/loadavg").read().split()[:3])
