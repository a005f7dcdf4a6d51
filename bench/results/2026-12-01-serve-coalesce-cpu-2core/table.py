"""The runs of this folder as one table: python table.py DIR (final, pool, freeze, coalesce)."""

import json
import sys
from pathlib import Path

for run in sorted(Path(sys.argv[1]).iterdir()):
    report = run / "serve.json"
    if not report.is_file():
        continue
    data = json.loads(report.read_text())
    for r in data["results"]:
        print(f"| {run.name} | {r['concurrency']} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['p99_ms']:.2f} | "
              f"{r['requests_per_s']:,.0f} | {r['errors']} | {r['server_cpu_us_per_request']:.0f} | "
              f"{r['client_cpu_us_per_request']:.0f} |")
