"""What the ORT sessions alone take: ModelSet.load (the three int8 sessions, no catalogue, no index, no BM25),
then 100 batch-1 encodes (search), encode of 64 and of 1,000 catalogue texts (add_items), one fresh process
per configuration (the configurations of probe.py), rounds interleaved.

usage: python sessions_probe.py OUT.json BUNDLE [--rounds 3] [--configs a,b]
"""
import json
import os
import statistics
import subprocess
import sys

from probe import CONFIGS

CHILD = r'''
import json, sys
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
import recengine.models
from recengine.bundle import open_bundle
from recengine.models import ModelSet

for kind, p in cfg.get("memory", {}).items():
    sessions.CPU_MEMORY[kind] = sessions.CpuMemoryPolicy(**p)
if "rows" in cfg:
    recengine.models.CPU_ENCODE_ROWS = cfg["rows"]
if cfg.get("same_as_requested"):
    rt.create_and_register_allocator(
        rt.OrtMemoryInfo("Cpu", rt.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, rt.OrtMemType.DEFAULT),
        rt.OrtArenaCfg({"arena_extend_strategy": 1}))
    base_options = sessions.session_options
    def patched(config, memory=sessions.DEFAULT_CPU_MEMORY):
        opts = base_options(config, memory)
        opts.add_session_config_entry("session.use_env_allocators", "1")
        return opts
    sessions.session_options = patched
r = open_bundle(sys.argv[1])
texts = json.load(open(r.path(r.manifest["items"]["texts"])))
res = {"before_load": status()["VmRSS"]}
m = ModelSet.load(r, "cpu", sessions.SessionConfig(device="cpu", threads=1))
res["loaded"] = status()["VmRSS"]
rng = np.random.default_rng(0)
for j in rng.integers(0, len(texts), size=100).tolist():
    m.encode_batch([texts[j][: rng.integers(10, 80)]])
res["search100"] = status()["VmRSS"]
pick = rng.integers(0, len(texts), size=1064).tolist()
m.encode([texts[j] for j in pick[:64]], batch_size=64)
s = status(); res["encode64"] = s["VmRSS"]; res["hwm_encode64"] = s["VmHWM"]
m.encode([texts[j] for j in pick[64:]], batch_size=64)
s = status(); res["encode1000"] = s["VmRSS"]; res["hwm_encode1000"] = s["VmHWM"]
for k in ("search100", "encode64", "encode1000", "hwm_encode1000"):
    res["d_" + k] = round(res[k] - res["loaded"], 1)
print("PROBE " + json.dumps(res))
'''


def main():
    out, bundle = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 3
    names = sys.argv[sys.argv.index("--configs") + 1].split(",") if "--configs" in sys.argv else list(CONFIGS)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    res = {"bundle": bundle, "loadavg_start": open("/proc/loadavg").read().split()[:3], "runs": {n: [] for n in names}}
    for k in range(rounds):
        for name in names[k % len(names):] + names[: k % len(names)]:
            p = subprocess.run(["nice", sys.executable, "-c", CHILD, bundle, json.dumps(CONFIGS[name])],
                               capture_output=True, text=True, env=env, timeout=1200)
            line = next((ln for ln in p.stdout.splitlines() if ln.startswith("PROBE ")), None)
            if line is None:
                raise SystemExit(f"{name}: {p.stderr[-3000:]}")
            res["runs"][name].append(json.loads(line[6:]))
            print(k, name, line[6:], flush=True)
    res["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    res["median"] = {n: {key: round(statistics.median(x[key] for x in rs), 1) for key in rs[0]}
                     for n, rs in res["runs"].items()}
    json.dump(res, open(out, "w"), indent=1)
    for n, m in res["median"].items():
        print(n, json.dumps(m))


if __name__ == "__main__":
    main()
