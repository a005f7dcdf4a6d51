"""Interleaved rounds: every engine in its own fresh process, shuffled order per round."""

import json
import random
import subprocess
import sys

engines = sys.argv[3:]
rounds, n = int(sys.argv[1]), int(sys.argv[2])
rows = []
for r in range(rounds):
    order = engines[:]
    random.Random(r).shuffle(order)
    la = open("/proc/loadavg").read().split()[0]
    for e in order:
        p = subprocess.run([sys.executable, "/tmp/enc14/worker.py", e, str(n)], capture_output=True, text=True)
        if p.returncode:
            print(p.stderr[-2000:], file=sys.stderr)
            continue
        row = json.loads(p.stdout.strip().splitlines()[-1])
        row["round"] = r
        row["load1"] = float(la)
        rows.append(row)
        print(json.dumps(row), flush=True)
