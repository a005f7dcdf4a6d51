"""Rewrite a bundle in the format-2 layout the export now writes (no retraining): `items.vectors` and
`items.text_embeddings` name the HNSW index files that hold those rows, and their `.npy` copies are left
out. Every other file is copied byte for byte; checksums are recomputed by BundleWriter.commit.

usage: python to_format2.py SRC OUT
"""
import copy
import shutil
import sys
from pathlib import Path

from recengine.bundle import BundleWriter, open_bundle
from recengine.bundle.format import INDEX_SOURCE

src, out = sys.argv[1], sys.argv[2]
reader = open_bundle(src)
manifest = copy.deepcopy(reader.manifest)
files = manifest.pop("files")
for key in ("format", "format_version", "recengine_version", "created_at"):
    manifest.pop(key, None)
dropped = []
for space, key in INDEX_SOURCE.items():
    node = manifest.get("index", {}).get(space)
    if node is not None:
        dropped.append(manifest["items"][key])
        manifest["items"][key] = node["path"]
with BundleWriter(out, force=True) as writer:
    for rel in files:
        if rel not in dropped:
            shutil.copyfile(reader.path(rel), writer.path(rel))
    manifest["derived_from"] = {"bundle": str(Path(src).resolve()), "how": "to_format2.py", "dropped": dropped}
    print(writer.commit(manifest), "dropped", dropped)
