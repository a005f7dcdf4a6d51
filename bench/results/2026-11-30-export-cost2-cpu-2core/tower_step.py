"""CPU seconds of one user-tower training step (forward, backward, AdamW) with the sampled softmax: every item
vector computed and indexed (before) vs only the rows the batch reads (`ItemVectors.rows`, after), same run,
one thread, the quick profile's tower (d 32, history 20, batch 64, 2,048 negatives, item dropout 0.15)."""
import json
import sys
import time

import numpy as np
import torch

from recengine.export.item_vectors import ItemVectors
from recengine.export.train_user import batch_loss, gather_history
from recengine.export.user_tower import UserTower

torch.set_num_threads(1)
D, L, B, NEG, P = 32, 20, 64, 2048, 0.15


def before(tower, items, inp, tgt, scene, prof, gen):
    vectors = items(P, gen)
    hist, mask = gather_history(vectors, inp)
    out = tower.sequence(hist, mask) + tower.context(scene, prof.unsqueeze(1))
    sel = tgt >= 0
    h, y = out[sel], tgt[sel]
    neg = torch.randint(0, vectors.shape[0], (NEG,), generator=gen)
    pos = (h * vectors[y]).sum(-1, keepdim=True)
    negl = (h @ vectors[neg].T).masked_fill(neg.unsqueeze(0) == y.unsqueeze(1), -1e9)
    return torch.nn.functional.cross_entropy(torch.cat([pos, negl], 1), torch.zeros(len(y), dtype=torch.long))


def after(tower, items, inp, tgt, scene, prof, gen):
    return batch_loss(tower, items, inp, tgt, scene, prof, "sampled", NEG, P, gen, torch.device("cpu"))[0]


def run(n_items, fn, steps):
    rng = np.random.default_rng(0)
    items = ItemVectors(rng.normal(size=(n_items, D)).astype(np.float32),
                        rng.normal(size=(n_items, D)).astype(np.float32), rng.integers(0, 30, n_items).astype(float))
    torch.manual_seed(0)
    tower = UserTower(D, L, 1, 1, 0.3, [3], [2])
    opt = torch.optim.AdamW(list(tower.parameters()) + list(items.parameters()), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    g = torch.Generator().manual_seed(1)
    inp = torch.randint(0, n_items, (B, L), generator=g)
    tgt = torch.randint(0, n_items, (B, L), generator=g)
    scene, prof = torch.zeros((B, L, 1), dtype=torch.long), torch.zeros((B, 1), dtype=torch.long)
    times = []
    for s in range(steps + 2):
        t = time.process_time()
        loss = fn(tower, items, inp, tgt, scene, prof, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if s >= 2:
            times.append(time.process_time() - t)
    return float(np.median(times))


out = {"load_before": open("/proc/loadavg").read().split()[:3], "rows": []}
for n in [int(x) for x in sys.argv[1].split(",")]:
    steps = 30
    b, a = run(n, before, steps), run(n, after, steps)
    b2, a2 = run(n, before, steps), run(n, after, steps)  # interleaved twice
    row = {"n_items": n, "before_ms": 1e3 * min(b, b2), "after_ms": 1e3 * min(a, a2)}
    row["ratio"] = row["before_ms"] / row["after_ms"]
    out["rows"].append(row)
    print(row, flush=True)
out["load_after"] = open("/proc/loadavg").read().split()[:3]
json.dump(out, open(sys.argv[2], "w"), indent=1)
