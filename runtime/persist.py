"""`Engine.save`: write the engine's current state as a new bundle (same format, atomically).

Models and the tokenizer are copied byte for byte; item and user arrays are written for the live items
only (rows renumbered, histories remapped, removed items dropped from them); HNSW indexes are saved as
they are when no row was removed (so the saved bundle serves identically) and rebuilt over the live rows
otherwise, in the stored form they were loaded in (`recengine.index_io.write_index`). The text space keeps,
gains or loses its index by the export's rule (`recengine.retrieval.text_index_wanted`): a catalogue grown past
`search`'s scan budget gets one, one under it stores its text rows as a float16 `.npy` instead. Metrics stay
those of the export that trained the models; `saved_from` records the lineage.
"""

from __future__ import annotations

import copy
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .bundle import BundleWriter, bundle_path
from .bundle.format import INDEX_FILES, INDEX_SOURCE, ITEM_FILES, USER_FILES, index_holding, stored_item_array
from .errors import BundleError
from .index_io import PROBE_QUERIES, query_like, write_index
from .retrieval import text_index_mode, text_index_wanted
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
    index_spec = manifest.setdefault("index", {})
    text_index = _text_index_plan(st, manifest, int(live.size))
    if text_index == "drop":  # under the scan budget now: the rows go back to a float16 .npy
        index_spec.pop("text", None)
        items_spec["text_embeddings"] = ITEM_FILES["text_embeddings"]
    elif text_index == "build":  # past it: the index written below holds the rows
        items_spec["text_embeddings"] = INDEX_FILES["text"]
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
            if text_index == "build" and key == "text_embeddings":
                continue
            if index_holding(manifest, items_spec[key]) is None:  # format 2: else the index written below holds it
                indexed = key == "text_embeddings" and text_index == "keep"  # a 1.x bundle: .npy and index
                writer.write_npy(items_spec[key], stored_item_array(key, cat.array(key)[live], indexed))
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
        if text_index == "build":
            index_spec["text"] = _build_text_index(st, writer, manifest, live)
        for space in (st.items_index, st.text_index):
            if space.spec is None or (space is st.text_index and text_index == "drop"):
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


_INDEX_LIMITS = (128, 4096, 4096)
"""Largest M, ef_construction and ef_search `Engine.save` takes from a bundle's free-form `config.index` (a
hand-edited M of a million would allocate without bound); beyond, the item index's values."""


def _index_config(manifest: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The bundle's `config.index` section and `config.seed` as far as they are well-formed ({} / 0 where
    not: `config` is free-form, so a hand-edited or hostile one must not stop a save)."""
    config = manifest.get("config")
    if not isinstance(config, dict):
        return {}, 0
    index = config.get("index")
    seed = config.get("seed")
    ok_seed = isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**32
    return (index if isinstance(index, dict) else {}), (seed if ok_seed else 0)


def _text_index_plan(st: EngineState, manifest: dict[str, Any], n_live: int) -> str:
    """What the saved bundle does with the text space's HNSW index, by the export's rule
    (`recengine.retrieval.text_index_wanted`, with the bundle's `config.index.text`, "auto" when absent):
    "keep" it, "build" one (a catalogue grown past the scan budget by `add_items`), "drop" it (one under the
    budget, e.g. a bundle exported before the rule), or "none" (neither had nor wants one)."""
    wanted = text_index_wanted(n_live, text_index_mode(manifest))
    has = st.text_index.spec is not None
    return ("keep" if wanted else "drop") if has else ("build" if wanted else "none")


def _build_text_index(st: EngineState, writer: BundleWriter, manifest: dict[str, Any], live: np.ndarray
                      ) -> dict[str, Any]:
    """A new text index over the live rows, as the export builds one: `config.index`'s M, ef_construction and
    ef floor (where a value is missing or out of range, the item index's: the export built both from the same
    config), ef calibrated to `config.index.min_recall` on search-like queries encoded by the bundle's own
    encoder (`query_like`; the export's probes)."""
    item = st.items_index.spec
    cfg, seed = _index_config(manifest)
    fallback = (item.M, item.ef_construction, item.ef_search) if item is not None else (16, 200, 128)
    M, ef_construction, ef_search = (
        value if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high else default
        for value, low, high, default in zip((cfg.get("M"), cfg.get("ef_construction"), cfg.get("ef_search")),
                                             (2, 1, 1), _INDEX_LIMITS, fallback))
    min_recall = cfg.get("min_recall")
    if not (isinstance(min_recall, (int, float)) and not isinstance(min_recall, bool) and 0 < min_recall <= 1):
        min_recall = None
    texts = [st.catalogue.texts[r] for r in live.tolist()]
    queries = query_like(texts, PROBE_QUERIES, seed) if min_recall is not None else []
    probe = st.models.encode_queries(queries) if queries else None
    return write_index(writer, "text", INDEX_FILES["text"], st.catalogue.text_embeddings[live], M=M,
                       ef_construction=ef_construction, ef_search=ef_search, seed=seed,
                       min_recall=float(min_recall) if min_recall is not None else None, probe=probe)
