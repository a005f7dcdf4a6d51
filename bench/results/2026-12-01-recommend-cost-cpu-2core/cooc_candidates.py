"""How many co-occurrence candidates does the blend need? The served bundle's test-stage NDCG@10 (its export's
split: embedded MovieLens, seed 0; the co-occurrence lists were refit on train + validation, so test is the
honest stage) and the per-request time of a coalesced batch of 4, with `_with_cooccur` adding N rows instead of
max(cands, k) = 200. Usage: python cooc_candidates.py BUNDLE"""
import sys
import time

import numpy as np

from recengine import Engine, pipeline
from recengine.data import load_dataset
from recengine.evaluation import evaluate_engine
from recengine.split import leave_last_out

served = pipeline._with_cooccur  # noqa: SLF001
N: dict[str, int | None] = {"n": None}


def with_cooccur(st, q, got):
    """`pipeline._with_cooccur` adding N rows (None: as served, max(cands, k)); retrieval has already used
    `cands` by the time it runs, so only the co-occurrence rows change."""
    if N["n"] is None:
        return served(st, q, got)
    cands, q.cands = q.cands, N["n"]
    try:
        return served(st, q, got)
    finally:
        q.cands = cands


pipeline._with_cooccur = with_cooccur  # noqa: SLF001
eng = Engine.open(sys.argv[1], device="cpu", threads=1)
ds = load_dataset(None)
split = leave_last_out(ds.interactions, ds.n_users, ds.n_items, seed=0)
users = eng.user_ids()
rng = np.random.default_rng(0)
batches = [[{"user_id": users[int(i)], "k": 10} for i in rng.integers(0, len(users), 4)] for _ in range(400)]
for n in (None, 100, 50, 20, None):
    N["n"] = n
    m = evaluate_engine(eng, split, "test")
    ts = []
    for b in batches:
        s = time.perf_counter()
        eng.recommend_batch(b, independent=True)
        ts.append(time.perf_counter() - s)
    print("n", n or 200, "test ndcg@10", round(m["ndcg@10"], 4), "hr@10", round(m.get("hr@10", float("nan")), 4),
          "batch4 µs/request", round(np.median(ts) / 4 * 1e6))
