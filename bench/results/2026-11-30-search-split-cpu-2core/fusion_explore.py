"""Fusion rules tried for the split bundles' search (issue 15), each over every row (an exact scan of the text
space and the dense BM25 vector), on the search bench's queries (seed 0, 300 known items x 4, 40 per attribute
column) and, on MovieLens and MovieLens-100K, the ten descriptive queries (those whose film is in the catalogue).
sum_<scale>_<w>: (cos + w * bm25 / s) (the served rule at power 1; s = best candidate's or max(best, full));
rel_*: cosine min-max normalised over its top 100 + w * bm25 / s; sq_full_<w>: cos + w * (bm25 / max(best, full))^2
(served: w = 1); cube_*: the cube. Usage: python fusion_explore.py BUNDLE DATA|-"""
import json, re, sys
import numpy as np
import recengine
from recengine.bench.search import make_queries, flat_queries, evaluate, K
from recengine.data import load_dataset
from recengine.retrieval import topk_rows

bundle, data = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] != "-" else None)
e = recengine.Engine.open(bundle, threads=1); e.wait_ready()
st = e._state; cat = st.catalogue; texts = list(cat.texts)
ds = load_dataset(data)
columns = tuple(st.manifest["data"].get("text_columns") or ds.items.text_columns)
queries = make_queries(texts, columns, 300, 40, 0)
flat, offsets = flat_queries(queries)
DESC = {}
if data is None or "ml100k" in data:
    sys.path.insert(0, "/work/main/bench/results/2026-11-30-search-split-cpu-2core")
    from descriptive_queries import QUERIES as DESC
dq = list(DESC)
allq = flat + dq
emb = np.concatenate([st.models.encode_queries(allq[s:s+64]) for s in range(0, len(allq), 64)])
E = cat.text_embeddings
cos_all = emb @ E.T
lex, full = [], []
for q in allq:
    lq = st.lexical.query(q); lex.append(lq.dense(len(texts))); full.append(lq.full)
lex = np.stack(lex); full = np.array(full)

def rank(score):
    idx, _ = topk_rows(score[None, :].astype(np.float32), K); return idx[0]

def variant(fn):
    return lambda i, q: rank(fn(cos_all[i], lex[i], full[i]))

def sum_(w, scale):
    def f(c, l, fu):
        best = l.max()
        if best <= 0: return c
        s = max(best, fu) if scale == "full" else best
        return (c + w * l / s) / (1 + w)
    return f

def rel(w, scale, n=100):
    def f(c, l, fu):
        best = l.max()
        if best <= 0: return c
        top = np.partition(c, -n)[-n:]
        lo, hi = top.min(), top.max()
        cn = np.clip((c - lo) / max(hi - lo, 1e-6), 0, None)
        s = max(best, fu) if scale == "full" else best
        return cn + w * l / s
    return f

def sq(w, p=2):
    def f(c, l, fu):
        best = l.max()
        if best <= 0: return c
        s = max(best, fu)
        return c + w * (l / s) ** p
    return f

V0 = {"dense": lambda c, l, fu: c, "sum_best_1": sum_(1, "best"), "sum_full_1": sum_(1, "full"),
     "sum_full_0.5": sum_(0.5, "full"),
     "rel_full_1": rel(1, "full"),
     "sq_full_1": sq(1), "sq_full_0.5": sq(0.5), "cube_full_1": sq(1, 3), "cube_full_2": sq(2, 3)}
V = V0
titles = [t.split("\n")[0].removeprefix("title: ") for t in texts]
out = {}
for name, fn in V.items():
    r = evaluate(variant(fn), queries, offsets)
    row = {"hit@1": round(r["known_item"]["all"]["hit@1"], 3), "hit@10": round(r["known_item"]["all"]["hit@10"], 3),
           "typo@1": round(r["known_item"]["typo"]["hit@1"], 3),
           "attrP@10": round(r["attribute"]["all"]["precision@10"], 3) if r["attribute"]["all"]["precision@10"] is not None else None}
    if dq:
        hits = 0
        for j, q in enumerate(dq):
            wanted = {k for k, t in enumerate(titles) if re.search(DESC[q], t)}
            if not wanted: continue
            got = rank(fn(cos_all[len(flat)+j], lex[len(flat)+j], full[len(flat)+j])).tolist()
            if set(got) & wanted: hits += 1
            elif name == "sq_full_1": print("   miss", q, [titles[g] for g in got[:3]])
        row["desc@10"] = hits
        row["desc_n"] = sum(1 for q in dq if any(re.search(DESC[q], t) for t in titles))
    out[name] = row
    print(name, row, flush=True)
