"""Measure the warm-item media projection (`export/item_vectors.py` `WARM_MEDIA`): validation and test
NDCG@10 of `fit` (quick profile, tiny encoder) with and without it, on data sets that have media vectors.

    python -m tests.export.media_measure [--seeds 0 1 2]

Data sets: the toy of tests/export/test_media_vectors.py (texts uninformative, media vectors encode the
item's kind), and the tiny MovieLens sample with media vectors of pure noise (a projection that can only
overfit) and with vectors that carry each movie's genres (already in its text). Not a test (not
collected): a measurement whose numbers are reported in docs/export.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np


def datasets(tmp: Path):
    from recengine.data import load_dataset
    from tests.conftest import ML_TINY_DIR
    from tests.export.test_media_vectors import toy

    yield "toy (media = kind)", load_dataset(toy(tmp / "toy", with_vectors=True))
    ml = load_dataset(ML_TINY_DIR)
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(ml.n_items, 16)).astype(np.float32)
    yield "ml_tiny (media = noise)", dataclasses.replace(ml, items=dataclasses.replace(ml.items, vectors=noise))
    lines = [next((line[len("genres: "):].split(", ") for line in t.splitlines() if line.startswith("genres: ")), [])
             for t in ml.items.texts]
    genres = sorted({g for gs in lines for g in gs})
    multi = np.asarray([[float(g in gs) for g in genres] for gs in lines], np.float32)
    if multi.sum() > 0:
        yield "ml_tiny (media = genres)", dataclasses.replace(ml, items=dataclasses.replace(ml.items, vectors=multi))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    from recengine.export import ExportConfig, item_vectors
    from recengine.export.fit import fit
    from recengine.export.tiny_encoder import build_tiny_encoder
    from recengine.split import leave_last_out

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        encoder = build_tiny_encoder(tmp / "tiny-bert", seed=0)
        print("| data set | seed | warm media | valid NDCG@10 | test NDCG@10 |")
        print("|---|---|---|---|---|")
        for name, ds in datasets(tmp):
            for seed in args.seeds:
                cfg = ExportConfig.from_profile("quick").override({
                    "encoder.path": str(encoder), "quiet": True, "ablations": "", "encoder.epochs": 4,
                    "seed": seed})
                split = leave_last_out(ds.interactions, ds.n_users, ds.n_items, seed=seed)
                for warm in (False, True):
                    item_vectors.WARM_MEDIA = warm
                    fitted = fit(ds, split, cfg, workdir=tmp, train_fusion_head=False)
                    v = fitted.evaluate("valid", use_fusion=False)["ndcg@10"]
                    t = fitted.evaluate("test", use_fusion=False)["ndcg@10"]
                    print(f"| {name} | {seed} | {'yes' if warm else 'no'} | {v:.4f} | {t:.4f} |", flush=True)


if __name__ == "__main__":
    main()
