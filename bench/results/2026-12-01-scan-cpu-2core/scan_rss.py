"""Resident memory of an engine whose scans run on the Gemm (the served scanner: ONNX Runtime's arena on), on the
Gemm without the arena, and on einsum alone: after lone recommends, after coalesced batches of 8, and after
five 256-query scans (what `score_catalogue` runs); plus one 8-query scan's time. One mode per process.

    python scan_rss.py BUNDLE arena|noarena|einsum
"""
import sys
import time

import onnxruntime as rt

import recengine
from recengine.scan import GEMM_GRAPH, Scanner


def rss_mib() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return float("nan")


mode = sys.argv[2]
engine = recengine.Engine.open(sys.argv[1], threads=1)
if mode != "arena":
    if mode == "noarena":
        opts = rt.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        opts.enable_cpu_mem_arena = False
        scanner = Scanner(rt.InferenceSession(GEMM_GRAPH, sess_options=opts, providers=["CPUExecutionProvider"]))
    else:
        scanner = Scanner(None)
    engine._state.items_index.exact.scanner = engine._state.text_index.exact.scanner = scanner
users = engine.user_ids()
for u in users:
    engine.recommend(user_id=u, k=10)
after_lone = rss_mib()
for i in range(0, 600, 8):
    engine.recommend_batch([{"user_id": u, "k": 10} for u in users[i:i + 8]], independent=True)
after_batches = rss_mib()
queries = engine._state.catalogue.vectors[:256].copy()
for _ in range(5):
    engine._state.items_index.exact.scores(queries)
after_256 = rss_mib()
t0 = time.perf_counter()
for _ in range(200):
    engine._state.items_index.exact.scores(queries[:8])
print(mode, {"rss_mib_after_lone": round(after_lone, 1), "after_batches_of_8": round(after_batches, 1),
             "after_256_query_scans": round(after_256, 1),
             "scan_8_queries_us": round((time.perf_counter() - t0) / 200 * 1e6, 1)})
