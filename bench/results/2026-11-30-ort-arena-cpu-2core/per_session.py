"""Raw ORT, one model, one configuration, one fresh process: RSS after creating the session and after runs
(encoder: 100 batch-1 queries, one 64-row batch, 16 more, then 16- and 32-row batches; user tower and
fusion: batch 1, 1, 8, 64 with 50 history items / candidates), then after malloc_trim.
usage: per_session.py BUNDLE MODEL CFGJSON  (cfg keys: arena, pattern, same (kSameAsRequested env allocator),
shrink (arena shrinkage on every run))"""
import ctypes
import json
import sys

import numpy as np
import onnxruntime as rt

from recengine.bundle import open_bundle
from recengine.tokenize import TextTokenizer


def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return round(int(line.split()[1]) / 1024, 1)


bundle, model, cfg = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
r = open_bundle(bundle)
man = r.manifest
tok_m = man["tokenizer"]
tok = TextTokenizer(r.path(tok_m.get("path", "tokenizer.json")), int(tok_m.get("max_length", 128)),
                    bool(tok_m.get("lowercase", False)))
texts = json.load(open(r.path(man["items"]["texts"])))
opts = rt.SessionOptions()
opts.graph_optimization_level = rt.GraphOptimizationLevel.ORT_ENABLE_ALL
opts.execution_mode = rt.ExecutionMode.ORT_SEQUENTIAL
opts.inter_op_num_threads = 1
opts.intra_op_num_threads = 1
opts.enable_cpu_mem_arena = cfg.get("arena", True)
opts.enable_mem_pattern = cfg.get("pattern", True)
if cfg.get("same"):
    rt.create_and_register_allocator(
        rt.OrtMemoryInfo("Cpu", rt.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, rt.OrtMemType.DEFAULT),
        rt.OrtArenaCfg({"arena_extend_strategy": 1}))
    opts.add_session_config_entry("session.use_env_allocators", "1")
ro = None
if cfg.get("shrink"):
    ro = rt.RunOptions()
    ro.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
libc = ctypes.CDLL("libc.so.6")
out = {"start": rss()}
path = r.path(man["models"][model]["variants"]["int8"]["path"])
s = rt.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
out["created"] = rss()
rng = np.random.default_rng(0)
if model == "encoder":
    corpus = [texts[j] for j in rng.integers(0, len(texts), size=2000).tolist()]
    def enc(batch):
        b = tok.encode(batch)
        return s.run(None, {"input_ids": b.input_ids, "attention_mask": b.attention_mask}, ro)
    for _ in range(100):
        enc([corpus[rng.integers(0, 2000)][: rng.integers(10, 80)]])
    out["b1x100"] = rss()
    enc(corpus[:64])
    out["b64"] = rss()
    for st in range(0, 1000, 64):
        enc(corpus[st:st + 64])
    out["b64x16"] = rss()
    for _ in range(20):
        enc([corpus[rng.integers(0, 2000)][: rng.integers(10, 80)]])
    out["b1_after"] = rss()
    for bs in (16, 32):
        for st in range(0, 256, bs):
            enc(corpus[st:st + bs])
        out[f"b{bs}"] = rss()
else:
    ins = s.get_inputs()
    def feeds(b):
        f = {}
        for i in ins:
            shape = [b if isinstance(d, str) and i.shape.index(d) == 0 else (50 if isinstance(d, str) else d)
                     for d in i.shape]
            f[i.name] = (np.zeros(shape, np.int64) if "int64" in i.type else
                         rng.standard_normal(shape).astype(np.float32))
        return f
    out["shapes"] = {i.name: i.shape for i in ins}
    for b in (1, 1, 8, 64):
        s.run(None, feeds(b), ro)
        out[f"b{b}"] = rss()
libc.malloc_trim(0)
out["trimmed"] = rss()
print(json.dumps(out))
