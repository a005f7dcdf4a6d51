"""The lexical half (query + top 100) on a second thread while the encoder runs, against `search` as served and
the dense-only search, alternating. Usage: python overlap.py BUNDLE"""
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from common import open_families

from recengine import neighbours
from recengine.retrieval import retrieve

eng, families = open_families(sys.argv[1])
st = eng._state  # noqa: SLF001
cat = st.catalogue
qs = families["latency_bench"] + families["descriptive"] + families["one_common_word"]
pool = ThreadPoolExecutor(1)


def lexical(q):
    lq = st.lexical.query(q)
    return lq, (None if lq.empty else lq.top(100, None))


def overlapped(q):
    fut = pool.submit(lexical, q)
    emb = st.models.encode_queries([q])[0]
    lq, top = fut.result()
    (r,) = retrieve(st.text_index.backend(cat.n_alive, 1), st.text_index.exact, cat.text_embeddings, cat.alive,
                    emb[None, :], 30)
    if top is None:
        return r
    unit = cat.text_embeddings
    return neighbours.fuse(r.rows, r.scores, lambda rows: unit[rows] @ emb, top[0], top[1], lq.score, 10, "sum",
                           1.0, full=lq.full, power=2.0)


def served(q):
    return neighbours.search(st, q, 10, None)


def dense(q):
    return neighbours.search(st, q, 10, None, mode="dense")


assert all(overlapped(q).rows.tolist() == served(q).rows.tolist() for q in qs)
print("load", open("/proc/loadavg").read().strip())
res: dict[str, list[float]] = {"dense": [], "served": [], "overlap": []}
fns = (("dense", dense), ("served", served), ("overlap", overlapped))
for rep in range(5):
    for q in qs:
        for name, f in fns[:: 1 if rep % 2 else -1]:
            s = time.perf_counter()
            f(q)
            res[name].append(time.perf_counter() - s)
base = np.percentile(res["dense"], 50)
for k, v in res.items():
    print(k, f"p50 {np.percentile(v, 50) * 1e3:.3f} ms, {np.percentile(v, 50) / base:.2f}x dense")
print("load", open("/proc/loadavg").read().strip())
