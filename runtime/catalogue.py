"""The live item catalogue: ids, texts, attributes and vectors, growable and with tombstones.

Rows are never reused while a catalogue lives: a removed item keeps its row (tombstoned, `alive=False`) so
histories and indexes that refer to rows stay valid; once `compaction_due`, the engine builds a new
catalogue of the live rows (`live_copy`, with the row map for histories and indexes) beside the served one
and swaps it in, releasing the dead rows' memory; `save` writes only live rows.
Arrays grow by doubling their capacity; readers hold the engine's read lock, so a reallocation (under the
write lock) never pulls memory from under a running request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .bundle import BundleReader
from .bundle.format import ITEM_ARRAYS
from .data.text import line_value
from .errors import BundleError
from .filters import attr_column


class Growable:
    """A 1-D or 2-D numpy array with amortised O(1) row appends. `copy=False` adopts `array` as the buffer
    when it is a writeable, C-contiguous array of its own (a freshly loaded one), instead of holding a second
    copy of it."""

    def __init__(self, array: np.ndarray, copy: bool = True) -> None:
        owned = (not copy and isinstance(array, np.ndarray) and array.base is None and array.flags.writeable
                 and array.flags.c_contiguous)
        self._buf = array if owned else np.array(array, copy=True)
        self.n = int(self._buf.shape[0])

    @property
    def view(self) -> np.ndarray:
        return self._buf[: self.n]

    def append(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=self._buf.dtype)
        need = self.n + rows.shape[0]
        if need > self._buf.shape[0]:
            grown = np.empty((max(need, 2 * self._buf.shape[0], 16),) + self._buf.shape[1:], dtype=self._buf.dtype)
            grown[: self.n] = self._buf[: self.n]
            self._buf = grown
        self._buf[self.n : need] = rows
        self.n = need


def pop_buckets(popularity: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """docs/bundle.md: bucket 0 for no interactions, else 1 + searchsorted(edges, count, side="right") (the one
    definition, shared by the export and the live updates)."""
    b = 1 + np.searchsorted(edges, popularity, side="right")
    return np.where(popularity > 0, b, 0).astype(np.int64)


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)


class Catalogue:
    """Every item the engine can serve, including those added live."""

    ARRAYS = tuple(ITEM_ARRAYS)

    def __init__(self, ids: Sequence[str], texts: Sequence[str], attrs: Mapping[str, Sequence[Any]],
                 arrays: Mapping[str, np.ndarray], *, adopt: bool = False) -> None:
        """`adopt`: the lists and arrays were made for this catalogue (`from_bundle`, `live_copy`) and become
        its own, without a copy (a 1M-item catalogue would otherwise hold every array twice while opening)."""
        n = len(ids)
        self.ids: list[str] = list(map(str, ids))  # str(s) of a str is s itself: no new string objects
        self.row_of: dict[str, int] = dict(zip(self.ids, range(n)))
        if len(self.row_of) != n:
            raise BundleError("items/ids.json has duplicate ids")
        if len(texts) != n:
            raise BundleError(f"items/texts.json has {len(texts)} texts for {n} ids")
        self.texts: list[str] = texts if adopt and isinstance(texts, list) else list(texts)
        self.attr_names: tuple[str, ...] = tuple(attrs)
        self._attr_lists: dict[str, list[Any]] = {}
        for name, values in attrs.items():
            if len(values) != n:
                raise BundleError(f"items/attrs.json: {name} has {len(values)} values for {n} items")
            self._attr_lists[name] = values if adopt and isinstance(values, list) else list(values)
        self._attr_cache: dict[str, np.ndarray] | None = None
        self._arrays: dict[str, Growable] = {}
        for key in self.ARRAYS:
            arr = np.asarray(arrays[key])
            if arr.shape[0] != n:
                raise BundleError(f"items/{key}.npy has {arr.shape[0]} rows for {n} item ids")
            self._arrays[key] = Growable(arr, copy=not adopt)
        self._alive = Growable(np.ones(n, dtype=bool))
        self.n_dead = 0
        self._current = Growable(np.arange(n, dtype=np.int64))
        """Row -> the row its id lives at now (an id re-added or replaced gets a new row; histories keep
        naming the old one, and exclusions must still catch it)."""
        self._unit = Growable(unit_rows(self.array("vectors")), copy=False)

    @classmethod
    def from_bundle(cls, reader: BundleReader) -> Catalogue:
        spec = reader.section("items")
        try:
            ids = reader.load_json(spec["ids"])
            texts = reader.load_json(spec["texts"])
            attrs = reader.load_json(spec["attrs"]) if spec.get("attrs") else {}
            arrays = {key: reader.load_npy(spec[key]) for key in cls.ARRAYS}
        except KeyError as exc:
            raise BundleError(f"{reader.root}: manifest items section lacks {exc.args[0]!r}") from None
        if not isinstance(ids, list) or not set(map(type, ids)) <= {str}:
            raise BundleError(f"{reader.root}: items/ids.json must be a list of strings")
        if not isinstance(attrs, dict):
            raise BundleError(f"{reader.root}: items/attrs.json must map attribute -> values")
        arrays = {key: arr.astype(ITEM_ARRAYS[key], copy=False) for key, arr in arrays.items()}
        return cls(ids, texts, attrs, arrays, adopt=True)

    # --- views (valid until the next write) ---
    def array(self, key: str) -> np.ndarray:
        return self._arrays[key].view

    # named views of the arrays (valid until the next write)
    @property
    def vectors(self) -> np.ndarray:
        """Retrieval vectors float32 [rows, d] (`items/vectors.npy` + live rows)."""
        return self.array("vectors")

    @property
    def text_vectors(self) -> np.ndarray:
        """What the encoder's `item_vector` gives each row (the collaborative part is `vectors - text_vectors`)."""
        return self.array("text_vectors")

    @property
    def text_embeddings(self) -> np.ndarray:
        """Unit-length text embeddings float32 [rows, text] (the search space)."""
        return self.array("text_embeddings")

    @property
    def popularity(self) -> np.ndarray:
        """Distinct users per row, int64 (live events included)."""
        return self.array("popularity")

    @property
    def pop_bucket(self) -> np.ndarray:
        return self.array("pop_bucket")

    @property
    def item_feats(self) -> np.ndarray:
        return self.array("item_feats")

    @property
    def n_rows(self) -> int:
        return len(self.ids)

    @property
    def alive(self) -> np.ndarray:
        return self._alive.view

    @property
    def n_alive(self) -> int:
        return self.n_rows - self.n_dead

    @property
    def unit_vectors(self) -> np.ndarray:
        """Row-normalised retrieval vectors (cosine for MMR, explanations, similar items)."""
        return self._unit.view

    @property
    def attrs(self) -> dict[str, np.ndarray]:
        """`attr_*` columns as numpy arrays (float64 with NaN, or object str/None), cached between writes."""
        if self._attr_cache is None:
            self._attr_cache = {k: attr_column(v) for k, v in self._attr_lists.items()}
        return self._attr_cache

    def rows_of(self, ids: Sequence[Any]) -> tuple[np.ndarray, list[Any]]:
        """Live rows of the known ids (in order) and the ids that are unknown or removed."""
        rows, unknown = [], []
        alive = self.alive
        for i in ids:
            r = self.row_of.get(i) if isinstance(i, str) else None
            if r is None or not alive[r]:
                unknown.append(i)
            else:
                rows.append(r)
        return np.asarray(rows, dtype=np.int64), unknown

    def current_rows(self, rows: np.ndarray) -> np.ndarray:
        """The rows where the items of `rows` live now (the same rows unless an id was re-added)."""
        rows = np.asarray(rows, dtype=np.int64)
        return self._current.view[rows] if rows.size else rows

    def title(self, row: int) -> str:
        """First line of an item's text without its "column: " prefix (for explanations)."""
        return line_value(self.texts[row].split("\n", 1)[0])

    # --- writes (engine write lock held) ---
    def append(self, ids: Sequence[str], texts: Sequence[str], attrs: Sequence[Mapping[str, Any]],
               arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """Append new rows; an id that already exists is tombstoned first (upsert). Returns the new rows."""
        start = self.n_rows
        previous = [(self.row_of[i], start + j) for j, i in enumerate(ids) if i in self.row_of]
        replaced = [old for old, _ in previous if self.alive[old]]
        if replaced:
            self.remove(np.asarray(replaced, dtype=np.int64))
        for key in self.ARRAYS:
            self._arrays[key].append(arrays[key])
        self._alive.append(np.ones(len(ids), dtype=bool))
        self._current.append(np.arange(start, start + len(ids), dtype=np.int64))
        if previous:  # every earlier row of a re-added id now points at its new row
            old_rows, new_rows = (np.asarray(x, dtype=np.int64) for x in zip(*previous))
            lookup = np.arange(self.n_rows + len(ids), dtype=np.int64)
            lookup[old_rows] = new_rows
            cur = self._current.view
            cur[:] = lookup[cur]
        self._unit.append(unit_rows(np.asarray(arrays["vectors"], dtype=np.float32)))
        for name in self.attr_names:
            self._attr_lists[name].extend(a.get(name) for a in attrs)
        self._attr_cache = None
        for offset, (item_id, text) in enumerate(zip(ids, texts)):
            self.ids.append(item_id)
            self.texts.append(text)
            self.row_of[item_id] = start + offset
        return np.arange(start, self.n_rows, dtype=np.int64)

    def replace_vectors(self, rows: np.ndarray, vectors: np.ndarray, text_vectors: np.ndarray,
                        text_embeddings: np.ndarray) -> None:
        """Overwrite the vectors of existing rows in place (same rows, same ids)."""
        self.array("vectors")[rows] = vectors
        self.array("text_vectors")[rows] = text_vectors
        self.array("text_embeddings")[rows] = text_embeddings
        self._unit.view[rows] = unit_rows(np.asarray(vectors, dtype=np.float32))

    def count_interactions(self, rows: np.ndarray, bucket_edges: np.ndarray | None) -> None:
        """Add one interaction to each of `rows` (repeats count repeatedly) and move them to their new
        popularity bucket (docs/bundle.md: 0 for none, else 1 + searchsorted(edges, count, "right")), so the
        popularity fallback, the long-tail boost and the fusion head see live events."""
        if rows.size == 0:
            return
        pop = self.array("popularity")
        np.add.at(pop, rows, 1)
        if bucket_edges is not None:
            self.array("pop_bucket")[rows] = pop_buckets(pop[rows], bucket_edges)

    def ensure_attrs(self, names: set[str]) -> None:
        """Add attribute columns first seen on items added live (missing for every earlier item)."""
        for name in sorted(set(names) - set(self.attr_names)):
            self.attr_names = self.attr_names + (name,)
            self._attr_lists[name] = [None] * self.n_rows
        self._attr_cache = None

    def attr_values(self, name: str, rows: np.ndarray) -> list[Any]:
        """Raw attribute values (JSON-ready) of `rows`, for saving."""
        values = self._attr_lists[name]
        return [values[r] for r in rows.tolist()]

    def remove(self, rows: np.ndarray) -> np.ndarray:
        """Tombstone rows; returns the rows that were alive."""
        rows = np.asarray(rows, dtype=np.int64)
        rows = rows[self.alive[rows]]
        self._alive.view[rows] = False
        self.n_dead += int(rows.size)
        return rows

    def live_copy(self) -> tuple[Catalogue, np.ndarray]:
        """A new catalogue of the live rows only (renumbered 0..n_alive-1, memory of dead rows released)
        and the row map old row -> new row (-1 for dead rows; rows of re-added ids map to their new row)."""
        live = np.flatnonzero(self.alive)
        row_map = np.full(self.n_rows, -1, dtype=np.int64)
        row_map[live] = np.arange(live.size)
        row_map = row_map[self.current_rows(np.arange(self.n_rows, dtype=np.int64))]
        out = Catalogue([self.ids[r] for r in live.tolist()], [self.texts[r] for r in live.tolist()],
                        {name: self.attr_values(name, live) for name in self.attr_names},
                        {key: self.array(key)[live] for key in self.ARRAYS}, adopt=True)
        return out, row_map

    def compaction_due(self, threshold: float = 0.2) -> bool:
        """Whether more than `threshold` of the rows are dead (a compaction rebuilds without them)."""
        return self.n_rows > 0 and self.n_dead / self.n_rows > threshold
