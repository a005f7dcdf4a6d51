"""Issue 10: INT8 vs fp32 on both cold-item protocols, per user, with paired-bootstrap intervals.

Scores the cold-protocol bundle of a `recengine bench quality` run exactly as the bench does
(`recengine.bench.recengine_eval.onnx_scorer`: the INT8 engine re-encodes the cold items through its own
encoder, as `add_items` would), then reports hybrid and cold-only Recall@20 per variant and the paired
bootstrap interval of INT8 / fp32 over the 593 cold-protocol users.

`--encode-rows N` sets how many texts one encoder run takes on the CPU (`recengine.models.CPU_ENCODE_ROWS`):
dynamic INT8 quantises activations per run, so the batch a text is encoded in changes its vector slightly.
`--perturb K` also scores K copies of the fp32 engine whose cold vectors get isotropic Gaussian noise of the
size of INT8's error (9.2 % of each vector's norm): how far that alone moves the hybrid figure.

Usage: python cold_int8.py BUNDLE_COLD [--encode-rows 16] [--perturb 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import recengine.models
from recengine.bench.protocol import cold_protocol
from recengine.bench.quality import paired_bootstrap_ratio
from recengine.bench.recengine_eval import QuerySet, onnx_scorer
from recengine.data import load_dataset
from recengine.metrics import cold_query_values


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--encode-rows", type=int, default=None)
    ap.add_argument("--perturb", type=int, default=0)
    args = ap.parse_args()
    if args.encode_rows:
        recengine.models.CPU_ENCODE_ROWS = args.encode_rows
    print(f"encoder rows per run on the CPU: {recengine.models.CPU_ENCODE_ROWS}")
    ds = load_dataset(None)
    cold = cold_protocol(ds, 0.1, 5, 0)
    queries = QuerySet(cold.users, cold.data, {}, cold.exclude_indptr, cold.exclude_indices)
    cold_rows = np.flatnonzero(np.load(args.bundle / "items/popularity.npy") <= 0)

    def per_user(score_rows) -> tuple[np.ndarray, np.ndarray]:
        _, v = cold_query_values(score_rows, cold.relevant, cold.exclude_indptr, cold.exclude_indices, ds.n_items,
                                 cold.split.cold_items)
        return v["cold_recall@20"], v["coldonly_recall@20"]

    res = {v: per_user(onnx_scorer(args.bundle, v, queries, 1, cold_rows)) for v in ("fp32", "int8")}
    for i, proto in enumerate(("hybrid", "cold-only")):
        x, y = res["int8"][i], res["fp32"][i]
        lo, hi = paired_bootstrap_ratio(x, y, seed=0)
        print(f"{proto:9s} Recall@20: int8 {x.mean():.4f} fp32 {y.mean():.4f} int8/fp32 {x.mean() / y.mean():.3f} "
              f"[{lo:.3f}, {hi:.3f}]")
    if args.perturb:
        from recengine.evaluation import engine_row_scorer
        from recengine.export.validation import open_variant

        engine = open_variant(args.bundle, "fp32", 1)
        cat = engine._state.catalogue
        v, tv, emb = (np.array(a[cold_rows]) for a in (cat.vectors, cat.text_vectors, cat.text_embeddings))
        hist = [cold.data.indices[cold.data.indptr[u]:cold.data.indptr[u + 1]] for u in cold.users]
        scene = np.zeros((len(cold.users), engine.scene_slots), np.int64)
        figures = []
        for seed in range(args.perturb):
            noise = np.random.default_rng(seed).normal(size=v.shape).astype(np.float32)
            noise *= 0.092 * np.linalg.norm(v, axis=1, keepdims=True) / np.linalg.norm(noise, axis=1, keepdims=True)
            cat.replace_vectors(cold_rows, v + noise, tv + noise, emb)
            scorer = engine_row_scorer(engine, hist, scene, engine.user_profiles(cold.users), queries.excluded(
                np.arange(len(cold.users))))
            figures.append(per_user(scorer)[0].mean() / res["fp32"][0].mean())
        print(f"fp32 + isotropic noise of INT8's size, {args.perturb} seeds: hybrid / fp32 "
              f"min {min(figures):.3f} median {np.median(figures):.3f} max {max(figures):.3f}")


if __name__ == "__main__":
    main()
