"""Engine.open time and RSS of a bundle in 3 fresh processes (`recengine.bench.synthetic.probe_open`: open,
warm-up, 50 recommends, 10 similar + search; medians). Usage: python probe_rss.py BUNDLE [BUNDLE ...]
Run under another runtime with PYTHONPATH pointing at a `git archive` of that commit laid out as the package
(`probe_at.sh COMMIT BUNDLE`), as the bisection below did."""
import json
import sys

from recengine.bench.synthetic import probe_open

for bundle in sys.argv[1:]:
    med = probe_open(bundle, None, threads=1, runs=3).get("median", {})
    print(bundle, json.dumps({k: v for k, v in med.items() if "rss" in k or "open" in k}), flush=True)
