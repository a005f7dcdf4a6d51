"""More variants: static QDQ (QUInt8 / QInt8 activations, calibrated on catalogue texts), MatMulNBits weight-only."""

import json
import logging
import sys
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from recengine.tokenize import TextTokenizer

logging.getLogger().setLevel(logging.ERROR)
B = "/tmp/std-demo-copy"
V = Path("/tmp/enc14/v")
F = V / "fp32.onnx"
texts = json.load(open(f"{B}/items/texts.json"))
tok = TextTokenizer(f"{B}/tokenizer.json", 64, True)
rng = np.random.default_rng(1)
cal = [tok.encode([texts[i]]) for i in rng.choice(len(texts), 64, replace=False)]


class Reader(CalibrationDataReader):
    def __init__(self):
        self.it = iter([{"input_ids": b.input_ids, "attention_mask": b.attention_mask} for b in cal])

    def get_next(self):
        return next(self.it, None)


what = sys.argv[1:]
for act in ("u8", "s8"):
    name = f"static_{act}"
    if name not in what:
        continue
    try:
        quantize_static(
            str(F),
            str(V / f"{name}.onnx"),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8 if act == "u8" else QuantType.QInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Gemm"],
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
        print("built", name)
    except Exception as e:
        print(name, "failed:", repr(e)[:300])
if "nbits4" in what or "nbits8" in what:
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    for bits in (4, 8):
        name = f"nbits{bits}"
        if name not in what:
            continue
        try:
            m = onnx.load(str(F))
            q = (
                MatMulNBitsQuantizer(m, bits=bits, block_size=32, is_symmetric=True, accuracy_level=4)
                if bits == 4
                else MatMulNBitsQuantizer(m, bits=bits, block_size=32, is_symmetric=True, accuracy_level=4)
            )
            q.process()
            q.model.save_model_to_file(str(V / f"{name}.onnx"))
            print("built", name)
        except Exception as e:
            print(name, "failed:", repr(e)[:300])
