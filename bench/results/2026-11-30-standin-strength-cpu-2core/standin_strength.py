"""How strong should the text stand-in be? Post hoc on a `recengine bench quality` run's bundles: the stand-in's
similarities (`cooccur.text_map.sim`) times beta, for several beta: cold hybrid / cold-only Recall@20 on the
cold-protocol bundle, validation / test NDCG@10 (as served, fp32) on the main bundle.

Usage: python standin_strength.py RUN_DIR OUT_JSON [DATA]   (RUN_DIR holds bundle-main and bundle-cold)
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from recengine.bench.protocol import cold_protocol
from recengine.bench.recengine_eval import QuerySet, onnx_scorer
from recengine.data import load_dataset
from recengine.export.validation import evaluate_bundle
from recengine.metrics import cold_query_values
from recengine.split import leave_last_out

BETAS = (0.0, 1.0, 1.5, 2.0, 3.0, 4.0)


def scaled(bundle: Path, beta: float, tmp: Path) -> Path:
    out = tmp / f"{bundle.name}-{beta:g}"
    if not out.exists():
        shutil.copytree(bundle, out)
        m = json.loads((out / "manifest.json").read_text())
        if "text_map" not in m["cooccur"]:  # the export dropped it: the map it would have kept
            from recengine import Engine
            from recengine.bundle import open_bundle
            from recengine.export.cooccur import text_map

            r = open_bundle(bundle)
            emb = Engine.open(bundle, device="cpu", variant="fp32")._state.catalogue.unit_vectors
            m["cooccur"]["text_map"] = text_map(r.load_npy(m["cooccur"]["indices"]),
                                                r.load_npy(m["cooccur"]["scores"]).astype(np.float32), emb)
        tm = m["cooccur"]["text_map"]
        if beta == 0.0:
            del m["cooccur"]["text_map"]
        else:
            tm["sim"] = [float(v) * beta for v in tm["sim"]]
        (out / "manifest.json").write_text(json.dumps(m))
    return out


def main() -> None:
    run, out = Path(sys.argv[1]), Path(sys.argv[2])
    ds = load_dataset(sys.argv[3] if len(sys.argv) > 3 else None)
    tmp = Path(tempfile.mkdtemp(prefix="standin-"))
    cold = cold_protocol(ds, 0.1, 5, 0)
    queries = QuerySet(cold.users, cold.data, {}, cold.exclude_indptr, cold.exclude_indices)
    split = leave_last_out(ds.interactions, ds.n_users, ds.n_items, seed=0)
    report: dict = {"run": str(run), "betas": {}}
    for beta in BETAS:
        bc = scaled(run / "bundle-cold", beta, tmp)
        cold_rows = np.flatnonzero(np.load(bc / "items/popularity.npy") <= 0)
        score = onnx_scorer(bc, "fp32", queries, 1, cold_rows)
        _, v = cold_query_values(lambda rows, f=score: np.asarray(f(rows), np.float64), cold.relevant,
                                 cold.exclude_indptr, cold.exclude_indices, ds.n_items, cold.split.cold_items)
        bm = scaled(run / "bundle-main", beta, tmp)
        warm = {s: evaluate_bundle(bm, ds, split, "fp32", s, max_users=0)["ndcg@10"] for s in ("valid", "test")}
        row = {"cold_recall@20": float(np.mean(v["cold_recall@20"])),
               "coldonly_recall@20": float(np.mean(v["coldonly_recall@20"])),
               "valid_ndcg@10": warm["valid"], "test_ndcg@10": warm["test"]}
        report["betas"][f"{beta:g}"] = row
        print(beta, json.dumps(row), flush=True)
    out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
