"""Item co-occurrence: the second score of `recommend`, next to the user tower (added over the whole catalogue
where it is scanned exactly, else to the candidates, of which it is then the second source; `pipeline`).

Why: a user's next item is, far more often than a single user vector can express, an item that people who
took the user's *latest* items also took. Measured on the embedded MovieLens (standard export, 2026-11-30):
adding a recency-weighted item-to-item signal to the tower's scores raised validation NDCG@10 from 0.059
to 0.072-0.074, where no tuning of the tower came close; on sparse catalogues a plain ItemKNN beat the
tower outright (issue 11). The export learns the neighbour lists from the training interactions and picks
every setting below on validation (weight 0 when the signal does not help: the bundle then serves the
tower alone), `recengine.export.cooccur`.

The signal of a history h_1..h_n (oldest first) for item i:

    c(i) = sum_t decay^(n - t) * sim(h_t, i)          over the last `max_history` items of h
    score(i) = base(i) + weight * c(i) / max_j c(j)

with `sim` the bundle's top-K neighbour lists (`items/cooccur_indices.npy`, `items/cooccur_scores.npy`) and
`base` the tower's inner product (or the fusion head's score). The normalisation by the largest c over the
catalogue makes `weight` mean the same for a history of 3 items and of 300; it is taken before any filter
or exclusion, so a request's filter never changes an item's score.

Items without neighbour lists (added live, or re-added) get no co-occurrence signal until a re-export; items
removed live are dropped from every list (their rows are dead). Neighbour rows are catalogue rows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np

from .errors import BundleError, RequestError

FILES = {"indices": "items/cooccur_indices.npy", "scores": "items/cooccur_scores.npy"}
"""`manifest.cooccur.<key>` -> default path."""
NEGLIGIBLE = 1e-4
"""History items weighing less than this (decay^age) are not read: they cannot move a ranking."""
DENSE_RATIO = 64
"""Sum densely over the catalogue when it has at most this many rows per neighbour entry read."""


class Signal(NamedTuple):
    """A history's co-occurrence signal: `rows` ascending, `values` = raw sums / `top` (in (0, 1])."""

    rows: np.ndarray
    values: np.ndarray
    top: float
    """The largest raw sum (0: the history co-occurs with nothing)."""


_EMPTY = Signal(np.zeros(0, np.int64), np.zeros(0, np.float64), 0.0)


@dataclass(frozen=True)
class Cooccur:
    """Neighbour lists of the first `n` catalogue rows and the blend settings (docs/bundle.md `cooccur`)."""

    indices: np.ndarray
    """int32 [n, K]: neighbour rows, best first; -1 pads a short list."""
    scores: np.ndarray
    """float32 [n, K]: similarity of each neighbour (>= 0, 0 where the index is -1)."""
    weight: float
    decay: float
    max_history: int
    text_cos: np.ndarray | None = None
    """float64 [m] ascending, with `text_sim`: the text stand-in for items without a list (None: none).
    The cosine is that of the items' retrieval vectors (row-normalised `items/vectors`): an item without
    history has the vector its text gives through the encoder's generator, so it is its text that places it."""
    text_sim: np.ndarray | None = None
    """float64 [m] non-decreasing, >= 0: similarity an item without a list gets from a history item at vector
    cosine `text_cos` (linear in between, 0 below the first point, the last value above the last)."""

    @property
    def n(self) -> int:
        return int(self.indices.shape[0])

    @cached_property
    def has_list(self) -> np.ndarray:
        """bool [n]: which of the first `n` rows have a neighbour list (computed once per lists)."""
        return np.asarray(self.indices[:, 0] >= 0) if self.indices.size else np.zeros(self.n, dtype=bool)

    def listless_rows(self, alive: np.ndarray) -> np.ndarray:
        """Live rows without a neighbour list, ascending (the rows the text stand-in can reach)."""
        alive = np.asarray(alive, dtype=bool)
        inside = np.flatnonzero(alive[: self.n] & ~self.has_list[: alive.shape[0]])
        return np.concatenate([inside, self.n + np.flatnonzero(alive[self.n:])]) if alive.shape[0] > self.n \
            else inside

    def listless(self, rows: np.ndarray) -> np.ndarray:
        """Which `rows` have no neighbour list (added after the export, or nobody interacted with them)."""
        rows = np.asarray(rows, dtype=np.int64)
        out = rows >= self.n
        inside = ~out
        out[inside] = self.indices[rows[inside], 0] < 0
        return out

    def text_term(self, history: np.ndarray, rows: np.ndarray, text: np.ndarray, signal: Signal) -> np.ndarray:
        """The stand-in signal of `rows` (0 for rows with a list): for an item without a list, what the
        co-occurrence lists would give it if it sat in each history item's list at the similarity warm items
        at its cosine get (`text_cos`/`text_sim`, aligned on warm items by the export), normalised like
        `signal` (by its `top`; by the stand-in's own largest value when the history co-occurs with nothing).
        `text`: unit rows to take cosines in (the catalogue's `unit_vectors`: the item space, where a new
        item sits where its text puts it; measured on MovieLens's cold protocol, the encoder's raw text space
        lifted cold items a fifth as well and, with a weak encoder, lifted them for everyone)."""
        out = np.zeros(rows.shape, dtype=np.float64)
        if self.text_cos is None or self.text_sim is None or rows.size == 0:
            return out
        mask = self.listless(rows)
        if mask.any():
            out[mask] = self.stand_in(history, rows[mask], text, signal)
        return out

    def stand_in(self, history: np.ndarray, rows: np.ndarray, text: np.ndarray, signal: Signal) -> np.ndarray:
        """`text_term` of `rows` that are all without a list (the caller knows: `pipeline._blended` takes them
        from `listless_rows`); zeros where the bundle has no `text_map`."""
        out = np.zeros(rows.shape, dtype=np.float64)
        h = np.asarray(history, dtype=np.int64)[-self.reach:]
        if self.text_cos is None or self.text_sim is None or rows.size == 0 or h.size == 0:
            return out
        cos = text[rows].astype(np.float64) @ text[h].astype(np.float64).T  # [rows, history]
        sim = np.interp(cos, self.text_cos, self.text_sim, left=0.0, right=float(self.text_sim[-1]))  # 0 below
        raw = sim @ self._weights[-h.size:]
        top = signal.top if signal.top > 0 else float(raw.max())
        return raw / top if top > 0 else raw

    def signal(self, history: np.ndarray, alive: np.ndarray) -> Signal:
        """(rows sorted ascending, values in (0, 1], top) of the live items the history co-occurs with; empty when
        nothing does. Recency counts every history item, also those without neighbour lists; items whose
        weight decay^age is below `NEGLIGIBLE` are not read (with decay 0.4, only the latest 11)."""
        h = np.asarray(history, dtype=np.int64)[-self.reach:]
        if h.size == 0:
            return _EMPTY
        known = (h >= 0) & (h < self.n)
        h, weight = h[known], self._weights32[-h.size:][known]
        if h.size == 0:
            return _EMPTY
        idx = self.indices[h].ravel()
        val = (self.scores[h] * weight[:, None]).ravel()
        ok = idx >= 0
        idx, val = idx[ok], val[ok]
        n_rows = alive.shape[0]
        if idx.size * DENSE_RATIO >= n_rows:  # small catalogue: a dense sum is cheaper than sorting
            dense = np.bincount(idx, weights=val, minlength=n_rows)
            dense[~alive] = 0.0
            rows = np.flatnonzero(dense > 0)
            sums = dense[rows]
        else:
            idx = idx.astype(np.int64)
            keep = alive[idx] & (val > 0)
            idx, val = idx[keep], val[keep]
            if idx.size == 0:
                return _EMPTY
            rows, inverse = np.unique(idx, return_inverse=True)
            sums = np.bincount(inverse, weights=val, minlength=rows.size)
        if rows.size == 0:
            return _EMPTY
        top = float(sums.max())
        return Signal(rows, sums / top if top > 0 else sums, top)

    @cached_property
    def _weights(self) -> np.ndarray:
        """float64 [reach]: decay^age of the last `reach` history items, oldest first (the latest weighs 1)."""
        return self.decay ** np.arange(self.reach - 1, -1, -1, dtype=np.float64)

    @cached_property
    def _weights32(self) -> np.ndarray:
        return self._weights.astype(np.float32)

    @cached_property
    def reach(self) -> int:
        """History items the signal reads: `max_history`, fewer when older ones weigh under `NEGLIGIBLE`."""
        if self.decay >= 1.0:
            return self.max_history
        if self.decay <= 0.0:
            return 1
        return int(min(self.max_history, 1 + np.floor(np.log(NEGLIGIBLE) / np.log(self.decay))))

    def remapped(self, alive: np.ndarray) -> Cooccur:
        """The lists for a catalogue renumbered to its live rows (`alive[old row]`; live rows keep their
        order, `Engine.save` and compaction): dead rows' lists dropped, neighbours renamed, dead neighbours
        removed (each list stays best first, -1 padded)."""
        alive = np.asarray(alive, dtype=bool)
        row_map = np.full(alive.size, -1, dtype=np.int64)
        row_map[alive] = np.arange(int(alive.sum()))
        keep = np.flatnonzero(alive[: self.n])
        idx = self.indices[keep].astype(np.int64)
        mapped = np.where(idx >= 0, row_map[np.maximum(idx, 0)], -1)
        score = np.where(mapped >= 0, self.scores[keep], 0.0).astype(np.float32)
        order = np.argsort(mapped < 0, axis=1, kind="stable")  # live neighbours first, their order kept
        return replace(self, indices=np.take_along_axis(mapped, order, axis=1).astype(np.int32),
                       scores=np.take_along_axis(score, order, axis=1))


def dense_signal(rows: np.ndarray, values: np.ndarray, n_rows: int) -> np.ndarray:
    """The signal as a float64 row over the catalogue (0 elsewhere)."""
    out = np.zeros(n_rows, dtype=np.float64)
    out[rows] = values
    return out


def lookup(rows: np.ndarray, values: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Signal values at `wanted` rows (0 where an item has none); `rows` sorted ascending."""
    if rows.size == 0 or wanted.size == 0:
        return np.zeros(wanted.shape, dtype=np.float64)
    pos = np.minimum(np.searchsorted(rows, wanted), rows.size - 1)
    return np.where(rows[pos] == wanted, values[pos], 0.0)


def blend_term(co: Cooccur, signal: Signal, history: np.ndarray, rows: np.ndarray, text: np.ndarray) -> np.ndarray:
    """What the co-occurrence blend adds to the scores of `rows` (before the weight): the signal where an item
    has one, the text stand-in for items without a list."""
    return lookup(signal.rows, signal.values, rows) + co.text_term(history, rows, text, signal)


def check_weight(weight: Any) -> float:
    """A host's `cooccur_weight` override (>= 0, finite)."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not np.isfinite(weight) or weight < 0:
        raise RequestError(f"cooccur_weight must be a finite number >= 0, got {weight!r}")
    return float(weight)


def load_cooccur(reader: Any, n_items: int, weight_override: float | None = None) -> Cooccur | None:
    """The bundle's `cooccur` section (None when the bundle has none), every field checked: a hostile bundle
    gets a `BundleError`, never an index error at request time."""
    spec = reader.manifest.get("cooccur")
    if spec is None:
        return None
    root = reader.root
    if not isinstance(spec, dict):
        raise BundleError(f"{root}: manifest cooccur must be an object")
    for key in ("indices", "scores"):
        if not isinstance(spec.get(key), str):
            raise BundleError(f"{root}: manifest cooccur.{key} must be a path string")
    settings = {}
    for key, low, high in (("weight", 0.0, 1e6), ("decay", 0.0, 1.0)):
        v = spec.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (low <= float(v) <= high):
            raise BundleError(f"{root}: manifest cooccur.{key} must be a number in [{low:g}, {high:g}], got {v!r}")
        settings[key] = float(v)
    mh = spec.get("max_history")
    if isinstance(mh, bool) or not isinstance(mh, int) or not 1 <= mh <= 100_000:
        raise BundleError(f"{root}: manifest cooccur.max_history must be an integer in [1, 100000], got {mh!r}")
    indices = reader.load_npy(spec["indices"])
    scores = reader.load_npy(spec["scores"])
    if indices.ndim != 2 or scores.shape != indices.shape or indices.shape[0] > n_items or indices.shape[1] < 1:
        raise BundleError(f"{root}: {spec['indices']} {indices.shape} and {spec['scores']} {scores.shape} must "
                          f"be the same [n <= {n_items} items, K >= 1] shape")
    if indices.dtype.kind not in "iu" or scores.dtype.kind != "f":
        raise BundleError(f"{root}: {spec['indices']} must hold integers and {spec['scores']} floats")
    indices = indices.astype(np.int32, copy=False)
    scores = scores.astype(np.float32, copy=False)
    if indices.size and (indices.min() < -1 or indices.max() >= n_items):
        raise BundleError(f"{root}: {spec['indices']} names rows outside [-1, {n_items})")
    if scores.size and (not np.all(np.isfinite(scores)) or scores.min() < 0):
        raise BundleError(f"{root}: {spec['scores']} holds negative or non-finite values")
    weight = settings["weight"] if weight_override is None else check_weight(weight_override)
    text_cos, text_sim = _text_map(spec.get("text_map"), root)
    return Cooccur(indices=indices, scores=scores, weight=weight, decay=settings["decay"], max_history=mh,
                   text_cos=text_cos, text_sim=text_sim)


def _text_map(node: Any, root: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    """`cooccur.text_map` ({"cos": [...], "sim": [...]}, optional), checked."""
    if node is None:
        return None, None
    ok = isinstance(node, dict) and all(isinstance(node.get(k), list) for k in ("cos", "sim"))
    if ok:
        try:
            cos = np.asarray(node["cos"], dtype=np.float64)
            sim = np.asarray(node["sim"], dtype=np.float64)
        except (TypeError, ValueError):
            ok = False
    if not ok or cos.ndim != 1 or cos.shape != sim.shape or cos.size < 2 or not np.all(np.isfinite(cos)) \
            or not np.all(np.isfinite(sim)) or np.any(np.diff(cos) < 0) or np.any(np.diff(sim) < 0) or sim.min() < 0:
        raise BundleError(f"{root}: manifest cooccur.text_map must be {{'cos': [...], 'sim': [...]}}: two lists of "
                          "at least 2 finite numbers of the same length, both non-decreasing, sim >= 0")
    return cos, sim


__all__ = ["Cooccur", "Signal", "FILES", "load_cooccur", "dense_signal", "lookup", "blend_term", "check_weight"]
