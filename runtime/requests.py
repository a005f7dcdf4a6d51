"""What a host sends and gets back: request/result types and the argument checks every entry point shares.

Checks raise `RequestError` naming the argument, so a bad request never reaches a model or an index.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from .errors import RequestError, as_number, shown

MAX_K = 10_000
MAX_CANDIDATES = 100_000
MAX_QUERY_CHARS = 4096
"""Longest `search` text, in characters: the encoder reads only its first `max_length` tokens (128-256 on the
bundles measured) yet tokenises the whole text first, and BM25 looks up every word, so a 1 MB text cost 0.7-1.8 s
a search (MovieLens bundle, 2026-12-01) for nothing; `recengine serve` caps request text fields at the same
length."""
GROUP_STRATEGIES = ("average", "least_misery", "max_pleasure")


@dataclass(frozen=True)
class Recommendation:
    """One ranked result: the item id, its score (higher is better) and, with `explain=True`, why."""

    item_id: str
    score: float
    reason: str | None = None


class Recommendations(list):
    """A ranked list of `Recommendation` that also says how it was made.

    `source` is "stored" (the user's stored vector), "history" (user tower over a history), "cold"
    (user tower over scene/profile only), "popular" (no usable signal: most popular items), "group",
    "item" (similar items) or "search"; `skipped` lists ids that were unknown (or removed) and ignored.
    """

    source: str = "stored"
    skipped: tuple[Any, ...] = ()


@dataclass(frozen=True)
class RecommendRequest:
    """The arguments of `Engine.recommend`, for `recommend_batch` (plain dicts are accepted too)."""

    user_id: str | None = None
    history: Sequence[str] | None = None
    scene: Mapping[str, Any] | None = None
    profile: Mapping[str, Any] | None = None
    k: int = 10
    exclude_seen: bool = True
    filter: Mapping[str, Any] | None = None
    candidates: int | None = None
    long_tail: float = 0.0
    diversity: float = 0.0
    explain: bool = False
    fresh: float = 0.0
    """Share of the k slots reserved for fresh items (fewer than `Engine.open(fresh_below=)` interactions,
    e.g. items just added): up to round(fresh * k) (at least 1 when fresh > 0) of them, the best by score,
    replace the last non-fresh items of the list when fewer have earned a place. 0 = off."""


@dataclass(frozen=True)
class RowQuery:
    """A request already resolved to catalogue rows and vocabulary codes, for `Engine.score_catalogue`
    (offline evaluation, where the split is held as row numbers): the user tower reads `history`
    (item rows, oldest first) in `scene` with `profile` (int64 codes, see `recengine.vocab`); `exclude`
    rows are never ranked (the user's known items)."""

    history: np.ndarray
    scene: np.ndarray
    profile: np.ndarray
    exclude: np.ndarray
    fresh: float = 0.0
    """As `RecommendRequest.fresh`, with the slots counted over the first `k` rows."""
    k: int = 10
    long_tail: float = 0.0
    """As `RecommendRequest.long_tail` (the re-scored candidates are ranked after the boost)."""


@dataclass(frozen=True)
class UpdateResult:
    """What `update_user` did: events appended, ids skipped (unknown/removed), new history length."""

    user_id: str
    appended: int
    skipped: tuple[Any, ...]
    history_length: int
    created: bool


def check_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise RequestError(f"{name} must be an integer, got {shown(value)}")
    if not low <= int(value) <= high:
        raise RequestError(f"{name} must be between {low} and {high}, got {shown(int(value))}")
    return int(value)


def check_float(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise RequestError(f"{name} must be a number, got {shown(value)}")
    try:
        x = as_number(value)
    except ValueError:  # an int past float64's range
        raise RequestError(f"{name} must be between {low} and {high}, got {shown(value)}") from None
    if not (low <= x <= high):
        raise RequestError(f"{name} must be between {low} and {high}, got {shown(value)}")
    return x


def check_flag(name: str, value: Any) -> bool:
    """A yes/no option: a bool (or NumPy bool), never an array or other object whose truth is ambiguous."""
    if not isinstance(value, (bool, np.bool_)):
        raise RequestError(f"{name} must be true or false, got {shown(value)}")
    return bool(value)


def check_id(name: str, value: Any) -> str:
    """A request's id as the catalogue keys it: stripped of surrounding whitespace, as the data loader strips
    every id it reads (one rule, so " 42 " from a host names the item the file called "42 ")."""
    if not isinstance(value, str):
        raise RequestError(f"{name} must be a string id, got {type(value).__name__} {shown(value)}")
    value = value.strip()
    if not value:
        raise RequestError(f"{name} must not be empty")
    return value


def check_ids(name: str, values: Any) -> list[str]:
    """A list of ids, each stripped as `check_id` does (an empty one stays, as an id nothing has)."""
    if values is None or isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise RequestError(f"{name} must be a list of string ids, got {shown(values)}")
    out = list(values)
    for i, v in enumerate(out):
        if not isinstance(v, str):
            raise RequestError(f"{name}[{i}] must be a string id, got {type(v).__name__} {shown(v)}")
    return [v.strip() for v in out]


def as_request(r: Any, i: int) -> RecommendRequest:
    """A `RecommendRequest` from a request object or a dict of its fields (unknown fields refused)."""
    if isinstance(r, RecommendRequest):
        return r
    if isinstance(r, Mapping):
        unknown = set(r) - {f.name for f in fields(RecommendRequest)}
        if unknown:
            raise RequestError(f"request {i}: unknown fields {sorted(map(str, unknown))}")
        return RecommendRequest(**r)
    raise RequestError(f"request {i} must be a RecommendRequest or a dict, got {type(r).__name__}")


def as_requests(requests: Any) -> list[RecommendRequest]:
    if isinstance(requests, (str, bytes, Mapping)) or not isinstance(requests, Sequence):
        raise RequestError("recommend_batch expects a list of requests (RecommendRequest or dicts)")
    return [as_request(r, i) for i, r in enumerate(requests)]


__all__ = ["Recommendation", "Recommendations", "RecommendRequest", "RowQuery", "UpdateResult", "MAX_K",
           "MAX_CANDIDATES", "MAX_QUERY_CHARS", "GROUP_STRATEGIES", "check_int", "check_float", "check_flag",
           "check_id", "check_ids", "as_request", "as_requests"]
