"""Encode a request's scene and a user's profile into the integer slots the towers were trained on.

Mirrors docs/bundle.md "Scene and profile encoding": slot j holds the index of the value for column j in
`values[column]` (0 = `<unk>` for a missing or unseen value); numeric columns are bucketised with
`numeric_edges` (`1 + searchsorted(edges, x)`, 0 for missing). Unknown *keys* are a request error (a typo
in a scene key would otherwise silently mean "unknown scene").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import BundleError, RequestError, as_number, shown


@dataclass(frozen=True)
class SlotVocab:
    """One vocabulary (scene or profile) as read from the manifest."""

    kind: str
    """"scene" or "profile" (used in messages)."""
    prefix: str
    """"ctx_" or "attr_": accepted keys may omit it."""
    columns: tuple[str, ...]
    values: dict[str, dict[str, int]]
    numeric_edges: dict[str, np.ndarray]
    slots: int

    @classmethod
    def from_manifest(cls, kind: str, prefix: str, node: Any, slots: int) -> SlotVocab:
        if not isinstance(node, dict):
            node = {}
        columns = tuple(node.get("columns", []) or [])
        raw_values = node.get("values", {}) or {}
        edges = node.get("numeric_edges", {}) or {}
        values = {c: {str(v): i for i, v in enumerate(raw_values[c])} for c in columns if c in raw_values}
        numeric = {c: np.asarray(edges[c], dtype=np.float64) for c in columns if c in edges}
        for c in columns:
            if c not in values and c not in numeric:
                raise BundleError(f"vocab.{kind}: column {c!r} has neither values nor numeric_edges")
        if max(1, len(columns)) != int(slots):
            raise BundleError(f"vocab.{kind} has {len(columns)} columns but dims.{kind}_slots is {slots}")
        return cls(kind, prefix, columns, values, numeric, int(slots))

    def column_for(self, key: str) -> str:
        if not isinstance(key, str):
            raise RequestError(f"{self.kind} keys must be strings, got {type(key).__name__}")
        for name in (key, self.prefix + key):
            if name in self.columns:
                return name
        known = ", ".join(c[len(self.prefix):] if c.startswith(self.prefix) else c for c in self.columns) or "none"
        raise RequestError(f"unknown {self.kind} key {shown(key)} (this bundle knows: {known})")

    def encode(self, mapping: Mapping[str, Any] | None) -> np.ndarray:
        """int64 [slots] codes for one request (all zeros when `mapping` is None or empty)."""
        out = np.zeros(self.slots, dtype=np.int64)
        if mapping is None:
            return out
        if not isinstance(mapping, Mapping):
            raise RequestError(f"{self.kind} must be a mapping of key -> value, got {type(mapping).__name__}")
        for key, value in mapping.items():
            col = self.column_for(key)
            j = self.columns.index(col)
            out[j] = self.code(col, value)
        return out

    def encode_table(self, table: Mapping[str, Any], n: int) -> np.ndarray:
        """int64 [n, slots] codes for `n` rows given as columns (`table[column]` -> n values); columns the
        vocabulary does not know are ignored and missing ones are `<unk>` (0). The batch form of `encode`
        (export: training and evaluation data; the bench: held-out events), same rule."""
        out = np.zeros((n, self.slots), dtype=np.int64)
        for j, col in enumerate(self.columns):
            if col not in table:
                continue
            column = table[col]
            if col in self.numeric:
                x = np.asarray(column, dtype=np.float64)
                out[:, j] = np.where(np.isnan(x), 0, 1 + np.searchsorted(self.numeric[col], x))
            else:
                index = self.values[col]
                out[:, j] = [index.get(str(v), 0) if v is not None and str(v) != "" else 0 for v in column]
        return out

    def code(self, col: str, value: Any) -> int:
        if value is None:
            return 0
        if col in self.numeric:
            try:
                x = as_number(value)
            except ValueError:
                raise RequestError(f"{self.kind} value for {col!r} must be a number, got {shown(value)}") from None
            if math.isnan(x):
                return 0
            return int(1 + np.searchsorted(self.numeric[col], x))
        try:
            text = str(value)
        except ValueError:  # an int too long to print: no vocabulary value is that
            raise RequestError(f"{self.kind} value for {col!r} is {shown(value)}, not a known value") from None
        if text == "":
            return 0
        return int(self.values[col].get(text, 0))

    @property
    def numeric(self) -> dict[str, np.ndarray]:
        return self.numeric_edges
