"""Build INT8 variants of the bundle's fp32 encoder (investigation for issue 14 item 1)."""

import collections
import json
import logging
import shutil
import sys
from pathlib import Path

import onnx
import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic

SRC = Path("/tmp/std-demo-copy/models")
OUT = Path("/tmp/enc14/v")
F = SRC / "encoder.fp32.onnx"
logging.getLogger().setLevel(logging.ERROR)
HEAD = ["/projection/Gemm", "/projection/Gemm_MatMul"]
recipes = {
    "q_rr1": dict(per_channel=True, reduce_range=True),
    "q_rr0": dict(per_channel=True, reduce_range=False),
    "q_rr1_u8w": dict(per_channel=True, reduce_range=True, weight_type=QuantType.QUInt8),
    "q_rr0_u8w": dict(per_channel=True, reduce_range=False, weight_type=QuantType.QUInt8),
    "q_pt_rr0": dict(per_channel=False, reduce_range=False),
    "q_rr0_nohead": dict(per_channel=True, reduce_range=False, nodes_to_exclude=HEAD),
    "q_rr1_nohead": dict(per_channel=True, reduce_range=True, nodes_to_exclude=HEAD),
    "q_rr0_matmul": dict(per_channel=True, reduce_range=False, op_types_to_quantize=["MatMul", "Gemm"]),
    "q_rr0_noemb": dict(per_channel=True, reduce_range=False, op_types_to_quantize=["MatMul", "Gemm", "Attention"]),
    "q_rr1_noemb": dict(per_channel=True, reduce_range=True, op_types_to_quantize=["MatMul", "Gemm", "Attention"]),
}
only = sys.argv[1:] or list(recipes)
shutil.copy(F, OUT / "fp32.onnx")
shutil.copy(SRC / "encoder.int8.onnx", OUT / "bundle_int8.onnx")
for name in only:
    kw = dict(recipes[name])
    kw.setdefault("weight_type", QuantType.QInt8)
    quantize_dynamic(
        str(F), str(OUT / f"{name}.onnx"), extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT}, **kw
    )
# ORT's own offline optimisation (what ORT_ENABLE_ALL does at load), saved to count fused ops
counts = {}
for p in sorted(OUT.glob("*.onnx")):
    if ".ortopt" in p.name:
        continue
    m = onnx.load(str(p))
    counts[p.stem] = {"file": dict(collections.Counter(n.op_type for n in m.graph.node))}
    o = ort.SessionOptions()
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    o.optimized_model_filepath = str(OUT / f"{p.stem}.ortopt.onnx")
    o.intra_op_num_threads = 1
    o.log_severity_level = 3
    ort.InferenceSession(str(p), o, providers=["CPUExecutionProvider"])
    mo = onnx.load(str(OUT / f"{p.stem}.ortopt.onnx"))
    counts[p.stem]["after_ort_all"] = dict(collections.Counter(n.op_type for n in mo.graph.node))
    (OUT / f"{p.stem}.ortopt.onnx").unlink()
    for f in OUT.glob(f"{p.stem}.ortopt.onnx*"):
        f.unlink()
json.dump(counts, open("/tmp/enc14/node_counts.json", "w"), indent=1)
for k, v in counts.items():
    print(k, sum(v["file"].values()), sum(v["after_ort_all"].values()))
    print("   file:", v["file"])
    print("   ort :", v["after_ort_all"])
