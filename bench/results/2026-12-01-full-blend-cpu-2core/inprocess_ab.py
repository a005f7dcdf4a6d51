"""Test NDCG@10 (leave-last-out, seed 0) of a bundle as served, and per-request time of `recommend` by stored
user (lone) and of `recommend_batch(independent=True)` of 4 (the server's coalesced call), in-process, one
thread. Run once per runtime snapshot (PYTHONPATH) on the same bundle. Usage: python inprocess_ab.py BUNDLE [DATA]"""
import sys
import time

import numpy as np

from recengine import Engine
from recengine.data import load_dataset
from recengine.evaluation import evaluate_engine
from recengine.split import leave_last_out

eng = Engine.open(sys.argv[1], device="cpu", threads=1)
ds = load_dataset(sys.argv[2] if len(sys.argv) > 2 else None)
split = leave_last_out(ds.interactions, ds.n_users, ds.n_items, seed=0)
print("test ndcg@10", round(evaluate_engine(eng, split, "test")["ndcg@10"], 5))
ids = eng.user_ids()
t = []
for _ in range(2):
    for u in ids[:300]:
        s = time.perf_counter()
        eng.recommend(user_id=u, k=10)
        t.append(time.perf_counter() - s)
print("recommend µs median", round(np.median(t) * 1e6), "p90", round(np.percentile(t, 90) * 1e6))
groups = [ids[i:i + 4] for i in range(0, 300, 4)]
t = []
for _ in range(3):
    for g in groups:
        s = time.perf_counter()
        eng.recommend_batch([dict(user_id=u, k=10) for u in g], independent=True)
        t.append((time.perf_counter() - s) / len(g))
print("batch-of-4 µs per request median", round(np.median(t) * 1e6))
