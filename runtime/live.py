"""Live updates of a served bundle: add, replace, remove and re-encode items; append user events; compact.

Each update is split in two: the heavy part (validation, encoding, user-tower runs, index rebuilds) runs
before the engine takes its write lock and returns a plan; `apply_*` then changes the state under the
write lock in a few array operations, so readers wait for microseconds, not for a model run. The engine
serialises writers, so a plan is never applied to a state another writer changed in between.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .attributes import check_item_attrs
from .bundle.format import INDEX_SOURCE
from .errors import RequestError
from .lexical import LexicalIndex
from .requests import check_id
from .retrieval import ExactBackend, HnswBackend, OnnxExactBackend
from .state import EngineState

log = logging.getLogger(__name__)


@dataclass
class NewItems:
    """Items validated and encoded, ready to append."""

    ids: list[str]
    texts: list[str]
    attrs: list[dict[str, Any]]
    arrays: dict[str, np.ndarray]


MEDIA_KEY = "vector"
"""An `add_items` item's optional media vector (image/audio, the data set's `item_vectors.npy` kind).
`parse_items` validates it and carries it to `encode_items` in the item's attribute mapping under this
key (never an attribute: those all start with `attr_`); `encode_items` takes it out again."""


def parse_media_vector(st: EngineState, item_id: str, value: Any) -> np.ndarray:
    """An item's `vector`: a list/array of d_media finite numbers, for a bundle with a media projection."""
    if st.media is None:
        raise RequestError(f"item {item_id!r}: the bundle has no media projection (it was exported without "
                           f"item_vectors.npy), so a 'vector' cannot be used")
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (Sequence, np.ndarray)):
        raise RequestError(f"item {item_id!r}: vector must be a list of {st.media.dim} numbers, "
                           f"got {type(value).__name__}")
    if any(isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, float, np.integer, np.floating))
           for x in (value.tolist() if isinstance(value, np.ndarray) and value.ndim == 1 else value)):
        raise RequestError(f"item {item_id!r}: vector must hold numbers only (a flat list of {st.media.dim})")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (OverflowError, ValueError, TypeError):
        raise RequestError(f"item {item_id!r}: vector must be a flat list of {st.media.dim} numbers") from None
    if arr.ndim != 1 or arr.shape[0] != st.media.dim:
        raise RequestError(f"item {item_id!r}: vector has length {arr.size if arr.ndim == 1 else arr.shape}, "
                           f"the bundle's media vectors have {st.media.dim}")
    if not np.isfinite(arr).all():
        raise RequestError(f"item {item_id!r}: vector holds non-finite values (NaN or inf) at "
                           f"{np.flatnonzero(~np.isfinite(arr))[:5].tolist()}")
    if np.abs(arr).max(initial=0.0) > np.finfo(np.float32).max:
        raise RequestError(f"item {item_id!r}: vector values exceed the float32 range")
    return arr.astype(np.float32)


def parse_items(st: EngineState, items: Any) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """Ids, texts and attributes of `add_items` input (RequestError naming the first bad item). An item's
    optional media `vector` is validated here and rides in its attribute mapping under `MEDIA_KEY` (unless
    the bundle has a text column of that name: the column wins)."""
    from .data.text import build_item_text

    if isinstance(items, Mapping) or not isinstance(items, Sequence) or isinstance(items, (str, bytes)):
        raise RequestError("add_items expects a list of item mappings")
    ids, texts, attrs = [], [], []
    seen: set[str] = set()
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise RequestError(f"item {i} must be a mapping with 'item_id' and text columns")
        item_id = check_id(f"item {i} item_id", item.get("item_id"))
        if item_id in seen:
            raise RequestError(f"item id {item_id!r} appears twice in add_items")
        seen.add(item_id)
        if st.text_columns:  # a field the bundle has no use for is a mistake (a typo, another data set's column)
            unknown = [str(k) for k in item if k not in st.text_columns and k not in ("item_id", "text", MEDIA_KEY)
                       and not str(k).startswith(("attr_", "ctx_"))]  # ctx_*: ignored, as in an items table
            if unknown:
                raise RequestError(
                    f"item {item_id!r}: unknown field(s) {', '.join(map(repr, unknown[:5]))}: the bundle's text "
                    f"columns are {', '.join(st.text_columns)}; also allowed: item_id, text, {MEDIA_KEY}, attr_*, "
                    "ctx_*")
        if "text" in item and item["text"] is not None:
            text = item["text"]
            if not isinstance(text, str):
                raise RequestError(f"item {item_id!r}: text must be a string")
            text = text.strip()
        else:
            columns = st.text_columns or tuple(c for c in item if c not in ("item_id", MEDIA_KEY)
                                               and not str(c).startswith(("attr_", "ctx_")))
            text = build_item_text(item, columns)
        if not text:
            cols = ", ".join(st.text_columns) or "text"
            raise RequestError(f"item {item_id!r} has no text (give one of: {cols})")
        ids.append(item_id)
        texts.append(text)
        checked = check_item_attrs(item, f"item {item_id!r}")  # refuse what save() could not write
        if item.get(MEDIA_KEY) is not None and MEDIA_KEY not in st.text_columns:  # a text column of that name wins
            checked[MEDIA_KEY] = parse_media_vector(st, item_id, item[MEDIA_KEY])
        attrs.append(checked)
    return ids, texts, attrs


def encode_items(st: EngineState, ids: list[str], texts: list[str], attrs: list[dict[str, Any]],
                 batch_size: int) -> NewItems:
    """Run the encoder: a new item is what a catalogue item nobody interacted with is (the encoder's
    `item_vector`, no popularity, the cold fusion features). An item with a media vector m (a bundle with a
    media projection) gets `item_vector + projection @ ((m - mean) / scale)`: the one place of that rule;
    the media part stays in `vectors - text_vectors`, which `reencode` keeps."""
    attrs = [dict(a) for a in attrs]
    media = [a.pop(MEDIA_KEY, None) for a in attrs]
    text_emb, item_vec = st.models.encode(texts, batch_size=batch_size, stored=True)
    n = len(ids)
    vectors = item_vec
    given = [i for i, m in enumerate(media) if m is not None]
    if given:
        mp = st.media
        if mp is None:  # the bundle was reloaded without one since parse_items
            raise RequestError("the bundle has no media projection, so a 'vector' cannot be used")
        m = np.stack([np.asarray(media[i], dtype=np.float32) for i in given])
        if m.shape[1] != mp.dim:
            raise RequestError(f"vector has length {m.shape[1]}, the bundle's media vectors have {mp.dim}")
        vectors = np.array(item_vec, dtype=np.float32, copy=True)
        vectors[given] += ((m - mp.mean) / mp.scale) @ mp.projection.T
    arrays = {
        "vectors": vectors,
        "text_vectors": item_vec,
        "text_embeddings": text_emb,
        "popularity": np.zeros(n, np.int64),
        "pop_bucket": np.zeros(n, np.int64),
        "item_feats": np.broadcast_to(st.cold_item_feats, (n, st.cold_item_feats.size)).copy(),
    }
    return NewItems(ids, texts, attrs, arrays)


def refresh_indexes(st: EngineState, added: np.ndarray | None, removed: np.ndarray | None) -> None:
    cat = st.catalogue
    st.items_index.refresh(cat.vectors, cat.alive, added, removed)
    st.text_index.refresh(cat.text_embeddings, cat.alive, added, removed)


def apply_items(st: EngineState, new: NewItems) -> None:
    """Append (an existing id is replaced: its old row is tombstoned) and index the new rows."""
    cat = st.catalogue
    cat.ensure_attrs({k for a in new.attrs for k in a})
    replaced = np.asarray([cat.row_of[i] for i in new.ids if i in cat.row_of and cat.alive[cat.row_of[i]]],
                          dtype=np.int64)
    added = cat.append(new.ids, new.texts, new.attrs, new.arrays)
    refresh_indexes(st, added=added, removed=replaced)
    if st.lexical is not None:
        st.lexical.remove(replaced, [cat.texts[r] for r in replaced.tolist()])
        st.lexical.add(added, [cat.texts[r] for r in np.asarray(added).tolist()])


def remove(st: EngineState, ids: list[str]) -> int:
    """Tombstone the live items among `ids` and drop them from the indexes; returns how many were live."""
    cat = st.catalogue
    rows = np.asarray([cat.row_of[i] for i in ids if i in cat.row_of], dtype=np.int64)
    removed = cat.remove(rows) if rows.size else rows
    if removed.size:
        refresh_indexes(st, added=None, removed=removed)
        if st.lexical is not None:
            st.lexical.remove(removed, [cat.texts[r] for r in removed.tolist()])
    return int(removed.size)


@dataclass
class Reencoded:
    rows: np.ndarray
    vectors: np.ndarray
    text_vectors: np.ndarray
    text_embeddings: np.ndarray


def reencode(st: EngineState, rows: np.ndarray, batch_size: int = 64) -> Reencoded:
    """New vectors for `rows` from this engine's item encoder: the text part is re-encoded and the
    collaborative part (`vectors - text_vectors`, data, not a model) kept, i.e. what each item would be had
    its text gone through that encoder."""
    cat = st.catalogue
    text_emb, text_vec = st.models.encode([cat.texts[r] for r in rows.tolist()], batch_size=batch_size,
                                         stored=True)
    collab = cat.vectors[rows] - cat.text_vectors[rows]
    return Reencoded(rows, (text_vec + collab).astype(np.float32), text_vec, text_emb)


def apply_reencoded(st: EngineState, r: Reencoded) -> None:
    st.catalogue.replace_vectors(r.rows, r.vectors, r.text_vectors, r.text_embeddings)
    live = r.rows[st.catalogue.alive[r.rows]]
    refresh_indexes(st, added=live, removed=None)  # hnswlib add_items on an existing label updates it


def parse_events(events: Any) -> list[str]:
    if isinstance(events, (str, bytes, Mapping)) or not isinstance(events, Iterable):
        raise RequestError("events must be a list of item ids (or mappings with 'item_id')")
    item_ids = []
    for i, e in enumerate(events):
        value = e.get("item_id") if isinstance(e, Mapping) else e
        if not isinstance(value, str):
            raise RequestError(f"events[{i}] must be an item id string, got {value!r}")
        item_ids.append(value.strip())  # as `requests.check_id` strips
    return item_ids


@dataclass
class UserUpdate:
    user_id: str
    row: int | None
    rows: np.ndarray
    unknown: list[Any]
    old: np.ndarray
    history: np.ndarray
    vector: np.ndarray
    profile: np.ndarray


def plan_user_update(st: EngineState, user_id: str, item_ids: list[str]) -> UserUpdate:
    """The user's new history and vector (unknown scene, stored profile); run under the read lock."""
    cat = st.catalogue
    rows, unknown = cat.rows_of(item_ids)
    row = st.users.row_of.get(user_id)
    old = cat.current_rows(st.users.history(row)) if row is not None else np.zeros(0, np.int64)
    profile = st.users.profiles[row] if row is not None else np.zeros(st.profile.slots, np.int64)
    history = np.concatenate([old, rows]).astype(np.int64)
    served = history[cat.alive[history]] if history.size else history
    vector = st.models.user_vectors([served], cat.vectors, np.zeros((1, st.scene.slots), np.int64),
                                    profile[None, :])[0]
    return UserUpdate(user_id, row, rows, unknown, old, history, vector, profile)


def apply_user_update(st: EngineState, u: UserUpdate) -> bool:
    """Store the planned history and vector; items new to the user's history gain one interaction of
    popularity (the export counts distinct user-item pairs). Returns whether the user was created."""
    created = u.row is None
    row = st.users.add(u.user_id, u.vector, u.profile) if created else u.row
    if not created:
        st.users.set_vector(row, u.vector)
    st.users.set_history(row, u.history)
    first_time = np.unique(u.rows[~np.isin(u.rows, u.old)])
    st.catalogue.count_interactions(first_time, st.pop_bucket_edges)
    return created


def compaction_due(st: EngineState) -> bool:
    return st.catalogue.compaction_due(st.options.compaction_threshold)


def compacted(st: EngineState) -> EngineState:
    """A new state of the live rows only: catalogue renumbered (dead rows' memory released), histories
    remapped, every index rebuilt over the live rows in its stored form. Built beside the served state
    (readers keep using it); the engine swaps the reference."""
    import dataclasses

    cat, row_map = st.catalogue.live_copy()
    spaces = {}
    for space in (st.items_index, st.text_index):
        matrix = cat.array(INDEX_SOURCE[space.name])
        hnsw = None
        if space.hnsw is not None and space.spec is not None:
            spec = space.spec
            hnsw = HnswBackend.build(matrix, np.arange(cat.n_rows), M=spec.M, ef_construction=spec.ef_construction,
                                     ef=space.hnsw.ef, augment=space.hnsw.max_norm is not None)
        onnx = None
        if space.onnx is not None:
            onnx = OnnxExactBackend(matrix, cat.alive, device=space.device, threads=st.options.threads)
        spaces[space.name] = dataclasses.replace(space, exact=ExactBackend(matrix, cat.alive, space.exact.scanner),
                                                  hnsw=hnsw, onnx=onnx)
    log.info("compacted: %d live rows kept, %d dead rows dropped", cat.n_rows, st.catalogue.n_rows - cat.n_rows)
    lexical = LexicalIndex.build(cat.texts, cat.alive) if st.lexical is not None else None
    cooccur = st.cooccur.remapped(st.catalogue.alive) if st.cooccur is not None else None
    return dataclasses.replace(st, catalogue=cat, users=st.users.remapped(row_map), items_index=spaces["item"],
                               text_index=spaces["text"], lexical=lexical, cooccur=cooccur)


__all__ = ["NewItems", "parse_items", "encode_items", "apply_items", "remove", "reencode", "apply_reencoded",
           "parse_events", "plan_user_update", "apply_user_update", "compaction_due", "compacted"]
