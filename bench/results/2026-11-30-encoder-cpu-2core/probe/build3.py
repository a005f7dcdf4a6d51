"""Optimizer before vs after quantisation, on the base all-MiniLM-L6-v2 (+ random 64-wide head), exported with
recengine's own code: raw (unfused) -> quantise -> BERT optimiser, vs raw -> optimiser -> quantise."""

import collections
import logging
from pathlib import Path

import onnx
import torch

from recengine.export.encoder import (
    TextTowerConfig,
    build_text_tower,
    encoder_onnx_spec,
    prepare_for_export,
    resolve_encoder,
)
from recengine.export.onnx_tools import BertOptimization, Int8Config, export_torch_to_onnx, optimize_bert, quantize_int8

logging.getLogger().setLevel(logging.ERROR)
torch.manual_seed(0)
V = Path("/tmp/enc14/v")
src = resolve_encoder(None)
tower = prepare_for_export(build_text_tower(src, TextTowerConfig(finetune="none", item_dim=64)))
spec = encoder_onnx_spec(tower)
raw = V / "base_raw.onnx"
export_torch_to_onnx(tower, spec.example_inputs(spec.trace_sizes, 0), spec.output_names, spec.dynamic_axes(), raw)
opt = BertOptimization(num_heads=12, hidden_size=384)
optimize_bert(raw, V / "base_fp32.onnx", opt)
quantize_int8(V / "base_fp32.onnx", V / "base_opt_then_q.onnx", Int8Config())
quantize_int8(raw, V / "base_q_raw.onnx", Int8Config())
st = optimize_bert(V / "base_q_raw.onnx", V / "base_q_then_opt.onnx", opt)
print("q_then_opt fused:", st)
for n in ("base_raw", "base_fp32", "base_opt_then_q", "base_q_raw", "base_q_then_opt"):
    m = onnx.load(str(V / f"{n}.onnx"))
    print(n, len(m.graph.node), dict(collections.Counter(x.op_type for x in m.graph.node).most_common(8)))
