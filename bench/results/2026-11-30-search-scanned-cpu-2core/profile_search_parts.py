"""Where the hybrid search's extra time goes on a scanned text space, and what `fuse_scanned` changes.

For titles drawn from an items table (lower-cased; `--typo` drops one inner letter of a 5+-letter word),
times per query, one thread, the query embeddings computed beforehand (no encoder run): the dense search
alone, the candidate fusion (`fuse` over the 30 best by cosine and the 100 best by BM25: what `search`
served on every catalogue before) and the served search (`neighbours.search_embedded`, which on a scanned
space is `fuse_scanned` over every row), with the candidate fusion's parts; then how often the two fusions
return the same top 10. Medians over 3 passes.

Usage: python profile_search_parts.py BUNDLE ITEMS_CSV [--typo]
"""

from __future__ import annotations

import csv
import random
import sys
import time

import numpy as np

import recengine
from recengine import neighbours as nb
from recengine.retrieval import retrieve


def main() -> None:
    bundle, items, typo = sys.argv[1], sys.argv[2], "--typo" in sys.argv[3:]
    st = recengine.Engine.open(bundle, threads=1)._state
    with open(items, newline="") as f:
        titles = [row.get("title") or "" for row in csv.DictReader(f)]
    rng = random.Random(0)
    qs = [t.lower() for t in rng.sample(titles, 300)]
    if typo:
        def drop(q: str) -> str:
            w = q.split()
            long_ = [i for i, x in enumerate(w) if len(x) >= 5]
            if long_:
                i = rng.choice(long_)
                p = rng.randrange(1, len(w[i]) - 1)
                w[i] = w[i][:p] + w[i][p + 1:]
            return " ".join(w)
        qs = [drop(q) for q in qs]
    embs = st.models.encode_batch(qs)[0]
    cat = st.catalogue
    unit = cat.text_embeddings
    times: dict[str, list[float]] = {}

    def clock(name, fn, *args):
        t0 = time.perf_counter()
        out = fn(*args)
        times.setdefault(name, []).append(time.perf_counter() - t0)
        return out

    space = st.text_index.backend(cat.n_alive, 1)
    same = 0
    for rep in range(3):
        for i, q in enumerate(qs):
            qv = np.ascontiguousarray(embs[i], dtype=np.float32).reshape(1, -1)
            clock("dense search", nb.search_embedded, st, embs[i], q, 10, None, "dense")
            served = clock("served hybrid (fuse_scanned)", nb.search_embedded, st, embs[i], q, 10, None)
            t0 = time.perf_counter()
            (r,) = clock("  retrieve 30", retrieve, space, st.text_index.exact, unit, cat.alive, qv, 30)
            lq = clock("  BM25 query", st.lexical.query, q)
            if lq.empty:
                cand = nb.fuse(r.rows, r.scores, nb._no_rows, np.zeros(0, np.int64), np.zeros(0, np.float32),
                               nb._no_rows, 10)
            else:
                lr, ls = clock("  BM25 top 100", lq.top, 100, None)
                cosine = qv[0].__rmatmul__
                cand = clock("  fuse", nb.fuse, r.rows, r.scores, lambda rows, c=cosine: c(unit[rows]), lr, ls,
                             lq.score, 10)
            times.setdefault("candidate hybrid (before)", []).append(time.perf_counter() - t0)
            if rep == 0:
                same += cand.rows.tolist() == served.rows.tolist()
    print(f"{bundle}: {len(qs)} {'typo ' if typo else ''}title queries, {cat.n_alive} items")
    for name, v in times.items():
        print(f"{name:32s} median {np.median(v) * 1e6:7.1f} us")
    print(f"same top 10 from both fusions: {same}/{len(qs)}")


if __name__ == "__main__":
    main()
