"""recommend / similar_items / search in-process: lone queries scanned on ONNX Runtime's Gemm (`recengine.scan`
with `min_queries=1`; the engine itself now keeps lone queries on einsum, see the README) against numpy's einsum
alone (the same bundle opened twice in one process, the second engine's scanner replaced by a numpy-only
one), alternating rounds, and whether the served lists are the same. With
TEXT_GEMM=1 the first engine scans its text space on the Gemm too (a scanner without the size cap).

    [TEXT_GEMM=1] python engine_ab.py BUNDLE
"""

import json
import os
import sys
import time

import numpy as np

import recengine
from recengine.scan import Scanner

bundle = sys.argv[1]
served = recengine.Engine.open(bundle, threads=1)
numpy_only = recengine.Engine.open(bundle, threads=1)
for space in (numpy_only._state.items_index, numpy_only._state.text_index):
    space.exact.scanner = Scanner(None)
lone_gemm = Scanner.create(min_queries=1)
for space in (served._state.items_index, served._state.text_index):
    space.exact.scanner = lone_gemm
if os.environ.get("TEXT_GEMM"):
    uncapped = Scanner.create(max_floats=1 << 30, min_queries=1)
    for space in (served._state.items_index, served._state.text_index):
        space.exact.scanner = uncapped
users, items = served.user_ids()[:300], served.item_ids()[:300]
queries = ["funny animated movie for kids about toys", "space adventure with robots", "toy story",
           "romantic comedy in paris", "the godfather"]
calls = {
    "recommend_user": lambda e, i: e.recommend(user_id=users[i % len(users)], k=10),
    "similar_items": lambda e, i: e.similar_items(items[i % len(items)], k=10),
    "search": lambda e, i: e.search(queries[i % len(queries)], k=10),
}
out: dict = {"loadavg_start": open("/proc/loadavg").read().split()[:3],
             "kernels": {"item": served._state.items_index.exact.scanner.uses_gemm(served._state.catalogue.vectors, 1),
                         "text": served._state.text_index.exact.scanner.uses_gemm(
                             served._state.catalogue.text_embeddings, 1)}}
for engine in (served, numpy_only):
    for f in calls.values():
        for i in range(30):
            f(engine, i)


def same(f, i: int) -> bool:
    return [r.item_id for r in f(served, i)] == [r.item_id for r in f(numpy_only, i)]


out["same_lists_share"] = {name: float(np.mean([same(f, i) for i in range(100)])) for name, f in calls.items()}
times: dict = {name: {"served": [], "einsum": []} for name in calls}
for _ in range(5):
    for name, f in calls.items():
        for label, engine in (("served", served), ("einsum", numpy_only)):
            for i in range(300 if name != "search" else 100):
                t0 = time.perf_counter()
                f(engine, i)
                times[name][label].append(time.perf_counter() - t0)
for name in calls:
    s, e = np.array(times[name]["served"]) * 1e3, np.array(times[name]["einsum"]) * 1e3
    out[name] = {"served_p50_ms": round(float(np.median(s)), 4), "einsum_p50_ms": round(float(np.median(e)), 4),
                 "served_p99_ms": round(float(np.percentile(s, 99)), 4),
                 "einsum_p99_ms": round(float(np.percentile(e, 99)), 4),
                 "p50_ratio": round(float(np.median(s) / np.median(e)), 3)}
out["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
print(json.dumps(out, indent=1))
