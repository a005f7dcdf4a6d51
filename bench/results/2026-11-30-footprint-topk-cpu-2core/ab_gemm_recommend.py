"""`recommend` by stored user and `search` with the item space's exact scan through ONNX Runtime's Gemm
(`retrieval.GemmScan`) or numpy's einsum, alternating in one process (6 rounds), lists compared.
Usage: python ab_gemm_recommend.py BUNDLE"""
import sys
import time

import numpy as np

import recengine

e = recengine.Engine.open(sys.argv[1], device="cpu", threads=1)
e.warmup()
exact = e._state.items_index.exact  # noqa: SLF001 - toggling the one scan under test
gemm = exact._gemm  # noqa: SLF001
assert gemm is not None
users = e.user_ids()
for u in users:
    e.recommend(user_id=u, k=10)
res: dict[str, list[float]] = {"einsum": [], "gemm": []}
for rep in range(6):
    for name in ("einsum", "gemm") if rep % 2 else ("gemm", "einsum"):
        exact._gemm = gemm if name == "gemm" else None  # noqa: SLF001
        for u in users:
            s = time.perf_counter()
            e.recommend(user_id=u, k=10)
            res[name].append(time.perf_counter() - s)
exact._gemm = None  # noqa: SLF001
a = [[r.item_id for r in e.recommend(user_id=u, k=10)] for u in users]
exact._gemm = gemm  # noqa: SLF001
b = [[r.item_id for r in e.recommend(user_id=u, k=10)] for u in users]
print("same lists", a == b)
for k, v in res.items():
    ms = np.array(v) * 1e3
    print(k, f"p50 {np.percentile(ms, 50):.4f} p99 {np.percentile(ms, 99):.4f} mean {ms.mean():.4f}")
