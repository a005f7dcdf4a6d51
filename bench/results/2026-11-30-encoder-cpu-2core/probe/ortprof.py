"""ORT profile per op type: mean microseconds per run at batch 1 x 19 tokens, one thread."""

import collections
import json
import os
import sys

import numpy as np
import onnxruntime as ort

ids = np.load("/tmp/enc14/inputs.npz")["ids19"]
res = {}
for name in sys.argv[1:]:
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    o.inter_op_num_threads = 1
    o.log_severity_level = 3
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    path, _, flag = name.partition(":")
    kw = (
        {"disabled_optimizers": ["MatMulIntegerToFloatFusion", "DynamicQuantizeMatMulFusion"]}
        if flag == "nofuse"
        else {}
    )
    s0 = ort.InferenceSession(f"/tmp/enc14/v/{path}.onnx", o, providers=["CPUExecutionProvider"], **kw)
    for i in range(30):
        s0.run(None, {"input_ids": ids[i % 16], "attention_mask": np.ones_like(ids[i % 16])})
    o.enable_profiling = True
    o.profile_file_prefix = f"/tmp/enc14/prof_{path}_{flag}"
    s = ort.InferenceSession(f"/tmp/enc14/v/{path}.onnx", o, providers=["CPUExecutionProvider"], **kw)
    N = 300
    for i in range(N + 20):
        s.run(None, {"input_ids": ids[i % 16], "attention_mask": np.ones_like(ids[i % 16])})
    f = s.end_profiling()
    ev = json.load(open(f))
    per = collections.defaultdict(list)
    runs = [e["dur"] for e in ev if e.get("cat") == "Session" and e["name"] == "model_run"]
    for e in ev:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per[e["args"]["op_name"]].append(e["dur"])
    # the first 20 runs are warm-up: keep the last N runs' share
    tot = {k: sum(v[-(len(v) * N) // (N + 20) :]) / N for k, v in per.items()}
    res[name] = {
        "model_run_us_median": float(np.median(runs[20:])),
        "ops_us": dict(sorted(tot.items(), key=lambda kv: -kv[1])),
    }
    os.remove(f)
    print(name, json.dumps(res[name]), flush=True)
json.dump(res, open("/tmp/enc14/profile.json", "w"), indent=1)
