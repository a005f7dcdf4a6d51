# ruff: noqa: B023  (closures called at once, inside their loop iteration)
import sys

import numpy as np
import scipy.sparse as sp

from recengine.data import load_dataset
from recengine.evaluation import evaluate_queries, histories, make_queries
from recengine.export.cooccur import text_tokens
from recengine.export.ease import ease_weights
from recengine.split import leave_last_out

ds = load_dataset(sys.argv[1])
emb = np.load(sys.argv[2]).astype(np.float64)
emb -= emb.mean(0)
emb /= np.linalg.norm(emb, axis=1, keepdims=True) + 1e-9
split = leave_last_out(ds.interactions, ds.n_users, ds.n_items, seed=0)
f = text_tokens(list(ds.items.texts))
side = (f @ f.T).toarray()
dense = emb @ emb.T


def trunc(b, k):
    out = np.zeros_like(b)
    idx = np.argpartition(-b, k, axis=0)[:k]  # top-k per column? lists are per source row
    idx = np.argpartition(-b, k, axis=1)[:, :k]
    r = np.arange(b.shape[0])[:, None]
    out[r, idx] = np.maximum(b[r, idx], 0)
    return out


for stage in ("valid", "test"):
    indptr, indices = histories(split, stage)
    x = sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(split.n_users, ds.n_items))
    x.sum_duplicates()
    x.data[:] = 1
    gram = (x.T @ x).toarray()
    q = make_queries(split, stage)
    def ev(b):
        return round(evaluate_queries(lambda rs: np.asarray(x[q.users[rs]] @ b), q).metrics["ndcg@10"], 4)
    b = ease_weights(gram + side, 100.0)
    print(stage, "full", ev(b), {k: ev(trunc(b, k)) for k in (20, 50, 100, 200)}, flush=True)
    for beta in (1, 3, 10, 30):
        print(
            stage,
            "dense beta",
            beta,
            ev(ease_weights(gram + side + beta * dense, 100.0)),
            "no words",
            ev(ease_weights(gram + beta * dense, 100.0)),
            flush=True,
        )
