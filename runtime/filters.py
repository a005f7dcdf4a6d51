"""Request filters turned into one boolean mask over catalogue rows, vectorised.

A filter is a mapping: `{"ids": [...]}` restricts to those item ids (unknown ids are ignored), and any
`attr_*` key (the `attr_` prefix may be omitted) takes a predicate on that attribute:

- a scalar: equality (`{"attr_lang": "en"}`),
- a list/tuple/set: membership (`{"attr_lang": ["en", "fr"]}`),
- a dict of operators: `eq`, `ne`, `in`, `not_in`, `lt`, `lte`, `gt`, `gte`, `contains` (substring of a
  string attribute, e.g. a genre in a "a|b|c" list).

All predicates are and-ed. Missing attribute values never match (except `ne`/`not_in`). The engine
never hands a Python callable to hnswlib: it either scans the allowed subset exactly (small subsets) or
over-fetches from the index and post-filters with this mask (see `recengine.retrieval`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import RequestError, as_number, shown

_OPS = ("eq", "ne", "in", "not_in", "lt", "lte", "gt", "gte", "contains")


@dataclass(frozen=True)
class Categorical:
    """A string attribute as integer codes into its distinct values (-1 = missing): a filter compares small
    integers instead of Python strings (at 310k items an object-array `isin` took 6.9 ms of a 7.6 ms
    filtered `recommend`), and `contains` tests each distinct value once."""

    codes: np.ndarray
    """int32 [rows]"""
    values: np.ndarray
    """object [n distinct] of str"""

    def __getitem__(self, rows: Any) -> Categorical:
        return Categorical(self.codes[rows], self.values)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.codes.shape

    def matching(self, hit: np.ndarray) -> np.ndarray:
        """Rows whose value is one of the distinct values flagged in `hit` (missing never matches)."""
        lookup = np.append(np.asarray(hit, dtype=bool), False)  # code -1 -> the trailing False
        return lookup[self.codes]


def _is_numeric(column: Any) -> bool:
    return not isinstance(column, Categorical) and column.dtype.kind in "fiu"


def _predicate(name: str, column: np.ndarray, op: str, arg: Any) -> np.ndarray:
    numeric = _is_numeric(column)
    if op in ("lt", "lte", "gt", "gte"):
        if not numeric:
            raise RequestError(f"filter {name}: {op} needs a numeric attribute")
        try:
            x = as_number(arg)
        except ValueError:
            raise RequestError(f"filter {name}: {op} needs a number, got {shown(arg)}") from None
        with np.errstate(invalid="ignore"):
            return {"lt": column < x, "lte": column <= x, "gt": column > x, "gte": column >= x}[op]
    if op in ("eq", "ne"):
        mask = _membership(name, column, [arg], numeric)
        if op == "ne":
            return ~mask
        return mask
    if op in ("in", "not_in"):
        if isinstance(arg, (str, bytes)) or not hasattr(arg, "__iter__"):
            raise RequestError(f"filter {name}: {op} needs a list of values, got {shown(arg)}")
        mask = _membership(name, column, list(arg), numeric)
        return ~mask if op == "not_in" else mask
    if op == "contains":
        if numeric:
            raise RequestError(f"filter {name}: contains needs a string attribute")
        needle = _text(name, arg)
        if isinstance(column, Categorical):
            return column.matching(np.fromiter((needle in v for v in column.values), dtype=bool,
                                               count=column.values.shape[0]))
        return np.fromiter((isinstance(v, str) and needle in v for v in column), dtype=bool, count=column.shape[0])
    raise RequestError(f"filter {name}: unknown operator {shown(op)} (known: {', '.join(_OPS)})")


def _text(name: str, value: Any) -> str:
    """str(value) for a string attribute's comparison; an int too long to print is a RequestError."""
    try:
        return str(value)
    except ValueError:
        raise RequestError(f"filter {name}: cannot compare a string attribute with {shown(value)}") from None


def _membership(name: str, column: np.ndarray, values: list[Any], numeric: bool) -> np.ndarray:
    if numeric:
        try:
            wanted = np.asarray([as_number(v) for v in values], dtype=np.float64)
        except ValueError:
            raise RequestError(f"filter {name}: numeric attribute compared with {shown(values)}") from None
        return np.isin(column, wanted)
    wanted_str = {_text(name, v) for v in values}
    if isinstance(column, Categorical):
        return column.matching(np.fromiter((v in wanted_str for v in column.values), dtype=bool,
                                           count=column.values.shape[0]))
    return np.isin(column, np.asarray(sorted(wanted_str), dtype=object))


def build_mask(spec: Mapping[str, Any] | None, row_of: Mapping[str, int], attrs: Mapping[str, np.ndarray],
               n_rows: int) -> np.ndarray | None:
    """Boolean [n_rows] mask of the rows a filter allows, or None when there is no filter."""
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise RequestError(f"filter must be a mapping (e.g. {{'ids': [...]}}), got {type(spec).__name__}")
    mask = np.ones(n_rows, dtype=bool)
    for key, cond in spec.items():
        if not isinstance(key, str):
            raise RequestError(f"filter keys must be strings, got {shown(key)}")
        if key == "ids":
            if isinstance(cond, (str, bytes)) or not hasattr(cond, "__iter__"):
                raise RequestError("filter ids must be a list of item id strings")
            wanted = (i.strip() for i in cond if isinstance(i, str))  # ids stripped, as `requests.check_id`
            rows = [row_of[i] for i in wanted if i in row_of]
            allowed = np.zeros(n_rows, dtype=bool)
            if rows:
                allowed[np.asarray(rows, dtype=np.int64)] = True
            mask &= allowed
            continue
        name = key if key in attrs else f"attr_{key}"
        if name not in attrs:
            known = ", ".join(sorted(attrs)) or "none"
            raise RequestError(f"filter on unknown attribute {shown(key)} (this catalogue has: {known})")
        column = attrs[name][:n_rows]
        if isinstance(cond, Mapping):
            for op, arg in cond.items():
                mask &= _predicate(name, column, op if isinstance(op, str) else shown(op), arg)
        elif isinstance(cond, (list, tuple, set, frozenset)):
            mask &= _predicate(name, column, "in", cond)
        else:
            mask &= _predicate(name, column, "eq", cond)
    return mask


def attr_column(values: list[Any]) -> np.ndarray | Categorical:
    """One attribute as float64 (all numbers / missing; NaN = missing) or, for strings, a `Categorical`."""
    if all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values):
        return np.asarray([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    index: dict[str, int] = {}
    codes = np.fromiter((-1 if v is None else index.setdefault(str(v), len(index)) for v in values),
                        dtype=np.int32, count=len(values))
    return Categorical(codes, np.asarray(list(index), dtype=object))
