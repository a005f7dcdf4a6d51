import json
import sys

from recengine.bench.synthetic import probe_open

out = {}
for name, path in [a.split("=", 1) for a in sys.argv[2:]]:
    p = probe_open(path, None, threads=1, runs=3, requests=50)
    out[name] = {"bundle": path, "bundle_bytes": p["bundle_bytes"], "variants": p["runs"][0]["variants"],
                 "median": p["median"], "runs": p["runs"]}
    print(name, p["bundle_bytes"], p["runs"][0]["variants"], p["median"], flush=True)
json.dump(out, open(sys.argv[1], "w"), indent=1)
