"""Issue 10: what the cold-item generator's spread buys and costs, on the main split's test queries.

The bench's cold items (cold_protocol, 10 % of the items with >= 5 interactions, seed 0) get generated
vectors in a bundle trained on the main split (where they were warm), so their real vectors are the
reference: the generator G is fitted on the other warm items, and the cold items' vectors are replaced by
centre + s * (G(e) - centre) for a grid of spreads s. Per spread: test NDCG@10 over all targets, over warm
targets and over targets that are cold items, and the share of each user's top 20 held by cold items.

Usage: python spread_sweep.py BUNDLE_MAIN   (a bench quality run's workdir/recengine/bundle-main)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from recengine import pipeline
from recengine.bench.protocol import Protocol, cold_protocol
from recengine.data import load_dataset
from recengine.export.cold_start import alignment_spread, fit_generator, generate
from recengine.export.validation import open_variant
from recengine.metrics import multi_ranks
from recengine.requests import RowQuery


def main(bundle: Path) -> None:
    ds = load_dataset(None)
    coldset = cold_protocol(ds, 0.1, 5, 0).split.cold_items
    p = Protocol.build(ds, 0)
    eng = open_variant(bundle, "fp32", 1)
    st = eng._state
    e = np.load(bundle / "items/text_embeddings.npy")
    v0 = np.load(bundle / "items/vectors.npy")
    pop = np.load(bundle / "items/popularity.npy")
    warm = np.flatnonzero(pop > 0)
    prof = eng.user_profiles(p.test.users)
    queries = []
    for j, u in enumerate(p.test.users):
        h = p.train_valid.indices[p.train_valid.indptr[u]:p.train_valid.indptr[u + 1]]
        queries.append(pipeline.prepare_rows(st, RowQuery(history=h, scene=np.zeros(eng.scene_slots, np.int64),
                                                          profile=prof[j], exclude=np.zeros(0, np.int64))))
    pipeline.user_vectors(st, queries)
    users = np.stack([q.vector for q in queries]).astype(np.float32)
    targets = p.test.targets
    excluded = [p.test.exclude_indices[p.test.exclude_indptr[r]:p.test.exclude_indptr[r + 1]]
                for r in range(len(targets))]
    is_cold = np.zeros(len(v0), bool)
    is_cold[coldset] = True
    fit_rows = np.setdiff1d(warm, coldset)
    w, b = fit_generator(e, v0, fit_rows, 0.1)
    pred = generate(e, w, b)
    centre = pred[fit_rows].mean(0)
    rng = np.random.default_rng(0)
    s_default = alignment_spread(users[rng.choice(len(users), 512, replace=False)], v0[fit_rows], pred[fit_rows])

    def run(vectors: np.ndarray, label: str) -> None:
        scores = (users @ vectors.T).astype(np.float64)
        ndcg, share = [], []
        for r in range(len(targets)):
            row = scores[r]
            row[excluded[r]] = -np.inf
            rank = multi_ranks(row, np.array([targets[r]]))[0]
            ndcg.append(1 / np.log2(rank + 1) if rank <= 10 else 0.0)
            share.append(is_cold[np.argpartition(-row, 20)[:20]].mean())
        nd = np.array(ndcg)
        warm_t = ~is_cold[targets]
        print(f"{label:16s} ndcg@10 all {nd.mean():.4f} warm targets {nd[warm_t].mean():.4f} "
              f"cold targets {nd[~warm_t].mean():.4f} (n={int((~warm_t).sum())}) "
              f"cold share of top 20 {np.mean(share):.4f}")

    run(v0, "real vectors")
    for s in (1.0, 1.2, 1.3, s_default, 1.4, 1.45, 1.5, 1.6):
        v = v0.copy()
        v[coldset] = centre + s * (pred[coldset] - centre)
        run(v, f"G, spread {s:.2f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
