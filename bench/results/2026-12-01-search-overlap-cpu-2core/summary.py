"""Per snapshot and query family: the range and median of the hybrid / dense-only p50 ratio over every round in
the ab110k*.jsonl files here, and how many (round, family) measurements are within 1.2x."""
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

FAMILIES = ("latency_bench", "title_lower", "descriptive", "one_common_word")
ratios: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
for f in sorted(Path(__file__).parent.glob("ab110k*.jsonl")):
    for line in f.read_text().splitlines():
        r = json.loads(line)
        for fam in FAMILIES:
            ratios[r["revision"]][fam].append(r[fam]["ratio"])
print("| snapshot | rounds | " + " | ".join(FAMILIES) + " | within 1.2x |")
print("|---" * (len(FAMILIES) + 3) + "|")
for rev, per in ratios.items():
    allr = [x for v in per.values() for x in v]
    cells = [f"{min(v):.2f}-{max(v):.2f} (median {np.median(v):.2f})" for v in (per[f] for f in FAMILIES)]
    within = f"{sum(x <= 1.2 for x in allr)} of {len(allr)}"
    print(f"| {rev} | {len(per[FAMILIES[0]])} | " + " | ".join(cells) + f" | {within} |")
