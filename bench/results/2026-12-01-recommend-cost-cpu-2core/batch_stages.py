"""Per-stage time of `Engine.recommend_batch(B users, independent=True)`, the call the server's coalescing lane
makes, in-process on one thread. Usage: python batch_stages.py BUNDLE [B]"""
import sys
import time

import numpy as np

from recengine import Engine, pipeline

eng = Engine.open(sys.argv[1], device="cpu", threads=1)
eng.warmup()
users = eng.user_ids()
B = int(sys.argv[2]) if len(sys.argv) > 2 else 4
T: dict[str, list[float]] = {}


def wrap(name: str) -> None:
    f = getattr(pipeline, name)

    def timed(*args, **kwargs):
        s = time.perf_counter()
        out = f(*args, **kwargs)
        T.setdefault(name, []).append(time.perf_counter() - s)
        return out

    setattr(pipeline, name, timed)


for n in ("prepare", "user_vectors", "cooccur_signals", "candidates", "retrieve", "_with_cooccur", "fuse",
          "blend_term", "finish"):
    wrap(n)
tot = []
rng = np.random.default_rng(0)
CALLS = 400
for _ in range(CALLS):
    batch = [{"user_id": users[int(i)], "k": 10} for i in rng.integers(0, len(users), B)]
    s = time.perf_counter()
    eng.recommend_batch(batch, independent=True)
    tot.append(time.perf_counter() - s)
print("B", B, "total per call p50 µs", round(np.median(tot) * 1e6), "per request", round(np.median(tot) * 1e6 / B))
for k, v in T.items():
    per_call = len(v) / CALLS
    print(f"{k:18s} {np.median(v) * 1e6:7.1f} µs x {per_call:.0f} per call = {np.median(v) * 1e6 * per_call / B:6.1f} "
          "µs per request")
