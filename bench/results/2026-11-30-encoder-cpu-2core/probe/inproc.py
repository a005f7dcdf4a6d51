"""One process, ORT sessions only, calls alternated per round (rotating order): int8 recipes vs each other."""

import json
import sys
import time

import numpy as np
import onnxruntime as ort

names = sys.argv[2:]
rounds = int(sys.argv[1])
d = np.load("/tmp/enc14/inputs.npz")


def sess(n):
    o = ort.SessionOptions()
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    o.intra_op_num_threads = 1
    o.inter_op_num_threads = 1
    o.log_severity_level = 3
    return ort.InferenceSession(f"/tmp/enc14/v/{n}.onnx", o, providers=["CPUExecutionProvider"])


S = {n: sess(n) for n in names}
out = {"load_start": open("/proc/loadavg").read().split()[:3]}
for key in ("ids19", "ids32"):
    arr = d[key]
    wall = {n: [] for n in names}
    cpu = {n: [] for n in names}
    for r in range(rounds + 20):
        order = names[r % len(names) :] + names[: r % len(names)]
        for n in order:
            ids = arr[r % 16]
            c0 = time.thread_time()
            t0 = time.perf_counter()
            S[n].run(["text_embedding", "item_vector"], {"input_ids": ids, "attention_mask": np.ones_like(ids)})
            if r >= 20:
                wall[n].append(time.perf_counter() - t0)
                cpu[n].append(time.thread_time() - c0)
    out[key] = {
        n: {
            "wall_p50_ms": round(float(np.median(wall[n])) * 1e3, 3),
            "cpu_p50_ms": round(float(np.median(cpu[n])) * 1e3, 3),
        }
        for n in names
    }
out["load_end"] = open("/proc/loadavg").read().split()[:3]
print(json.dumps(out))
