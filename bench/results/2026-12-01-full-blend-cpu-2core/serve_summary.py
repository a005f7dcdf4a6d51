"""Summary of serve_ab.sh's reports (serve/old-N, serve/new-N): per run, then medians per side."""
import glob
import json
import os

import numpy as np

rows: dict = {}
for f in sorted(glob.glob("serve/*-*/serve.json")):
    side, rnd = os.path.basename(os.path.dirname(f)).split("-")
    d = json.load(open(f))
    for r in d["results"]:
        print(side, rnd, r["endpoint"], "c", r["concurrency"], "p50", r["p50_ms"], "p99", r["p99_ms"],
              "rps", round(r["requests_per_s"]), "err", r["errors"], "srvCPU/req", r["server_cpu_us_per_request"],
              "load", r["load_average"])
        rows.setdefault((side, r["concurrency"]), []).append(
            (r["p99_ms"], r["server_cpu_us_per_request"], r["requests_per_s"]))
    for r in d["in_process"]:
        print(side, rnd, "in-process", r["endpoint"], "p50", r["p50_ms"], "p99", r["p99_ms"])
        rows.setdefault((side, "inproc"), []).append((r["p50_ms"], 0, 0))
for k, v in sorted(rows.items(), key=str):
    a = np.array(v)
    print(k, "median p99 (in-process: p50)", np.median(a[:, 0]), "median server CPU µs", np.median(a[:, 1]),
          "median rps", np.median(a[:, 2]))
