"""Latency of the bundle's three int8 models under each CPU memory policy, in ONE process with the policies
interleaved call by call (recengine.bench.timing.measure_interleaved), so load changes on the shared machine
hit every policy alike. One `recengine.sessions.Session` per (model, policy), threads=1, created by
`make_session` exactly as the engine does (the policy registered under its own session kind).

usage: python latency.py OUT.json BUNDLE
"""
import json
import sys
import time

import numpy as np

from recengine import sessions
from recengine.bench.timing import Budget, measure_interleaved
from recengine.bundle import open_bundle
from recengine.bundle.format import history_inputs, left_pad
from recengine.tokenize import TextTokenizer

P = sessions.CpuMemoryPolicy
ENCODER = {
    "arena_on": P(True, True, None),
    "arena_off": P(False, True, None),
    "arena_off_nopattern": P(False, False, None),
    "arena_on_nopattern": P(True, False, None),
    "arena_on_release": P(True, True, 1),
    "arena_off_release": P(False, True, 1),
}
SMALL = {k: ENCODER[k] for k in ("arena_on", "arena_off", "arena_off_nopattern", "arena_on_nopattern")}


def make(model_path, policies):
    config = sessions.SessionConfig(device="cpu", threads=1)
    out = {}
    for name, policy in policies.items():
        sessions.CPU_MEMORY[name] = policy
        out[name] = sessions.make_session(f"{name}.int8", model_path, "cpu", config)
        assert out[name].memory == policy
    return out


def summarise(timings, base="arena_on"):
    b = timings[base].percentile(50)
    return {n: {**t.summary(), "p50_vs_arena_on": round(t.percentile(50) / b, 3)} for n, t in timings.items()}


def main():
    out, bundle = sys.argv[1], sys.argv[2]
    r = open_bundle(bundle)
    man = r.manifest
    tm = man["tokenizer"]
    tok = TextTokenizer(r.path(tm.get("path", "tokenizer.json")), int(tm.get("max_length", 128)),
                        bool(tm.get("lowercase", False)))
    texts = json.load(open(r.path(man["items"]["texts"])))
    vectors = r.load_npy(man["items"]["vectors"])
    models = {m: r.path(man["models"][m]["variants"]["int8"]["path"]) for m in ("encoder", "user_tower", "fusion")}
    rng = np.random.default_rng(0)
    res = {"bundle": bundle, "loadavg_start": open("/proc/loadavg").read().split()[:3]}

    def batches(rows, n):
        return [tok.encode([texts[j] for j in rng.integers(0, len(texts), size=rows).tolist()]) for _ in range(n)]

    queries = [tok.encode([texts[j][: rng.integers(10, 80)]]) for j in rng.integers(0, len(texts), size=512).tolist()]
    enc = make(models["encoder"], ENCODER)
    # two groups, each interleaved: the release policies call malloc_trim, which would also drop the heap
    # the arena-off sessions keep between runs, so they are timed apart from those
    groups = {"": ("arena_on", "arena_off", "arena_off_nopattern", "arena_on_nopattern"),
              "_release": ("arena_on", "arena_on_release", "arena_off_release")}
    for label, feeds, budget in (("encoder_b1", queries, Budget(requests=400, duration=20, warmup=10)),
                                 ("encoder_b16", batches(16, 64), Budget(requests=40, duration=30, warmup=3)),
                                 ("encoder_b64", batches(64, 32), Budget(requests=14, duration=50, warmup=2))):
        for suffix, names in groups.items():
            fns = {n: (lambda s, f: lambda i: s.run({"input_ids": f[i % len(f)].input_ids,
                                                     "attention_mask": f[i % len(f)].attention_mask}))(enc[n], feeds)
                   for n in names}
            t = time.time()
            key = label + suffix
            res[key] = summarise(measure_interleaved(fns, len(feeds[0].input_ids), budget))
            print(key, round(time.time() - t), json.dumps({n: v["p50_vs_arena_on"] for n, v in res[key].items()}),
                  flush=True)
    # malloc_trim alone, as the release pays it after a run (heap as the runs above left it)
    trims = []
    for _ in range(50):
        t = time.perf_counter_ns()
        sessions.release_heap()
        trims.append((time.perf_counter_ns() - t) / 1e6)
    res["malloc_trim_ms_p50"] = round(float(np.median(trims)), 4)
    # user tower: batch 1, histories of 1..50 stored items; fusion: batch 1 x 50 candidates (n_candidates)
    ut, fu = [], []
    for _ in range(256):
        h = rng.integers(0, len(vectors), size=rng.integers(1, 51))
        hist, mask = history_inputs(left_pad([h], 50), vectors)
        ut.append({"history": hist, "history_mask": mask, "scene": np.zeros((1, 2), np.int64),
                   "profile": np.zeros((1, 1), np.int64)})
        c = rng.integers(0, len(vectors), size=50)
        fu.append({"user": rng.standard_normal((1, 64)).astype(np.float32), "items": vectors[c][None],
                   "item_feats": rng.random((1, 50, 3)).astype(np.float32),
                   "pop_bucket": rng.integers(0, 5, (1, 50)).astype(np.int64),
                   "scene": np.zeros((1, 2), np.int64), "profile": np.zeros((1, 1), np.int64)})
    for model, feeds in (("user_tower", ut), ("fusion", fu)):
        ss = make(models[model], SMALL)
        fns = {n: (lambda sess, f: lambda i: sess.run(f[i % len(f)]))(x, feeds) for n, x in ss.items()}
        res[f"{model}_b1"] = summarise(measure_interleaved(fns, 1, Budget(requests=3000, duration=15, warmup=50)))
        print(f"{model}_b1", json.dumps({n: v["p50_vs_arena_on"] for n, v in res[f"{model}_b1"].items()}), flush=True)
    res["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    json.dump(res, open(out, "w"), indent=1)


if __name__ == "__main__":
    main()
