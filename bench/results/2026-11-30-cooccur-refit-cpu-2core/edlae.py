"""EDLAE (item-dependent lambda = lam + c*G_ii) x text side info (alpha) grid."""

import sys

import numpy as np
import scipy.sparse as sp

from recengine.data import load_dataset
from recengine.evaluation import evaluate_queries, histories, make_queries
from recengine.export.cooccur import text_tokens
from recengine.export.ease import ease_weights
from recengine.split import leave_last_out

ds = load_dataset(sys.argv[1])
lams = [float(x) for x in sys.argv[2].split(",")]
alphas = [float(x) for x in sys.argv[3].split(",")]
cs = [float(x) for x in sys.argv[4].split(",")]
split = leave_last_out(ds.interactions, ds.n_users, ds.n_items, seed=0)
f = text_tokens(list(ds.items.texts))
side = (f @ f.T).toarray() if f.shape[1] else np.zeros((ds.n_items, ds.n_items))
print(ds.name, ds.n_items, "items", f.shape[1], "words", flush=True)


def weights(gram, lam, c):
    g = gram.copy()
    # EDLAE: Lambda_ii = lam + c * G_ii (c = p/(1-p)); ease_weights adds lam itself
    g[np.diag_indices_from(g)] += c * np.diag(gram)
    return ease_weights(g, lam, overwrite=True)


for stage in ("valid", "test"):
    indptr, indices = histories(split, stage)
    x = sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(split.n_users, ds.n_items))
    x.sum_duplicates()
    x.data[:] = 1
    gram = (x.T @ x).toarray()
    queries = make_queries(split, stage)
    for lam in lams:
        for c in cs:
            out = {}
            for a in alphas:
                b = weights(gram + a * a * side, lam, c)
                r = evaluate_queries(lambda rs, w=b, x=x, q=queries: np.asarray(x[q.users[rs]] @ w), queries)
                out[a] = round(r.metrics["ndcg@10"], 4)
            print(stage, "lam", lam, "c", c, out, flush=True)
