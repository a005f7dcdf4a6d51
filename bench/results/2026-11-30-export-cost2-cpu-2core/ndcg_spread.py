"""Per-user spread of validation NDCG@10 on the embedded MovieLens (the standard export /tmp/std-demo, fp32, as
served): the standard error of a mean over n users is sd / sqrt(n)."""
import numpy as np

from recengine.data import load_dataset
from recengine.evaluation import csr_rows, engine_row_scorer, evaluate_queries, histories, make_queries
from recengine.export.validation import open_variant
from recengine.split import leave_last_out

ds = load_dataset(None)
split = leave_last_out(ds.interactions, ds.n_users, ds.n_items, seed=0)
eng = open_variant("/tmp/std-demo", "fp32")
q = make_queries(split, "valid")
ip, ix = histories(split, "valid")
sc = eng.encode_scenes(split.valid.context, len(split.valid))[q.scene_rows]
r = evaluate_queries(engine_row_scorer(eng, csr_rows(ip, ix, q.users), sc, eng.user_profiles(q.users),
                                       [q.excluded(i) for i in range(len(q.users))]), q)
g = np.where(r.ranks <= 10, 1 / np.log2(r.ranks + 1.0), 0.0)
sd = g.std(ddof=1)
print(f"users {len(g)} ndcg@10 {g.mean():.4f} sd {sd:.4f} se@5000 {sd / np.sqrt(5000):.4f} "
      f"se@10000 {sd / np.sqrt(10000):.4f}")
