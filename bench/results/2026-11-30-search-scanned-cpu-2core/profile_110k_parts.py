"""The lexical half of `search` at 110k items, part by part: on the synthetic bundle of `recengine bench latency
--synthetic-items 100000` (quick profile, tiny encoder: the BM25 costs do not depend on the encoder), per query
family, medians of 3 passes of 64 queries, one thread, query embeddings computed beforehand (ms).

Usage: OPENBLAS_NUM_THREADS=1 python profile_110k_parts.py BUNDLE
"""

from __future__ import annotations

import random
import sys
import time

import numpy as np

import recengine
from recengine import neighbours as nb
from recengine.retrieval import retrieve


def main() -> None:
    st = recengine.Engine.open(sys.argv[1], threads=1)._state
    cat = st.catalogue
    rng = random.Random(0)
    texts = list(cat.texts)
    titles = [t.split("\n")[0].replace("title: ", "") for t in rng.sample(texts[:9742], 64)]
    families = {"latency_bench": [t.split("\n")[0] for t in rng.sample(texts[:9742], 64)],
                "title_lower": [t.lower() for t in titles],
                "descriptive": ["space adventure with robots", "funny animated movie for kids about toys",
                                "romantic comedy in new york", "dark crime thriller"] * 16,
                "one_common_word": ["drama", "comedy", "action", "thriller"] * 16}
    space = st.text_index.backend(cat.n_alive, 1)
    unit = cat.text_embeddings
    for fam, qs in families.items():
        embs = st.models.encode_batch(qs)[0]
        times: dict[str, list[float]] = {}

        def clock(name, fn, *args, _t=times):
            t0 = time.perf_counter()
            out = fn(*args)
            _t.setdefault(name, []).append(time.perf_counter() - t0)
            return out

        for _ in range(3):
            for i, q in enumerate(qs):
                qv = np.ascontiguousarray(embs[i], dtype=np.float32).reshape(1, -1)
                clock("dense search", nb.search_embedded, st, embs[i], q, 10, None, "dense")
                clock("hybrid search", nb.search_embedded, st, embs[i], q, 10, None)
                (r,) = clock("retrieve 30", retrieve, space, st.text_index.exact, unit, cat.alive, qv, 30)
                lq = clock("BM25 query", st.lexical.query, q)
                if lq.empty:
                    continue
                lr, ls = clock("BM25 top 100", lq.top, 100, None)
                clock("BM25 of the dense 30", lq.score, r.rows)
                clock("fuse", nb.fuse, r.rows, r.scores, lambda rows, q0=qv[0]: unit[rows] @ q0, lr, ls, lq.score,
                      10)
        print(fam, "  ".join(f"{k} {np.median(v) * 1e3:.3f}" for k, v in times.items()))


if __name__ == "__main__":
    main()
