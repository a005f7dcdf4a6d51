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
lam = float(sys.argv[2])
alpha = float(sys.argv[3])
cuts = [int(c) for c in sys.argv[4].split(",")] if len(sys.argv) > 4 else [50]  # top K kept (optional 4th argument)
split = leave_last_out(ds.interactions, ds.n_users, ds.n_items, seed=0)
f = text_tokens(list(ds.items.texts))
side = (f @ f.T).toarray() if f.shape[1] else 0


def mat(stage):
    indptr, indices = histories(split, stage)
    x = sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(split.n_users, ds.n_items))
    x.sum_duplicates()
    x.data[:] = 1
    return x


xv, xt = mat("valid"), mat("test")
q = make_queries(split, "test")


def trunc(b, k=50):
    out = np.zeros_like(b)
    idx = np.argpartition(-b, k, axis=1)[:, :k]
    r = np.arange(b.shape[0])[:, None]
    out[r, idx] = np.maximum(b[r, idx], 0)
    return out


for name, x in (("lists from train", xv), ("lists from train+valid", xt)):
    b = ease_weights((x.T @ x).toarray() + alpha**2 * side, lam)
    for tk, bb in [("full", b)] + [(f"top{k}+", trunc(b, k)) for k in cuts]:
        r = evaluate_queries(lambda rs: np.asarray(xt[q.users[rs]] @ bb), q)
        print(ds.name, name, tk, round(r.metrics["ndcg@10"], 4), flush=True)
