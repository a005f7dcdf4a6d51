"""`Engine.save`: write the engine's current state as a new bundle (same format, atomically).

Models and the tokenizer are copied byte for byte; item and user arrays are written for the live items
only (rows renumbered, histories remapped, removed items dropped from them); HNSW indexes are saved as
they are when no row was removed (so the saved bundle serves identically) and rebuilt over the live rows
otherwise. Metrics stay those of the export that trained the models; `saved_from` records the lineage.
"""

from __future__ import annotations

import copy
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .bundle import BundleWriter
from .errors import BundleError
from .retrieval import HnswBackend
from .state import EngineState

_REWRITTEN = ("items/", "users/", "index/")


def save_state(st: EngineState, path: str | Path, force: bool = False) -> Path:
    cat, users = st.catalogue, st.users
    out = Path(path).resolve()
    if out == st.root:
        raise BundleError(f"{out}: cannot save over the bundle being served (save elsewhere, then reload)")
    manifest: dict[str, Any] = copy.deepcopy(st.manifest)
    manifest.pop("files", None)
    for key in ("format", "format_version", "recengine_version", "created_at"):
        manifest.pop(key, None)
    live = np.flatnonzero(cat.alive)
    row_map = np.full(cat.n_rows, -1, dtype=np.int64)
    row_map[live] = np.arange(live.size)
    items_spec = manifest.setdefault("items", {})
    users_spec = manifest.setdefault("users", {})
    defaults_items = {"ids": "items/ids.json", "texts": "items/texts.json", "attrs": "items/attrs.json",
                      "vectors": "items/vectors.npy", "text_vectors": "items/text_vectors.npy",
                      "text_embeddings": "items/text_embeddings.npy", "popularity": "items/popularity.npy",
                      "pop_bucket": "items/pop_bucket.npy", "item_feats": "items/item_feats.npy"}
    defaults_users = {"ids": "users/ids.json", "vectors": "users/vectors.npy", "profile": "users/profile.npy",
                      "history_indptr": "users/history_indptr.npy", "history_items": "users/history_items.npy"}
    for key, rel in defaults_items.items():
        items_spec.setdefault(key, rel)
    for key, rel in defaults_users.items():
        users_spec.setdefault(key, rel)
    with BundleWriter(out, force=force) as writer:
        for rel in st.manifest.get("files", {}):
            if rel.startswith(_REWRITTEN):
                continue
            shutil.copyfile(st.root / rel, writer.path(rel))
        writer.write_json(items_spec["ids"], [cat.ids[r] for r in live.tolist()])
        writer.write_json(items_spec["texts"], [cat.texts[r] for r in live.tolist()])
        writer.write_json(items_spec["attrs"], {name: cat.attr_values(name, live) for name in cat.attr_names})
        for key in cat.ARRAYS:
            writer.write_npy(items_spec[key], np.ascontiguousarray(cat.array(key)[live]))
        indptr, hist = users.csr(row_map)
        writer.write_json(users_spec["ids"], list(users.ids))
        writer.write_npy(users_spec["vectors"], np.ascontiguousarray(users.vectors, dtype=np.float32))
        writer.write_npy(users_spec["profile"], np.ascontiguousarray(users.profiles, dtype=np.int64))
        writer.write_npy(users_spec["history_indptr"], indptr)
        writer.write_npy(users_spec["history_items"], hist)
        index_spec = manifest.setdefault("index", {})
        for space, key in ((st.items_index, "vectors"), (st.text_index, "text_embeddings")):
            spec = index_spec.get(space.name)
            if not isinstance(spec, dict) or not spec.get("path"):
                continue
            rel = spec["path"]
            if space.hnsw is not None and cat.n_dead == 0:
                space.hnsw.index.save_index(str(writer.path(rel)))  # rows unchanged: save as served
                spec.update(space.hnsw.spec())
            else:
                built = HnswBackend.build(np.ascontiguousarray(cat.array(key)[live]), np.arange(live.size),
                                          M=int(spec.get("M", 16)),
                                          ef_construction=int(spec.get("ef_construction", 200)),
                                          ef=int(spec.get("ef_search", 100)),
                                          augment=spec.get("transform") == "mips_augment")
                built.index.save_index(str(writer.path(rel)))
                spec.pop("transform", None)
                spec.pop("max_norm", None)
                spec.update(built.spec())
            spec["count"] = int(live.size)
        data = manifest.setdefault("data", {})
        data["n_items"] = int(live.size)
        data["n_users"] = int(users.n)
        data["n_interactions"] = int(hist.size)
        manifest["saved_from"] = {
            "bundle": str(st.root),
            "created_at": st.manifest.get("created_at"),
            "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        return writer.commit(manifest)
