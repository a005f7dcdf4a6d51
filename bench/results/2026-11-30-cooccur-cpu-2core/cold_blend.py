"""Issue 10 x issue 11: what the co-occurrence blend does to cold items, and what the text stand-in gives back.

Scores the cold-protocol bundle of a `recengine bench quality` run (its `bundle-cold`) exactly as the bench
does (`recengine.bench.recengine_eval.onnx_scorer`, fp32, through `Engine.score_catalogue`) three ways:
`tower` (cooccur_weight 0: the user tower alone), `blend` (the bundle's co-occurrence lists and weight,
no stand-in) and `blend+text` (the same plus `cooccur.text_map` computed by the export's own
`recengine.export.cooccur.text_map` from the bundle's lists and text embeddings: no cold data used),
and reports hybrid and cold-only Recall@20 per user with paired-bootstrap intervals against `tower`.

Usage: python cold_blend.py BUNDLE_COLD OUT_JSON [DATA]
(DATA: the data set the bench ran on; default the embedded MovieLens)
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from recengine.bench.protocol import cold_protocol
from recengine.bench.quality import paired_bootstrap_ratio
from recengine.bench.recengine_eval import QuerySet, onnx_scorer
from recengine.bundle import open_bundle
from recengine.data import load_dataset
from recengine.export.cooccur import text_map
from recengine.metrics import cold_query_values


def cold_recalls(ds, cold, score_rows) -> tuple[np.ndarray, np.ndarray, float]:
    """Per cold-protocol user: hybrid and cold-only Recall@20 of `score_rows` (`recengine.metrics`, as the
    bench), and the mean cold share of the top 20 (known items excluded)."""
    is_cold = np.zeros(ds.n_items, bool)
    is_cold[cold.split.cold_items] = True
    shares: list[float] = []

    def scored(rows: np.ndarray) -> np.ndarray:
        scores = np.asarray(score_rows(rows), np.float64)
        for j, r in enumerate(rows):
            row = scores[j].copy()
            row[cold.exclude_indices[cold.exclude_indptr[r]:cold.exclude_indptr[r + 1]]] = -np.inf
            shares.append(float(is_cold[np.argsort(-row, kind="stable")[:20]].mean()))
        return scores

    _, v = cold_query_values(scored, cold.relevant, cold.exclude_indptr, cold.exclude_indices, ds.n_items,
                             cold.split.cold_items)
    return v["cold_recall@20"], v["coldonly_recall@20"], float(np.mean(shares))


def main() -> None:
    bundle, out = Path(sys.argv[1]), Path(sys.argv[2])
    ds = load_dataset(sys.argv[3] if len(sys.argv) > 3 else None)
    cold = cold_protocol(ds, 0.1, 5, 0)
    queries = QuerySet(cold.users, cold.data, {}, cold.exclude_indptr, cold.exclude_indices)
    cold_rows = np.flatnonzero(np.load(bundle / "items/popularity.npy") <= 0)
    reader = open_bundle(bundle)
    m = reader.manifest
    assert "cooccur" in m, "the bundle has no co-occurrence lists"
    tmp = Path(tempfile.mkdtemp(prefix="cold-blend-"))
    with_text = tmp / "bundle"
    shutil.copytree(bundle, with_text)
    idx = reader.load_npy(m["cooccur"]["indices"])
    sc = reader.load_npy(m["cooccur"]["scores"]).astype(np.float32)
    from recengine import Engine
    emb = Engine.open(bundle, device="cpu", variant="fp32")._state.catalogue.unit_vectors
    mapping = text_map(idx, sc, emb)
    m2 = json.loads((with_text / "manifest.json").read_text())
    m2["cooccur"]["text_map"] = mapping
    (with_text / "manifest.json").write_text(json.dumps(m2))

    runs = {
        "tower": cold_recalls(ds, cold, onnx_scorer(bundle, "fp32", queries, 1, cold_rows, cooccur_weight=0.0)),
        "blend": cold_recalls(ds, cold, onnx_scorer(bundle, "fp32", queries, 1, cold_rows)),
        "blend+text": cold_recalls(ds, cold, onnx_scorer(with_text, "fp32", queries, 1, cold_rows)),
    }
    report = {"bundle": str(bundle), "text_map": mapping, "users": len(cold.users), "runs": {}}
    for name, (hyb, only, share) in runs.items():
        entry = {"hybrid_recall@20": float(hyb.mean()), "coldonly_recall@20": float(only.mean()),
                 "cold_share@20": float(share)}
        if name != "tower":
            for key, x, y in (("hybrid", hyb, runs["tower"][0]), ("coldonly", only, runs["tower"][1])):
                lo, hi = paired_bootstrap_ratio(x, y, seed=0)
                entry[f"{key}_vs_tower"] = [float(x.mean() / y.mean()), float(lo), float(hi)]
        report["runs"][name] = entry
        print(name, json.dumps(entry))
    out.write_text(json.dumps(report, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
