"""Book-Crossing validation: EASE + words fitted on rating-weighted events (the raw file's `rating`: 0 = implicit,
1-10 explicit; the data set as loaded weighs every event 1), scored from binary or weighted histories.

    python ratings.py   (reads /tmp/data/bookcrossing)
"""
# ruff: noqa: B023, E501, E702  (closures called at once; a record script)
import numpy as np
import pandas as pd
import scipy.sparse as sp

from recengine.data import load_dataset
from recengine.evaluation import evaluate_queries, histories, make_queries
from recengine.export.cooccur import text_tokens
from recengine.export.ease import ease_weights
from recengine.split import leave_last_out

ds = load_dataset("/tmp/data/bookcrossing")
raw = pd.read_csv("/tmp/data/bookcrossing/interactions.csv", dtype=str)
rating = {(u, i): float(r) for u, i, r in zip(raw.user_id, raw.item_id, raw.rating)}
split = leave_last_out(ds.interactions, ds.n_users, ds.n_items, seed=0)
f = text_tokens(list(ds.items.texts)); side = (f @ f.T).toarray()
indptr, indices = histories(split, "valid")
x = sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(split.n_users, ds.n_items)); x.sum_duplicates(); x.data[:] = 1
uids, iids = list(ds.user_ids), list(ds.items.ids)
r = np.array([rating.get((uids[u], iids[i]), 0.0) for u in range(split.n_users) for i in x.indices[x.indptr[u]:x.indptr[u+1]]])
print("explicit share", round(float((r > 0).mean()), 3), "mean explicit", round(float(r[r > 0].mean()), 2))
q = make_queries(split, "valid")
def ndcg(fn): return round(evaluate_queries(fn, q).metrics["ndcg@10"], 4)
for name, wfun in (("binary", lambda r: np.ones_like(r)), ("explicit x1.5", lambda r: np.where(r > 0, 1.5, 1.0)),
                   ("explicit>=8 x2", lambda r: np.where(r >= 8, 2.0, 1.0)), ("implicit x0.5", lambda r: np.where(r > 0, 1.0, 0.5)),
                   ("r/10 + 0.5", lambda r: np.where(r > 0, 0.5 + r / 10, 1.0))):
    xw = x.copy(); xw.data = wfun(r).astype(float)
    W = ease_weights((xw.T @ xw).toarray() + side, 100.0)
    print(name, "hist binary", ndcg(lambda rs: np.asarray(x[q.users[rs]] @ W)), "hist weighted", ndcg(lambda rs: np.asarray(xw[q.users[rs]] @ W)), flush=True)
