"""Hybrid `search_embedded` (after the encoder) with 100 / 50 / 30 / 20 lexical candidates: p50 and the share of
queries whose top 10 is identical to the 100-candidate one. Usage: python lexical_candidates.py BUNDLE"""
import sys
import time

import numpy as np
from common import open_families

from recengine import neighbours

eng, families = open_families(sys.argv[1])
st = eng._state  # noqa: SLF001
embs = {q: st.models.encode_queries([q])[0] for qs in families.values() for q in qs}
for name, qs in families.items():
    ref: dict[str, list[int]] = {}
    for n in (100, 50, 30, 20):
        neighbours.SEARCH_CANDIDATES = n
        same, ts = 0, []
        for rep in range(5):
            for q in qs:
                s = time.perf_counter()
                r = neighbours.search_embedded(st, embs[q], q, 10, None)
                ts.append(time.perf_counter() - s)
                if rep == 0:
                    ref.setdefault(q, r.rows.tolist())
                    same += r.rows.tolist() == ref[q]
        print(name, n, f"identical top 10 {same / len(qs):.2f}, p50 {np.percentile(ts, 50) * 1e3:.3f} ms")
