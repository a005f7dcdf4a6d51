"""Does the text stand-in cost warm accuracy? Main-protocol validation and test NDCG@10 of the bench's
main bundle served with its co-occurrence blend, without and with `cooccur.text_map` (computed by the
export's own `text_map` from the bundle's lists and text embeddings). Usage: python warm_text.py BUNDLE_MAIN [DATA]"""
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from recengine import Engine
from recengine.bundle import open_bundle
from recengine.data import load_dataset
from recengine.export.cooccur import text_map
from recengine.export.validation import evaluate_bundle
from recengine.split import leave_last_out

bundle = Path(sys.argv[1])
ds = load_dataset(sys.argv[2] if len(sys.argv) > 2 else None)
split = leave_last_out(ds.interactions, ds.n_users, ds.n_items, seed=0)
r = open_bundle(bundle)
m = r.manifest
emb = Engine.open(bundle, device="cpu", variant="fp32")._state.catalogue.unit_vectors
mapping = text_map(r.load_npy(m["cooccur"]["indices"]), r.load_npy(m["cooccur"]["scores"]).astype(np.float32), emb)
tmp = Path(tempfile.mkdtemp()) / "b"
shutil.copytree(bundle, tmp)
m2 = json.loads((tmp / "manifest.json").read_text())
m2["cooccur"]["text_map"] = mapping
(tmp / "manifest.json").write_text(json.dumps(m2))
for name, b in (("blend", bundle), ("blend+text", tmp)):
    out = {s: evaluate_bundle(b, ds, split, "fp32", s, max_users=0)["ndcg@10"] for s in ("valid", "test")}
    print(name, json.dumps(out))
print("listless items:", int((r.load_npy(m["cooccur"]["indices"])[:, 0] < 0).sum()))
