"""Write the trained models, arrays, vocabularies and indexes of a fit into a bundle (docs/bundle.md).

The models are the ones trained on the leave-last-out split (no retrain on all data); the user histories
stored in the bundle are ALL of each user's deduplicated interactions, chronological, and the stored user
vectors are computed from them with an unknown scene.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from recengine.bundle import BundleWriter
from recengine.bundle.format import INDEX_FILES, ITEM_FILES, MEDIA_FILES, USER_FILES, held_item_paths, stored_item_array
from recengine.data.schema import Dataset, data_warnings
from recengine.split import deduplicate, to_csr

from .fit import FittedRecengine
from .fusion import ITEM_FEATURE_NAMES


def _attr_lists(attrs: dict[str, np.ndarray]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for name, column in attrs.items():
        values: list[Any] = []
        for v in column:
            if v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and v == ""):
                values.append(None)
            elif isinstance(v, (np.floating, float)):
                values.append(float(v))
            else:
                values.append(str(v))
        out[name] = values
    return out


def user_histories(dataset: Dataset, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR of every user's deduplicated interactions, oldest first."""
    events = deduplicate(dataset.interactions, seed)
    return to_csr(events.user, events.item, dataset.n_users)


def indexed_spaces(n_items: int, text: str = "auto") -> tuple[str, ...]:
    """The retrieval spaces a bundle of `n_items` items carries an HNSW index for: the item space always
    (batched `recommend` uses it past a few queries), the text space as `text` (`IndexConfig.text`) says:
    "auto" only where a `search` would read it (`recengine.retrieval.text_index_wanted`)."""
    from recengine.retrieval import text_index_wanted

    return ("item", "text") if text_index_wanted(n_items, text) else ("item",)


def write_arrays(w: BundleWriter, dataset: Dataset, fitted: FittedRecengine,
                 indexed: Sequence[str] = ("item", "text")) -> dict[str, Any]:
    """Item and user arrays; returns the `items`, `users` and `vocab` manifest sections.

    `indexed` (format 2, docs/bundle.md "Item arrays held by an index"): the spaces whose index the caller
    writes (`write_indexes`); `items.vectors` / `items.text_embeddings` then name those index files instead
    of storing the same rows a second time as `.npy` (the text space alone is 1.5 KB per item with MiniLM).
    An array whose space is not indexed is stored as `.npy` in its stored dtype (`format.stored_item_array`)."""
    arrays = {**fitted.item_arrays(), "text_embeddings": fitted.text.search_space}
    f = ITEM_FILES
    held = held_item_paths(indexed)

    def array(key: str) -> str:
        return held.get(key) or w.write_npy(f[key], stored_item_array(key, arrays[key]))

    items = {
        "ids": w.write_json(f["ids"], [str(i) for i in dataset.items.ids]),
        "texts": w.write_json(f["texts"], list(dataset.items.texts)),
        "attrs": w.write_json(f["attrs"], _attr_lists(dataset.items.attrs)),
        **{key: array(key) for key in ("vectors", "text_vectors", "text_embeddings")},
        "popularity": w.write_npy(f["popularity"], fitted.popularity.astype(np.int64)),
        "pop_bucket": w.write_npy(f["pop_bucket"], fitted.pop_bucket.astype(np.int64)),
        "item_feats": w.write_npy(f["item_feats"], arrays["item_feats"].astype(np.float32)),
    }
    items.update(write_media(w, fitted))
    indptr, hist = user_histories(dataset, fitted.config.seed)
    user_vecs = fitted.user_vectors(np.arange(dataset.n_users), indptr, hist, scene=None)
    u = USER_FILES
    users = {
        "ids": w.write_json(u["ids"], [str(x) for x in dataset.user_ids]),
        "vectors": w.write_npy(u["vectors"], user_vecs.astype(np.float32)),
        "history_indptr": w.write_npy(u["history_indptr"], indptr.astype(np.int64)),
        "history_items": w.write_npy(u["history_items"], hist.astype(np.int64)),
        "profile": w.write_npy(u["profile"], fitted.profiles.astype(np.int64)),
    }
    vocab = {"scene": fitted.scene_vocab.to_json(), "profile": fitted.profile_vocab.to_json(),
             "pop_bucket_edges": [float(e) for e in fitted.pop_edges]}
    return {"items": items, "users": users, "vocab": vocab, "_user_vectors": user_vecs}


def write_media(w: BundleWriter, fitted: FittedRecengine) -> dict[str, str]:
    """The media projection of the cold generator (`items.media_projection`, `media_mean`, `media_scale`),
    only when the data set had `item_vectors.npy`; {} otherwise."""
    cold = fitted.cold
    if fitted.media is None or cold is None or cold.W_media is None:
        return {}
    assert cold.media_mean is not None and cold.media_scale is not None
    arrays = {"media_projection": cold.W_media, "media_mean": cold.media_mean, "media_scale": cold.media_scale}
    return {key: w.write_npy(MEDIA_FILES[key], np.ascontiguousarray(a, dtype=np.float32))
            for key, a in arrays.items()}


def write_indexes(w: BundleWriter, vectors: np.ndarray, text_embeddings: np.ndarray, M: int, ef_construction: int,
                  ef_search: int, seed: int, min_recall: float | None = None,
                  probes: dict[str, np.ndarray] | None = None,
                  indexed: Sequence[str] = ("item", "text")) -> dict[str, Any]:
    """hnswlib indexes over every catalogue item (labels = item rows), in the form the runtime serves
    (`recengine.index_io.write_index`: the same code `Engine.save` writes with). They also hold the
    `vectors` and `text_embeddings` rows `write_arrays` did not store as `.npy` (bit for bit: hnswlib's `ip`
    space stores float32 vectors as given). `probes[name]`: the queries each index's ef is calibrated on
    with `min_recall` (none: its own rows). `indexed`: the spaces to index (`indexed_spaces`)."""
    from recengine.index_io import write_index

    probes = probes or {}
    return {name: write_index(w, name, INDEX_FILES[name], data, M=M, ef_construction=ef_construction,
                              ef_search=ef_search, seed=seed, min_recall=min_recall, probe=probes.get(name))
            for name, data in (("item", vectors), ("text", text_embeddings)) if name in indexed}


def data_section(dataset: Dataset) -> dict[str, Any]:
    return {
        "name": dataset.name,
        "fingerprint": dataset.fingerprint,
        "n_items": dataset.n_items,
        "n_users": dataset.n_users,
        "n_interactions": len(dataset.interactions),
        "text_columns": list(dataset.items.text_columns),
        "item_attr_columns": sorted(dataset.items.attrs),
        "context_columns": sorted(dataset.interactions.context),
        "user_attr_columns": sorted(dataset.user_attrs),
        "warnings": data_warnings(dataset),
    }


def dims_section(fitted: FittedRecengine) -> dict[str, int]:
    return {
        "text": int(fitted.text.search_space.shape[1]),
        "item": int(fitted.config.item_dim),
        "scene_slots": fitted.scene_vocab.slots,
        "profile_slots": fitted.profile_vocab.slots,
        "item_feats": len(ITEM_FEATURE_NAMES),
        "max_history": int(fitted.config.user.max_history),
    }
