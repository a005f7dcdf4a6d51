"""A/B of two server snapshots under the same lean client, alternating rounds (this folder's ab.json).

    python ab_server.py BUNDLE OUT.json NAME=PYTHONPATH [NAME=PYTHONPATH ...] [--rounds 3] [--duration 4]

Each NAME is a snapshot of recengine importable from PYTHONPATH (`git archive COMMIT`, with runtime/ as
`recengine`, bench/ as `recengine/bench`). Per round and snapshot: start `recengine serve BUNDLE --port 0`
from that snapshot, drive `POST /recommend {"user_id", "k": 10}` at concurrency 1 and 8 with
`recengine.bench.serve_client` (of the running checkout), record latency, requests/s, errors and the CPU
time per request of the server's processes and of the client.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from recengine.bench.machine import load_average, machine_info
from recengine.bench.serve import cpu_flags, cpu_times, process_tree
from recengine.bench.serve_client import drive, run
from recengine.server.process import ServerProcess


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("bundle")
    parser.add_argument("out")
    parser.add_argument("snapshots", nargs="+")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--concurrency", default="1,8")
    args = parser.parse_args()
    from recengine import Engine

    engine = Engine.open(args.bundle, device="cpu", threads=1)
    users = engine.user_ids()
    rng = np.random.default_rng(0)
    requests = [("POST", "/recommend", json.dumps({"user_id": users[i], "k": 10}).encode())
                for i in rng.integers(0, len(users), 256)]
    del engine
    snaps = dict(s.split("=", 1) for s in args.snapshots)
    rows = []
    for rnd in range(args.rounds):
        for name, path in snaps.items():
            env = {"PYTHONPATH": path}
            with ServerProcess(args.bundle, ["--log-level", "warning"], env=env) as server:
                assert server.proc is not None and server.url is not None
                pids = process_tree(server.proc.pid)
                for c in (int(x) for x in args.concurrency.split(",")):
                    s0 = cpu_times(pids)
                    r = run(drive(server.url, requests, c, args.duration, 20000, 20))
                    s1 = cpu_times(pids)
                    assert s0 is not None and s1 is not None
                    a = np.asarray(r.samples_ms)
                    row = {"round": rnd, "snapshot": name, "concurrency": c,
                           "p50_ms": round(float(np.percentile(a, 50)), 3),
                           "p95_ms": round(float(np.percentile(a, 95)), 3),
                           "p99_ms": round(float(np.percentile(a, 99)), 3),
                           "requests_per_s": round(len(a) / r.wall_s, 1), "errors": sum(r.errors.values()),
                           "server_cpu_us_per_request": round((sum(s1) - sum(s0)) / r.sent * 1e6, 1),
                           "server_system_us_per_request": round((s1[1] - s0[1]) / r.sent * 1e6, 1),
                           "client_cpu_us_per_request": round(r.client_cpu_s / r.sent * 1e6, 1),
                           "load_average": load_average()}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    summary = {}
    for name in snaps:
        for c in (int(x) for x in args.concurrency.split(",")):
            mine = [r for r in rows if r["snapshot"] == name and r["concurrency"] == c]
            summary[f"{name} c={c}"] = {k: float(np.median([r[k] for r in mine])) for k in
                                        ("server_cpu_us_per_request", "client_cpu_us_per_request", "p50_ms",
                                         "p99_ms", "requests_per_s")}
    machine = machine_info()
    machine["cpu_flags"] = cpu_flags()
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump({"command": " ".join(sys.argv), "snapshots": snaps, "machine": machine,
                   "median_over_rounds": summary, "rows": rows}, handle, indent=1)


if __name__ == "__main__":
    main()
