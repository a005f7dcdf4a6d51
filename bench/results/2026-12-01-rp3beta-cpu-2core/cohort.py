"""Book-Crossing validation: the export's EASE + item-word lists (lambda 100, alpha 1) blended with the
popularity of items within the user's profile cohort (country, age bucket, both; normalised per user to at
most 1, weight w): does the user profile carry signal the lists lack? Training events only, validation queries.

    python cohort.py DATA
"""
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
indptr, indices = histories(split, "valid")
x = sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(split.n_users, ds.n_items))
x.sum_duplicates()
x.data[:] = 1
q = make_queries(split, "valid")
w_lists = ease_weights((x.T @ x).toarray() + (f @ f.T).toarray(), 100.0)
pop = np.asarray(x.sum(axis=0)).ravel()


def cohort_popularity(keys: np.ndarray) -> np.ndarray:
    out = np.zeros((split.n_users, ds.n_items))
    for key in np.unique(keys):
        rows = np.flatnonzero(keys == key)
        out[rows] = np.asarray(x[rows].sum(axis=0)).ravel()
    return out


def ndcg(score_fn) -> float:
    return round(evaluate_queries(score_fn, q).metrics["ndcg@10"], 4)


country = np.asarray(ds.user_attrs["attr_country"]).astype(str)
age = np.asarray(ds.user_attrs["attr_age"]).astype(str)
cohorts = {"country": cohort_popularity(country), "age": cohort_popularity(age),
           "country_age": cohort_popularity(np.char.add(country, age))}
print("ease + words", ndcg(lambda rs: np.asarray(x[q.users[rs]] @ w_lists)))
print("global popularity", ndcg(lambda rs: np.tile(pop, (len(rs), 1))))
for name, m in cohorts.items():
    print(name, "popularity alone", ndcg(lambda rs: m[q.users[rs]]))
    for w in (0.001, 0.003, 0.01, 0.03):
        def blended(rs):
            c = m[q.users[rs]]
            return np.asarray(x[q.users[rs]] @ w_lists) + w * c / np.maximum(c.max(axis=1, keepdims=True), 1)
        print(name, "w", w, ndcg(blended), flush=True)
print("loadavg", open("/proc/loadavg").read().split()[:3])
