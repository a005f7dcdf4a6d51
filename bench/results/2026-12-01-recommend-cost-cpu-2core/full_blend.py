"""A prototype for issue 13's next step, not served: the co-occurrence blend scored over the whole catalogue
where the exact scan already has every row (tower + weight x signal, the text stand-in for items without
lists, exclusions), top k taken once; against the served candidate path (top 200 by the tower + top 200 by the
signal, blended). Plain requests (no filter, diversity, fresh or long tail; the bundle has no fusion head).
Measures the served top-10 overlap by stored user, the per-request time of the prototype against `recommend`
(in-process, one thread), and test NDCG@10 through the shared protocol (user vectors from the tower over the
test-stage history, as `Engine.score_catalogue` does). Usage: python full_blend.py BUNDLE"""
import sys
import time

import numpy as np

from recengine import Engine, pipeline
from recengine.data import load_dataset
from recengine.evaluation import csr_rows, evaluate_engine, evaluate_queries, histories, make_queries
from recengine.requests import RowQuery
from recengine.retrieval import topk_rows
from recengine.split import leave_last_out

eng = Engine.open(sys.argv[1], device="cpu", threads=1)
st = eng._state  # noqa: SLF001
co, cat = st.cooccur, st.catalogue
assert not st.use_fusion and co is not None and co.weight > 0
has_list = np.zeros(cat.n_rows, bool)
has_list[: co.n] = co.indices[:, 0] >= 0
listless = np.flatnonzero(cat.alive & ~has_list)


def full_scores(history_rows: np.ndarray, exclude: np.ndarray, vector: np.ndarray) -> np.ndarray:
    scores = st.items_index.exact.scores(vector[None, :].astype(np.float32))[0].astype(np.float64)
    sig = co.signal(history_rows, cat.alive)
    if sig.rows.size:
        scores[sig.rows] += co.weight * sig.values
    if listless.size and history_rows.size:
        scores[listless] += co.weight * co.text_term(history_rows, listless, cat.unit_vectors, sig)
    scores[exclude] = -np.inf
    scores[~cat.alive] = -np.inf
    return scores


over, t_full, t_served = [], [], []
for rep in range(2):
    for uid in eng.user_ids():
        row = st.users.row_of[uid]
        hist = cat.current_rows(st.users.history(row))
        s = time.perf_counter()
        idx, _ = topk_rows(full_scores(hist[cat.alive[hist]], hist, st.users.vectors[row])[None, :], 10)
        t_full.append(time.perf_counter() - s)
        s = time.perf_counter()
        served = eng.recommend(user_id=uid, k=10)
        t_served.append(time.perf_counter() - s)
        if rep == 0:
            over.append(len({cat.ids[int(r)] for r in idx[0]} & {r.item_id for r in served}) / 10)
print("served top-10 overlap mean", round(float(np.mean(over)), 4), "min", min(over))
print("per request µs: prototype", round(np.median(t_full) * 1e6), "served recommend", round(np.median(t_served) * 1e6))

ds = load_dataset(None)
split = leave_last_out(ds.interactions, ds.n_users, ds.n_items, seed=0)
q = make_queries(split, "test")
indptr, indices = histories(split, "test")
hists = csr_rows(indptr, indices, q.users)
profiles = eng.user_profiles(q.users)


def score(rows: np.ndarray) -> np.ndarray:
    out = np.empty((len(rows), cat.n_rows))
    for j, r in enumerate(rows.tolist()):
        h = np.asarray(hists[r], dtype=np.int64)
        query = pipeline.prepare_rows(st, RowQuery(history=h, scene=np.zeros(eng.scene_slots, np.int64),
                                                   profile=profiles[r], exclude=q.excluded(r)))
        pipeline.user_vectors(st, [query])  # the tower over the test-stage history, as served
        if query.vector is None:
            out[j] = np.log1p(cat.popularity.astype(np.float64))
            out[j][q.excluded(r)] = -np.inf
        else:
            out[j] = full_scores(h, q.excluded(r), query.vector)
    return out


print("prototype test ndcg@10", round(evaluate_queries(score, q).metrics["ndcg@10"], 4))
print("served test ndcg@10", round(evaluate_engine(eng, split, "test")["ndcg@10"], 4))
