"""Cosine to fp32 of every variant over 512 seeded catalogue texts (runtime tokenizer, batches of 32)."""

import json
import sys

import numpy as np
import onnxruntime as ort

from recengine.export.onnx_tools import row_cosines
from recengine.tokenize import TextTokenizer

B = "/tmp/std-demo-copy"
texts = json.load(open(f"{B}/items/texts.json"))
idx = np.load("/tmp/enc14/inputs.npz")["parity_idx"]
tok = TextTokenizer(f"{B}/tokenizer.json", 64, True)
sel = [texts[i] for i in idx]
order = np.argsort(-tok.lengths(sel), kind="stable")
batches = [tok.encode([sel[i] for i in order[s : s + 32]]) for s in range(0, len(sel), 32)]


def run(path):
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    o.log_severity_level = 3
    s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
    outs = [s.run(None, {"input_ids": b.input_ids, "attention_mask": b.attention_mask}) for b in batches]
    return np.concatenate([x[0] for x in outs]), np.concatenate([x[1] for x in outs])


ref = run("/tmp/enc14/v/base_fp32.onnx")
res = {}
for name in sys.argv[1:]:
    got = run(f"/tmp/enc14/v/{name}.onnx")
    r = {}
    for k, a, b in zip(("text_embedding", "item_vector"), ref, got):
        c = row_cosines(a, b)
        r[k] = {"mean": round(float(c.mean()), 5), "min": round(float(c.min()), 5)}
    res[name] = r
    print(name, json.dumps(r), flush=True)
json.dump(res, open("/tmp/enc14/parity_base.json", "w"), indent=1)
