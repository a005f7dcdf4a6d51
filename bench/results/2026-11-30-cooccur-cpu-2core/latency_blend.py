"""What the co-occurrence blend costs per request: `recommend` by stored user (k=10) and by a 30-item history,
the bundle's blend against the same bundle opened with `cooccur_weight=0` (the user tower alone), one ORT
thread, the two engines interleaved call by call (3,000 calls each), p50/p99 in ms and their ratios.

Usage: python latency_blend.py BUNDLE
"""

import sys
import time

import numpy as np

import recengine


def timed(call, out: list[float]) -> None:
    start = time.perf_counter()
    call()
    out.append(time.perf_counter() - start)


def main() -> None:
    bundle = sys.argv[1]
    blend = recengine.Engine.open(bundle, device="cpu", threads=1)
    tower = recengine.Engine.open(bundle, device="cpu", threads=1, cooccur_weight=0.0)
    users, ids = blend.user_ids(), blend.item_ids()
    rng = np.random.default_rng(0)
    for engine in (tower, blend):
        for u in users[:50]:
            engine.recommend(user_id=u, k=10)
    stored: dict[int, list[float]] = {0: [], 1: []}
    history: dict[int, list[float]] = {0: [], 1: []}
    for i in range(3000):
        u = users[rng.integers(len(users))]
        h = [ids[j] for j in rng.integers(0, len(ids), 30)]
        order = ((0, tower), (1, blend)) if i % 2 else ((1, blend), (0, tower))
        for key, engine in order:
            timed(lambda e=engine, u=u: e.recommend(user_id=u, k=10), stored[key])
            timed(lambda e=engine, h=h: e.recommend(history=h, k=10), history[key])
    for name, d in (("stored", stored), ("history30", history)):
        p50 = [np.percentile(d[k], 50) * 1e3 for k in (0, 1)]
        p99 = [np.percentile(d[k], 99) * 1e3 for k in (0, 1)]
        print(f"{name}: tower p50 {p50[0]:.3f} p99 {p99[0]:.3f} | blend p50 {p50[1]:.3f} p99 {p99[1]:.3f} | "
              f"ratio p50 {p50[1] / p50[0]:.2f} p99 {p99[1] / p99[0]:.2f}")


if __name__ == "__main__":
    main()
