"""ORT CPU memory options: RSS and latency of a served CPU-target bundle, one fresh process per configuration.

usage: python probe.py OUT.json BUNDLE [--rounds 3] [--configs a,b,...]
Each child: Engine.open(device="cpu", threads=1) with the configuration's session options applied to every
session, then: wait_ready; 100 searches (timed); add_items of 64 texts (timed); add_items of 1,000 texts
(timed); interleaved encoder-only batch-1 and batch-64 runs and add_items(64) calls (timed); VmRSS after
each stage and VmHWM at the end. Rounds interleave the configurations in a rotating order.
"""
import json
import os
import statistics
import subprocess
import sys
import time

CHILD = r'''
import json, statistics, sys, time
cfg = json.loads(sys.argv[2])

def status():
    out = {}
    for line in open("/proc/self/status"):
        k = line.split(":", 1)[0]
        if k in ("VmRSS", "VmHWM"):
            out[k] = round(int(line.split()[1]) / 1024, 1)
    return out

import numpy as np
import onnxruntime as rt
from recengine import sessions
from recengine.engine import Engine

memory = cfg.get("memory")  # None: this checkout's policy as it is
if memory is not None:
    for kind, p in memory.items():
        sessions.CPU_MEMORY[kind] = sessions.CpuMemoryPolicy(**p)
if "rows" in cfg:
    import recengine.models
    recengine.models.CPU_ENCODE_ROWS = cfg["rows"]
if cfg.get("same_as_requested"):  # every session on one env-level arena growing by kSameAsRequested
    rt.create_and_register_allocator(
        rt.OrtMemoryInfo("Cpu", rt.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, rt.OrtMemType.DEFAULT),
        rt.OrtArenaCfg({"arena_extend_strategy": 1}))
    base_options = sessions.session_options
    def patched(config, memory=sessions.DEFAULT_CPU_MEMORY):
        opts = base_options(config, memory)
        opts.add_session_config_entry("session.use_env_allocators", "1")
        return opts
    sessions.session_options = patched

base = status()
t = time.perf_counter()
e = Engine.open(sys.argv[1], device="cpu", threads=1)
open_s = time.perf_counter() - t
r = {"rss_import": base["VmRSS"], "open_s": round(open_s, 3), "rss_open": status()["VmRSS"]}
e.wait_ready()
r["rss_ready"] = status()["VmRSS"]
st = e._state
texts = list(st.catalogue.texts)
rng = np.random.default_rng(0)
queries = [texts[i][: rng.integers(10, 80)] for i in rng.integers(0, len(texts), size=105).tolist()]
lat = []
for i, q in enumerate(queries):
    t = time.perf_counter_ns(); e.search(q, k=10); dt = (time.perf_counter_ns() - t) / 1e6
    if i >= 5:
        lat.append(dt)
r["search_ms_p50"] = round(statistics.median(lat), 3)
r["rss_search100"] = status()["VmRSS"]
pick = rng.integers(0, len(texts), size=2000).tolist()
new = [{"item_id": f"new{i}", "text": texts[j]} for i, j in enumerate(pick)]
t = time.perf_counter(); e.add_items(new[:64]); r["add64_s"] = round(time.perf_counter() - t, 3)
r["rss_add64"] = status()["VmRSS"]
t = time.perf_counter(); e.add_items(new[64:1064]); r["add1000_s"] = round(time.perf_counter() - t, 3)
s = status(); r["rss_add1000"] = s["VmRSS"]; r["hwm_add1000"] = s["VmHWM"]
# latency, interleaved inside the process: encoder batch 1, encoder batch 64, add_items(64)
m = st.models
enc1, enc16, enc64, add64 = [], [], [], []
for rep in range(12):
    b = new[1064 + 64 * rep: 1064 + 64 * (rep + 1)]
    for _ in range(8):
        q = queries[rng.integers(0, len(queries))]
        t = time.perf_counter_ns(); m.encode_batch([q]); enc1.append((time.perf_counter_ns() - t) / 1e6)
    t = time.perf_counter_ns(); m.encode_batch([x["text"] for x in b]); enc64.append((time.perf_counter_ns() - t) / 1e6)
    t = time.perf_counter_ns(); m.encode_batch([x["text"] for x in b[:16]])
    enc16.append((time.perf_counter_ns() - t) / 1e6)
    t = time.perf_counter_ns(); e.add_items(b); add64.append((time.perf_counter_ns() - t) / 1e6)
r["enc1_ms_p50"] = round(statistics.median(enc1[8:]), 3)
r["enc64_ms_p50"] = round(statistics.median(enc64[1:]), 3)
r["enc16_ms_p50"] = round(statistics.median(enc16[1:]), 3)
r["add64_ms_p50"] = round(statistics.median(add64[1:]), 3)
s = status()
r["rss_end"] = s["VmRSS"]; r["hwm"] = s["VmHWM"]
import ctypes; ctypes.CDLL(None).malloc_trim(0); r["rss_end_trimmed"] = status()["VmRSS"]
r["policy"] = {k: vars(v) for k, v in sessions.CPU_MEMORY.items()}
import recengine.models
r["rows"] = recengine.models.CPU_ENCODE_ROWS
print("PROBE " + json.dumps(r))
'''

ON = {"arena": True, "mem_pattern": True, "release_above_rows": None}
OFF = {"arena": False, "mem_pattern": True, "release_above_rows": None}
ON_NOPAT = {"arena": True, "mem_pattern": False, "release_above_rows": None}
OFF_NOPAT = {"arena": False, "mem_pattern": False, "release_above_rows": None}
ON_REL = {"arena": True, "mem_pattern": True, "release_above_rows": 1}
OFF_REL = {"arena": False, "mem_pattern": True, "release_above_rows": 1}


def every(p):
    return {"encoder": p, "user_tower": p, "fusion": p}


CONFIGS = {
    # before this change: ORT's defaults for every session, add_items encoding 64 texts per run
    "before": {"memory": every(ON), "rows": 64},
    "arena_off": {"memory": every(OFF), "rows": 64},
    "arena_off_nopattern": {"memory": every(OFF_NOPAT), "rows": 64},
    "arena_on_nopattern": {"memory": every(ON_NOPAT), "rows": 64},
    "same_as_requested": {"memory": every(ON), "rows": 64, "same_as_requested": True},
    "enc_on_release_r64": {"memory": {**every(ON), "encoder": ON_REL}, "rows": 64},
    "enc_off_r16": {"memory": {**every(ON), "encoder": OFF}, "rows": 16},
    "enc_off_release_r16": {"memory": {**every(ON), "encoder": OFF_REL}, "rows": 16},
    "enc_on_release_r16": {"memory": {**every(ON), "encoder": ON_REL}, "rows": 16},
    "checkout": {},  # this checkout's sessions.py policy as committed
}



def run_child(bundle, cfg):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    p = subprocess.run(["nice", sys.executable, "-c", CHILD, bundle, json.dumps(cfg or {})], capture_output=True,
                       text=True, env=env, timeout=1800)
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("PROBE ")), None)
    if line is None:
        raise SystemExit(f"probe failed: {p.stderr[-3000:]}")
    return json.loads(line[6:])


def main():
    out, bundle = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 3
    names = (sys.argv[sys.argv.index("--configs") + 1].split(",") if "--configs" in sys.argv else list(CONFIGS))
    res = {"bundle": bundle, "loadavg_start": open("/proc/loadavg").read().split()[:3], "runs": {n: [] for n in names}}
    for k in range(rounds):
        order = names[k % len(names):] + names[: k % len(names)]
        for name in order:
            t = time.time()
            r = run_child(bundle, CONFIGS[name])
            r["loadavg"] = open("/proc/loadavg").read().split()[0]
            res["runs"][name].append(r)
            print(k, name, round(time.time() - t, 1), json.dumps(r), flush=True)
    res["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    res["median"] = {n: {key: round(statistics.median(x[key] for x in rs), 3) for key in rs[0]
                         if isinstance(rs[0][key], (int, float))} for n, rs in res["runs"].items()}
    json.dump(res, open(out, "w"), indent=1)
    for n, m in res["median"].items():
        print(n, json.dumps(m))


if __name__ == "__main__":
    main()
