"""Does shifting the stand-in's cosine map by INT8's cosine shrink give INT8's cold items back their place?

Scores the cold protocol (`recengine.metrics.cold_query_values`, as the bench) with fp32, and with int8 with
`cooccur.text_map.cos` lowered by 0, 0.0034 (the shrink `int8_cosine_shrink.py` measured on Book-Crossing's
top-20 cosines) and twice that. Usage: python int8_map_shift.py BUNDLE_COLD DATA
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
from recengine.metrics import cold_query_values


def main(bundle: Path, data: str) -> None:
    ds = load_dataset(data)
    cold = cold_protocol(ds, 0.1, 5, 0)
    queries = QuerySet(cold.users, cold.data, {}, cold.exclude_indptr, cold.exclude_indices)
    tmp = Path(tempfile.mkdtemp())
    for variant, delta in (("fp32", 0.0), ("int8", 0.0), ("int8", 0.0034), ("int8", 0.0068)):
        b = tmp / f"b{delta}"
        if not b.exists():
            shutil.copytree(bundle, b)
            m = json.loads((b / "manifest.json").read_text())
            m["cooccur"]["text_map"]["cos"] = [c - delta for c in m["cooccur"]["text_map"]["cos"]]
            (b / "manifest.json").write_text(json.dumps(m))
        cold_rows = np.flatnonzero(np.load(b / "items/popularity.npy") <= 0)
        score = onnx_scorer(b, variant, queries, 1, cold_rows)
        _, v = cold_query_values(lambda r, f=score: np.asarray(f(r), np.float64), cold.relevant,
                                 cold.exclude_indptr, cold.exclude_indices, ds.n_items, cold.split.cold_items)
        print(f"{variant} shift {delta}: hybrid {np.mean(v['cold_recall@20']):.4f} "
              f"cold-only {np.mean(v['coldonly_recall@20']):.4f}", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
