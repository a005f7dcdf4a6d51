"""Issue 10: which rows should calibrate the text stand-in's map (`recengine.export.cooccur.text_map`)?

`item`: cosines of warm items' stored vectors to their nearest warm items (what the export did);
`text`: cosines of the vectors warm items' text alone gives them (`items/text_vectors.npy`, the cold
generator's output: what a new item is served) to the warm items' stored vectors, which is the cosine a
cold item's stand-in actually reads. Both maps are written into copies of the bench's bundles and scored
as the bench scores them: hybrid and cold-only Recall@20 on the cold-protocol bundle, validation and test
NDCG@10 (all users) on the main bundle.

Usage: python standin_query.py BUNDLE_MAIN BUNDLE_COLD OUT_JSON  (the embedded MovieLens's bench bundles)
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from cold_blend import cold_recalls  # this folder's script: the same per-user recall

from recengine import Engine
from recengine.bench.protocol import cold_protocol
from recengine.bench.quality import paired_bootstrap_ratio
from recengine.bench.recengine_eval import QuerySet, onnx_scorer
from recengine.bundle import open_bundle
from recengine.data import load_dataset
from recengine.export.cooccur import text_map
from recengine.export.validation import evaluate_bundle
from recengine.split import leave_last_out


def with_maps(bundle: Path, tmp: Path) -> dict[str, Path]:
    reader = open_bundle(bundle)
    m = reader.manifest
    idx = reader.load_npy(m["cooccur"]["indices"])
    sc = reader.load_npy(m["cooccur"]["scores"]).astype(np.float32)
    cat = Engine.open(bundle, device="cpu", variant="fp32")._state.catalogue
    out = {}
    for name, query in (("item", None), ("text", cat.text_vectors)):
        target = tmp / f"{bundle.name}-{name}"
        shutil.copytree(bundle, target)
        m2 = json.loads((target / "manifest.json").read_text())
        m2["cooccur"]["text_map"] = text_map(idx, sc, cat.unit_vectors, query=query)
        (target / "manifest.json").write_text(json.dumps(m2))
        out[name] = target
    return out


def cold_recall(bundle: Path, ds, cold) -> tuple[np.ndarray, np.ndarray]:
    queries = QuerySet(cold.users, cold.data, {}, cold.exclude_indptr, cold.exclude_indices)
    cold_rows = np.flatnonzero(np.load(bundle / "items/popularity.npy") <= 0)
    hybrid, only, _ = cold_recalls(ds, cold, onnx_scorer(bundle, "fp32", queries, 1, cold_rows))
    return hybrid, only


def main() -> None:
    main_bundle, cold_bundle, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    ds = load_dataset(None)
    split = leave_last_out(ds.interactions, ds.n_users, ds.n_items, seed=0)
    cold = cold_protocol(ds, 0.1, 5, 0)
    tmp = Path(tempfile.mkdtemp(prefix="standin-"))
    report: dict = {"main": str(main_bundle), "cold": str(cold_bundle), "runs": {}}
    try:
        colds = with_maps(cold_bundle, tmp)
        mains = with_maps(main_bundle, tmp)
        recalls = {name: cold_recall(path, ds, cold) for name, path in colds.items()}
        for name in ("item", "text"):
            hyb, only = recalls[name]
            entry = {"hybrid_recall@20": float(hyb.mean()), "coldonly_recall@20": float(only.mean()),
                     **{f"{s}_ndcg@10": evaluate_bundle(mains[name], ds, split, "fp32", s, max_users=0)["ndcg@10"]
                        for s in ("valid", "test")},
                     "text_map": json.loads((colds[name] / "manifest.json").read_text())["cooccur"]["text_map"]}
            if name == "text":
                lo, hi = paired_bootstrap_ratio(hyb, recalls["item"][0], seed=0)
                entry["hybrid_vs_item"] = [float(hyb.mean() / recalls["item"][0].mean()), float(lo), float(hi)]
            report["runs"][name] = entry
            print(name, {k: v for k, v in entry.items() if k != "text_map"}, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
