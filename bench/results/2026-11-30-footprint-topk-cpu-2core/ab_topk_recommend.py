"""`recommend` by stored user with `topk_rows` before and now, alternating in one process (6 rounds over all
users), the lists compared. Usage: python ab_topk_recommend.py BUNDLE, with the module before at
/tmp/s9/old_retrieval.py (`git show ac14f35:runtime/retrieval.py > /tmp/s9/old_retrieval.py`)."""
import sys
import time

import numpy as np

import recengine
import recengine.neighbours as neighbours
import recengine.pipeline as pipeline
import recengine.retrieval as retrieval

src = open("/tmp/s9/old_retrieval.py").read().replace("from .errors import", "from recengine.errors import")
ns: dict = {}
exec(compile(src, "old_retrieval", "exec"), ns)
old, new = ns["topk_rows"], retrieval.topk_rows


def use(f):
    for module in (retrieval, pipeline, neighbours):
        module.topk_rows = f


e = recengine.Engine.open(sys.argv[1], device="cpu", threads=1)
e.warmup()
users = e.user_ids()
for u in users:
    e.recommend(user_id=u, k=10)
res: dict[str, list[float]] = {"old": [], "new": []}
for rep in range(6):
    for name, f in (("old", old), ("new", new)) if rep % 2 else (("new", new), ("old", old)):
        use(f)
        for u in users:
            s = time.perf_counter()
            e.recommend(user_id=u, k=10)
            res[name].append(time.perf_counter() - s)
use(old)
a = [[r.item_id for r in e.recommend(user_id=u, k=10)] for u in users]
use(new)
b = [[r.item_id for r in e.recommend(user_id=u, k=10)] for u in users]
print("same lists", a == b)
for k, v in res.items():
    ms = np.array(v) * 1e3
    print(k, f"p50 {np.percentile(ms, 50):.4f} p99 {np.percentile(ms, 99):.4f} mean {ms.mean():.4f}")
