"""RP3beta (Paudel et al. 2017; a strong item-item baseline on sparse data in Dacrema et al. 2019) against the
export's EASE + item-text lists on Book-Crossing's validation split, and EASE + w * RP3beta blends: is it the
"different signal" issue 11 needs there? Lists from the training events, scored as `recengine bench quality`
scores (the evaluation module's full-catalogue NDCG@10 on the validation queries).

    python rp3.py DATA valid            # EASE lambda x text alpha grid, RP3beta alpha x beta x K, blends
    python rp3.py DATA valid high-beta  # RP3beta at beta 0.6-0.9
"""
# ruff: noqa: B023  (closures called at once, inside their loop iteration)

import sys
import time

import numpy as np
import scipy.sparse as sp

from recengine.data import load_dataset
from recengine.evaluation import evaluate_queries, histories, make_queries
from recengine.export.cooccur import text_tokens
from recengine.export.ease import ease_weights
from recengine.split import leave_last_out

ds = load_dataset(sys.argv[1])
stage = sys.argv[2]
high_beta = len(sys.argv) > 3 and sys.argv[3] == "high-beta"
split = leave_last_out(ds.interactions, ds.n_users, ds.n_items, seed=0)
f = text_tokens(list(ds.items.texts))
side = (f @ f.T).toarray() if f.shape[1] else 0
indptr, indices = histories(split, stage)
x = sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(split.n_users, ds.n_items))
x.sum_duplicates()
x.data[:] = 1
q = make_queries(split, stage)


def ndcg(w: np.ndarray) -> float:
    return round(evaluate_queries(lambda rs: np.asarray(x[q.users[rs]] @ w), q).metrics["ndcg@10"], 4)


def l1_rows(m: sp.spmatrix) -> sp.csr_matrix:
    m = sp.csr_matrix(m, dtype=np.float64)
    return sp.diags(1.0 / np.maximum(np.asarray(m.sum(axis=1)).ravel(), 1e-12)) @ m


def rp3(alpha: float, beta: float, k: int) -> np.ndarray:
    w = (l1_rows(x.T.tocsr()).power(alpha) @ l1_rows(x).power(alpha)).toarray()
    w = w / np.maximum(np.asarray(x.sum(axis=0)).ravel(), 1)[None, :] ** beta
    np.fill_diagonal(w, 0)
    out = np.zeros_like(w)
    top = np.argpartition(-w, k, axis=1)[:, :k]
    r = np.arange(w.shape[0])[:, None]
    out[r, top] = w[r, top]
    return out


t0 = time.time()
grid_ease = ((100, 1.0),) if high_beta else tuple((lam, a) for lam in (50, 100, 200, 400) for a in (0.0, 0.5, 1.0))
best_e = None
for lam, a in grid_ease:
    w = ease_weights((x.T @ x).toarray() + a**2 * side, lam)
    s = ndcg(w)
    print("ease lambda", lam, "text alpha", a, "ndcg@10", s, flush=True)
    if best_e is None or s > best_e[0]:
        best_e = (s, lam, a, w)
print("best ease", best_e[:3], flush=True)
betas = (0.6, 0.7, 0.8, 0.9) if high_beta else (0.0, 0.2, 0.35, 0.5)
best_r = None
for alpha in ((0.8, 1.0) if high_beta else (0.5, 0.8, 1.0)):
    for beta in betas:
        for k in ((20, 50) if high_beta else (50, 200)):
            w = rp3(alpha, beta, k)
            s = ndcg(w)
            print("rp3 alpha", alpha, "beta", beta, "k", k, "ndcg@10", s, flush=True)
            if best_r is None or s > best_r[0]:
                best_r = (s, alpha, beta, k, w)
print("best rp3", best_r[:4], flush=True)
e, r = best_e[3] / np.abs(best_e[3]).max(), best_r[4] / np.abs(best_r[4]).max()
for weight in (0.25, 0.5, 1.0, 2.0, 4.0):
    print("ease + w * rp3, w", weight, "ndcg@10", ndcg(e + weight * r), flush=True)
print("seconds", round(time.time() - t0), "loadavg", open("/proc/loadavg").read().split()[:3])
