"""`Engine.save`: write the engine's current state as a new bundle (same format, atomically).

Models and the tokenizer are copied byte for byte; item and user arrays are written for the live items
only (rows renumbered, histories remapped, removed items dropped from them); HNSW indexes are saved as
they are when no row was removed (so the saved bundle serves identically) and rebuilt over the live rows
otherwise, in the stored form they were loaded in (`recengine.index_io.write_index`). Metrics stay those of
the export that trained the models; `saved_from` records the lineage.
"""

from __future__ import annotations

import copy
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .bundle import BundleWriter, bundle_path
from .bundle.format import INDEX_SOURCE, ITEM_FILES, USER_FILES, index_holding
from .errors import BundleError
from .index_io import write_index
from .state import EngineState

_REWRITTEN = ("items/", "users/", "index/")
"""Files `save` writes anew (the co-occurrence lists under items/ among them); the rest is copied."""


def save_state(st: EngineState, path: str | Path, force: bool = False) -> Path:
    cat, users = st.catalogue, st.users
    out = bundle_path(path, "save path")
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
    for key, rel in ITEM_FILES.items():
        items_spec.setdefault(key, rel)
    for key, rel in USER_FILES.items():
        users_spec.setdefault(key, rel)
    # histories name rows as written; an id re-added since lives at another row: map through it first
    history_map = row_map[cat.current_rows(np.arange(cat.n_rows, dtype=np.int64))]
    with BundleWriter(out, force=force) as writer:
        for rel in st.manifest.get("files", {}):
            if rel.startswith(_REWRITTEN):
                continue
            shutil.copyfile(st.root / rel, writer.path(rel))
        writer.write_json(items_spec["ids"], [cat.ids[r] for r in live.tolist()])
        writer.write_json(items_spec["texts"], [cat.texts[r] for r in live.tolist()])
        writer.write_json(items_spec["attrs"], {name: cat.attr_values(name, live) for name in cat.attr_names})
        for key in cat.ARRAYS:
            if index_holding(manifest, items_spec[key]) is None:  # format 2: else the index written below holds it
                writer.write_npy(items_spec[key], np.ascontiguousarray(cat.array(key)[live]))
        indptr, hist = users.csr(history_map)
        writer.write_json(users_spec["ids"], list(users.ids))
        writer.write_npy(users_spec["vectors"], np.ascontiguousarray(users.vectors, dtype=np.float32))
        writer.write_npy(users_spec["profile"], np.ascontiguousarray(users.profiles, dtype=np.int64))
        writer.write_npy(users_spec["history_indptr"], indptr)
        writer.write_npy(users_spec["history_items"], hist)
        if st.cooccur is not None:
            co = st.cooccur.remapped(cat.alive)
            spec = manifest["cooccur"]
            writer.write_npy(spec["indices"], co.indices)
            writer.write_npy(spec["scores"], co.scores.astype(np.float16))
            spec["weight"] = co.weight  # an `Engine.open(cooccur_weight=...)` override is saved with the state
        index_spec = manifest.setdefault("index", {})
        for space in (st.items_index, st.text_index):
            if space.spec is None:
                continue
            spec = space.spec
            served = space.hnsw if space.hnsw is not None and cat.n_dead == 0 else None  # rows unchanged
            index_spec[space.name] = write_index(
                writer, space.name, spec.path, cat.array(INDEX_SOURCE[space.name])[live], M=spec.M,
                ef_construction=spec.ef_construction, ef_search=spec.ef_search,
                augment=spec.max_norm is not None, served=served)
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
