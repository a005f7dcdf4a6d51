"""Derive --target cpu/gpu bundles from an existing all-variant bundle with the export's own
drop_untargeted_variants (no retraining), for footprint measurements of a MiniLM bundle."""
import copy
import shutil
import sys
import types
from pathlib import Path

from recengine.bundle import BundleWriter, open_bundle
from recengine.export.pipeline import drop_untargeted_variants

src, target, out = sys.argv[1], sys.argv[2], sys.argv[3]
r = open_bundle(src)
m = copy.deepcopy(r.manifest)
files = m.pop("files")
for k in ("format", "format_version", "recengine_version", "created_at"):
    m.pop(k, None)
with BundleWriter(out, force=True) as w:
    for rel in files:
        shutil.copyfile(r.path(rel), w.path(rel))
    removed = drop_untargeted_variants(w.root, m, types.SimpleNamespace(target=target))
    m.setdefault("config", {})["target"] = target
    m["derived_from"] = {"bundle": str(Path(src).resolve()), "how": "drop_untargeted_variants", "removed": removed}
    print(w.commit(m), removed)
