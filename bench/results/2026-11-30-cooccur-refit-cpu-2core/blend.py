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
split = leave_last_out(ds.interactions, ds.n_users, ds.n_items, seed=0)
f = text_tokens(list(ds.items.texts))
side = (f @ f.T).toarray()


def knn(x, K=20, shrink=10.0):
    # tf-idf weighted cosine item-item, top K per item
    n = x.shape[0]
    pop = np.asarray(x.sum(0)).ravel()
    idf = np.log(n / np.maximum(pop, 1))
    xw = x.multiply(idf[None, :]).tocsr()
    g = (xw.T @ xw).toarray()
    nrm = np.sqrt(np.diag(g))
    s = g / (np.outer(nrm, nrm) + shrink + 1e-9)
    np.fill_diagonal(s, 0)
    idx = np.argpartition(-s, K, axis=1)[:, K:]
    r = np.arange(s.shape[0])[:, None]
    s[r, idx] = 0
    return s


for stage in ("valid", "test"):
    indptr, indices = histories(split, stage)
    x = sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(split.n_users, ds.n_items))
    x.sum_duplicates()
    x.data[:] = 1
    gram = (x.T @ x).toarray()
    q = make_queries(split, stage)
    be = ease_weights(gram + side, 100.0)
    bk = knn(x)

    def ev(w):
        def sc(rs):
            xu = x[q.users[rs]]
            a = np.asarray(xu @ be)
            b = np.asarray(xu @ bk)
            a /= np.abs(a).max(1, keepdims=True) + 1e-12
            b /= np.abs(b).max(1, keepdims=True) + 1e-12
            return a + w * b

        return round(evaluate_queries(sc, q).metrics["ndcg@10"], 4)

    print(stage, {w: ev(w) for w in (0, 0.1, 0.2, 0.4, 0.7, 1.0)}, flush=True)
