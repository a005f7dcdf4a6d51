"""Open-time and RSS probe, each run in a fresh process: Engine.open, then the first recommend, the first
search (which waits for anything built in the background), warm-up and served calls; VmRSS/VmHWM.
usage: python probe.py OUT.json name=bundle [name=bundle ...]   (runs=3, threads=1)"""
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r'''
import json, sys, time
def status():
    out = {}
    for line in open("/proc/self/status"):
        k = line.split(":", 1)[0]
        if k in ("VmRSS", "VmHWM"):
            out[k] = round(int(line.split()[1]) / 1024, 1)
    return out
import numpy as np
import recengine
from recengine.engine import Engine
base = status()
t = time.perf_counter()
e = Engine.open(sys.argv[1], device="cpu", threads=1)
open_s = time.perf_counter() - t
after_open = status()
users = e.user_ids(); items = e.item_ids()
t = time.perf_counter(); e.recommend(user_id=users[0], k=10); first_rec = time.perf_counter() - t
t = time.perf_counter(); e.search("a story about love", k=10); first_search = time.perf_counter() - t
t = time.perf_counter(); e.similar_items(items[0], k=10); first_similar = time.perf_counter() - t
e.warmup()
rng = np.random.default_rng(0)
for i in rng.integers(0, len(users), size=50).tolist():
    e.recommend(user_id=users[i], k=10)
for i in rng.integers(0, len(items), size=10).tolist():
    e.similar_items(items[i], k=10); e.search("a story about " + str(items[i]), k=10)
steady = status()
print("PROBE " + json.dumps({"open_s": round(open_s, 3), "first_recommend_s": round(first_rec, 4),
      "first_search_s": round(first_search, 4), "first_similar_s": round(first_similar, 4),
      "open_to_search_ready_s": round(open_s + first_rec + first_search, 3),
      "rss_mib_before_open": base["VmRSS"], "rss_mib_after_open": after_open["VmRSS"],
      "rss_mib_steady": steady["VmRSS"], "rss_mib_peak": steady["VmHWM"], "variants": e.variants,
      "recengine": recengine.__file__}))
'''

def probe(bundle, runs=3):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    out = []
    for _ in range(runs):
        p = subprocess.run([sys.executable, "-c", CHILD, bundle], capture_output=True, text=True, env=env, timeout=1200)
        line = next((ln for ln in p.stdout.splitlines() if ln.startswith("PROBE ")), None)
        if line is None:
            raise SystemExit(f"probe failed: {p.stderr[-2000:]}")
        out.append(json.loads(line[6:]))
    med = {k: round(statistics.median(r[k] for r in out), 3) for k in out[0] if isinstance(out[0][k], float)}
    return {"bundle": bundle, "bundle_bytes": sum(f.stat().st_size for f in Path(bundle).rglob("*") if f.is_file()),
            "median": med, "runs": out}

if __name__ == "__main__":
    res = {"loadavg_start": open("/proc/loadavg").read().split()[:3]}
    for name, path in (a.split("=", 1) for a in sys.argv[2:]):
        res[name] = probe(path)
        print(name, res[name]["bundle_bytes"], json.dumps(res[name]["median"]), flush=True)
    res["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    print(res["loadavg_start"], res["loadavg_end"])
    json.dump(res, open(sys.argv[1], "w"), indent=1)
