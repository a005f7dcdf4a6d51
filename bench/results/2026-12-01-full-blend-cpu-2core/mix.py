"""Offline: how the tower and the co-occurrence signal are mixed, on a bench bundle (whole-catalogue blend).

Tower scores: the bundle's user tower over each query's history (raw inner products over the catalogue, as
`pipeline._blended` sees them); signal: the bundle's chosen lists (kind, lambda or shrink, K, decay) rebuilt from
train for validation, the served (train + valid) ones for test. Variants, each weight chosen on validation and
reported on test: a) one relative weight (what the export does), b) a weight per history-length tercile, c) the
tower divided by each user's own spread (best - 100th best). Usage: python mix.py BUNDLE DATA"""
import json
import sys

import numpy as np

from recengine import Engine, pipeline
from recengine.cooccur import Cooccur
from recengine.data import load_dataset
from recengine.evaluation import csr_rows, evaluate_queries, histories, make_queries
from recengine.export.cooccur import ease_neighbours, item_neighbours, text_tokens
from recengine.requests import RowQuery
from recengine.split import leave_last_out

bundle, data = sys.argv[1], sys.argv[2]
sec = json.load(open(f"{bundle}/manifest.json"))["cooccur"]
print({k: v for k, v in sec.items() if k != "text_map"})
eng = Engine.open(bundle, device="cpu", threads=1, cooccur_weight=0.0)
st = eng._state
ds = load_dataset(data)
split = leave_last_out(ds.interactions, ds.n_users, ds.n_items, seed=0)
K, tr = int(sec["k"]), split.train
users, items = np.asarray(tr.user), np.asarray(tr.item)
if sec["similarity"] in ("ease", "ease-text"):
    lam = float(sec["lambda"])
    side = text_tokens(list(ds.items.texts)) if sec["similarity"] == "ease-text" else None
    lists_tr = ease_neighbours(users, items, split.n_users, ds.n_items, K, (lam,), side=side,
                               alpha=float(sec.get("text_alpha", 0.0)))[lam]
else:
    shr = float(sec["shrink"])
    lists_tr = item_neighbours(users, items, split.n_users, ds.n_items, K, (shr,),
                               weighting=sec["similarity"].split("-")[0])[shr]


def parts(stage, lists):
    q = make_queries(split, stage)
    ip, ix = histories(split, stage)
    hs = csr_rows(ip, ix, q.users)
    prof = eng.user_profiles(q.users)
    co = Cooccur(indices=lists[0], scores=lists[1], weight=1.0, decay=float(sec["decay"]),
                 max_history=int(sec["max_history"]))
    n = st.catalogue.n_rows
    tower, sig = np.empty((len(q.users), n)), np.zeros((len(q.users), n))
    scene = np.zeros(eng.scene_slots, np.int64)
    for r in range(len(q.users)):
        query = pipeline.prepare_rows(st, RowQuery(history=np.asarray(hs[r]), scene=scene, profile=prof[r],
                                                   exclude=q.excluded(r)))
        pipeline.user_vectors(st, [query])
        t = st.items_index.exact.scores(query.vector[None, :].astype(np.float32))[0].astype(np.float64)
        t[q.excluded(r)] = -np.inf
        tower[r] = t
        s = co.signal(np.asarray(hs[r]), st.catalogue.alive)
        sig[r, s.rows] = s.values
    return q, tower, sig, np.array([len(h) for h in hs])


def ndcg_per(q, m):
    r = evaluate_queries(lambda rows: m[rows], q).ranks
    return np.where(r <= 10, 1.0 / np.log2(r + 1.0), 0.0)  # ranks are 1-based (recengine.metrics)


def spread_of(t):
    top = -np.sort(-t, axis=1)[:, [0, 99]]
    return top[:, 0] - top[:, 1]


qv, tv, sv, lv = parts("valid", lists_tr)
qt, tt, stt, lt = parts("test", (st.cooccur.indices, st.cooccur.scores))
W = [0.25, 0.5, 1, 2, 4, 8, 16]
for name, a, b, scale in (("global", tv, tt, float(np.median(spread_of(tv)))),
                          ("per-user", tv / spread_of(tv)[:, None], tt / spread_of(tt)[:, None], 1.0)):
    pv = {w: ndcg_per(qv, a + w * scale * sv) for w in W}
    pt = {w: ndcg_per(qt, b + w * scale * stt) for w in W}
    best = max(W, key=lambda w: pv[w].mean())
    print(name, "valid", {w: round(pv[w].mean(), 4) for w in W}, "-> w", best, "test", round(pt[best].mean(), 4),
          {w: round(pt[w].mean(), 4) for w in W})
    if name == "global":
        edges = np.quantile(lv, [1 / 3, 2 / 3])
        bv, bt = np.digitize(lv, edges), np.digitize(lt, edges)
        tot = np.zeros(len(lt))
        for k in range(3):
            wb = max(W, key=lambda w: pv[w][bv == k].mean())
            tot[bt == k] = pt[wb][bt == k]
            print("  bucket", k, "len<=", edges[k] if k < 2 else "inf", "w", wb, "valid",
                  round(pv[wb][bv == k].mean(), 4), "test", round(pt[wb][bt == k].mean(), 4), "vs global",
                  round(pt[best][bt == k].mean(), 4))
        print("  per-bucket test", round(tot.mean(), 4))
