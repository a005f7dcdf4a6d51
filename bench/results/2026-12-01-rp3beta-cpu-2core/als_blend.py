"""Book-Crossing validation: implicit's ALS (factors 64-128, regularisation 0.01-1, alpha 1-10, 15 iterations)
alone and blended with the export's EASE + words lists (both normalised by each user's largest score).

    python als_blend.py DATA
"""
# ruff: noqa: B023, E501, E701, E702  (closures called at once; a record script)
import sys

import numpy as np
import scipy.sparse as sp
from implicit.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from recengine.data import load_dataset
from recengine.evaluation import evaluate_queries, histories, make_queries
from recengine.export.cooccur import text_tokens
from recengine.export.ease import ease_weights
from recengine.split import leave_last_out

ds = load_dataset(sys.argv[1])
split = leave_last_out(ds.interactions, ds.n_users, ds.n_items, seed=0)
f = text_tokens(list(ds.items.texts))
indptr, indices = histories(split, "valid")
x = sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(split.n_users, ds.n_items)); x.sum_duplicates(); x.data[:] = 1
q = make_queries(split, "valid")
def ndcg(fn): return round(evaluate_queries(fn, q).metrics["ndcg@10"], 4)
W = ease_weights((x.T @ x).toarray() + (f @ f.T).toarray(), 100.0)
E = np.asarray(x @ W)
print("ease+words", ndcg(lambda rs: E[q.users[rs]]), flush=True)
best = None
with threadpool_limits(1):
    for factors in (64, 128):
        for reg in (0.01, 0.1, 1.0):
            for alpha in (1.0, 10.0):
                m = AlternatingLeastSquares(factors=factors, regularization=reg, alpha=alpha, iterations=15, random_state=0, use_gpu=False)
                m.fit(x.tocsr(), show_progress=False)
                A = np.asarray(m.user_factors) @ np.asarray(m.item_factors).T
                s = ndcg(lambda rs: A[q.users[rs]])
                print("als", factors, reg, alpha, s, flush=True)
                if best is None or s > best[0]: best = (s, factors, reg, alpha, A)
print("best als", best[:4])
A = best[4]
En = E / np.abs(E).max(axis=1, keepdims=True).clip(1e-9); An = A / np.abs(A).max(axis=1, keepdims=True).clip(1e-9)
for w in (0.1, 0.25, 0.5, 1.0):
    print("blend ease + w*als (per-user max-normalised)", w, ndcg(lambda rs: En[q.users[rs]] + w * An[q.users[rs]]), flush=True)
