"""Engine.open of the 1M-item bundle before and after a runtime change, interleaved in fresh processes.

`PYTHONPATH` of each side is a `git archive` snapshot laid out as the package (see README.md); every run is
`recengine.bench.synthetic.open_probe` (open, warmup, 50 recommends, 10 similar) in its own process.
"""

import json
import os
import subprocess
import sys

BUNDLE = "/tmp/me/s1m-work/synthetic-1000000"
SIDES = (("before", "/tmp/me/snap1m"), ("after", "/tmp/me/snapafter"))
CODE = ("import json, sys; from recengine.bench.synthetic import open_probe; "
        "print('PROBE ' + json.dumps(open_probe(sys.argv[1], 'int8', 1, 50)))")
SHOWN = ("open_s", "warmup_s", "rss_mib_after_open", "rss_mib_steady", "rss_mib_peak")

out: dict[str, list[dict]] = {tag: [] for tag, _ in SIDES}
for _round in range(3):
    for tag, path in SIDES:
        env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        proc = subprocess.run([sys.executable, "-c", CODE, BUNDLE], capture_output=True, text=True, env=env)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE ")]
        if not lines:
            print(proc.stderr[-2000:])
            sys.exit(1)
        probe = json.loads(lines[0][6:])
        probe["load"] = os.getloadavg()
        out[tag].append(probe)
        print(tag, {k: probe[k] for k in SHOWN}, probe["load"], flush=True)
with open("/tmp/me/openab.json", "w") as f:
    json.dump(out, f, indent=1)
