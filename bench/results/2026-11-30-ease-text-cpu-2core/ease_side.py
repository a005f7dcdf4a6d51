"""Issue 11: full EASE^R with item side information (Jeunen, Van Balen, Goethals 2020: the item x word matrix
stacked under the user x item matrix as pseudo-users at weight alpha, i.e. Gram + alpha^2 F F^T), validation
and test NDCG@10 on a data set's leave-last-out split (seed 0) through the shared `recengine.evaluation`
protocol, EASE refitted on what each stage sees (train for validation, train + valid for test). Words: the
item texts' words (field names and words of one item or of more than half the items dropped), as
`recengine.export.cooccur.text_tokens` takes them. Usage: python ease_side.py DATA [LAMBDAS]"""
import sys

import numpy as np
import scipy.sparse as sp

from recengine.data import load_dataset
from recengine.evaluation import evaluate_queries, histories, make_queries
from recengine.export.cooccur import text_tokens
from recengine.export.ease import ease_weights
from recengine.split import leave_last_out

ALPHAS = (0.0, 0.1, 0.3, 1.0, 2.0, 3.0, 5.0)

ds = load_dataset(sys.argv[1])
split = leave_last_out(ds.interactions, ds.n_users, ds.n_items, seed=0)
f = text_tokens(list(ds.items.texts))
print(ds.name, ds.n_items, "items;", f.shape[1], "words kept", flush=True)
lams = [float(x) for x in (sys.argv[2].split(",") if len(sys.argv) > 2 else ["100"])]
side = (f @ f.T).toarray()
for stage in ("valid", "test"):
    indptr, indices = histories(split, stage)
    x = sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(split.n_users, ds.n_items))
    x.sum_duplicates()
    x.data[:] = 1
    gram = (x.T @ x).toarray()
    queries = make_queries(split, stage)
    for lam in lams:
        out = {}
        for alpha in ALPHAS:
            b = ease_weights(gram + alpha ** 2 * side, lam)
            r = evaluate_queries(lambda rs, w=b, x=x, q=queries: np.asarray(x[q.users[rs]] @ w), queries)
            out[alpha] = round(r.metrics["ndcg@10"], 4)
        print(stage, "lambda", lam, out, flush=True)
