"""Issue 11: how much of EASE^R do recengine's co-occurrence lists keep? On a data set's leave-last-out split
(seed 0), EASE fitted on the history visible at each stage (train for validation, train + valid for test, as
the bench refits), scored full, with its negative weights dropped (`pos`), and cut to each item's K largest
positive weights (`pos_kK`, what `recengine.export.cooccur.ease_neighbours` stores), NDCG@10 through the
shared `recengine.evaluation` protocol. Usage: python ease_lists.py DATA"""

import sys

import numpy as np
import scipy.sparse as sp

from recengine.data import load_dataset
from recengine.evaluation import evaluate_queries, histories, make_queries
from recengine.export.ease import ease_weights
from recengine.split import leave_last_out


def main() -> None:
    ds = load_dataset(sys.argv[1])
    split = leave_last_out(ds.interactions, ds.n_users, ds.n_items, seed=0)
    for stage in ("valid", "test"):
        indptr, indices = histories(split, stage)
        x = sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(split.n_users, ds.n_items))
        x.sum_duplicates()
        x.data[:] = 1
        gram = (x.T @ x).toarray()
        queries = make_queries(split, stage)
        for lam in (50.0, 100.0, 200.0, 400.0):
            b = ease_weights(gram.copy(), lam, overwrite=True)
            pos = np.where(b > 0, b, 0)
            variants = {"full": b, "pos": pos}
            for k in (20, 50, 100, 200):
                cut = np.zeros_like(pos)
                top = np.argpartition(-pos, k, axis=1)[:, :k]
                np.put_along_axis(cut, top, np.take_along_axis(pos, top, 1), 1)
                variants[f"pos_k{k}"] = cut
            out = {}
            for name, w in variants.items():
                r = evaluate_queries(lambda rows, w=w, x=x, q=queries: np.asarray(x[q.users[rows]] @ w), queries)
                out[name] = round(r.metrics["ndcg@10"], 4)
            print(stage, lam, out, flush=True)


if __name__ == "__main__":
    main()
