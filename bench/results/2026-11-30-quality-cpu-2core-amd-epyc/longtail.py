"""long_tail trade-off on the bench's main protocol through the serving path (Engine.score_catalogue).

    python longtail.py BUNDLE OUT.json   # BUNDLE: the main-split bundle of a `bench quality --workdir W` run
"""
import json
import sys

import numpy as np

from recengine.bench.protocol import Protocol, evaluate_rows
from recengine.data import load_dataset
from recengine.evaluation import engine_row_scorer
from recengine.export.validation import open_variant

ds = load_dataset(None)
p = Protocol.build(ds, seed=0)
engine = open_variant(sys.argv[1], "fp32", 1)
te, h = p.test, p.train_valid
scene = (engine.encode_scenes(te.context, len(te.users)) if te.context
         else np.zeros((len(te.users), engine.scene_slots), np.int64))
hist = [h.indices[h.indptr[u]:h.indptr[u + 1]] for u in te.users]
excl = [te.exclude_indices[te.exclude_indptr[i]:te.exclude_indptr[i + 1]] for i in range(len(te.users))]
rows = []
for lt in (0.0, 0.1, 0.3, 1.0, 3.0):
    r = evaluate_rows(engine_row_scorer(engine, hist, scene, engine.user_profiles(te.users), excl, long_tail=lt), te)
    m = r.metrics
    rows.append({"long_tail": lt, **{k: round(float(m[k]), 4) for k in ("ndcg@10", "coverage@10", "tail_share@10")}})
    print(rows[-1], flush=True)
json.dump(rows, open(sys.argv[2], "w"), indent=1)
