"""How an item's text is built from its columns.

Shared by the export stage (catalogue) and the runtime (`Engine.add_items`), so an item added live is
encoded from exactly the same kind of text as the catalogue was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: Columns that are never text: ids, attributes and vectors.
RESERVED_COLUMNS = frozenset({"item_id"})


def is_text_column(name: str) -> bool:
    """Whether a catalogue column takes part in the item text (any non-`attr_` column but the id)."""
    return name not in RESERVED_COLUMNS and not name.startswith("attr_") and not name.startswith("ctx_")


def is_missing(value: Any) -> bool:
    """None, NaN, NaT and pandas.NA (whose truth value is "ambiguous") are missing; lists never are."""
    if value is None:
        return True
    if isinstance(value, (list, tuple, np.ndarray)):
        return False
    try:
        return bool(value != value)
    except (TypeError, ValueError):
        return True


def _clean(value: Any) -> str:
    """One cell as a single line of text; list cells (Parquet list columns, e.g. tags) join with ", "."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return ", ".join(part for part in (_clean(v) for v in value) if part)
    if is_missing(value):
        return ""
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
    return " ".join(text.split())


def build_item_text(row: Mapping[str, Any], text_columns: Sequence[str]) -> str:
    """Join the non-empty text columns of one item as "column: value" lines, in `text_columns` order."""
    lines = []
    for col in text_columns:
        value = _clean(row.get(col))
        if value:
            lines.append(f"{col}: {value}")
    return "\n".join(lines)


def line_value(line: str) -> str:
    """The value of one "column: value" line of an item text (`build_item_text`), the line itself when it has
    no such prefix (a text added live may be free-form)."""
    return line.split(": ", 1)[1] if ": " in line else line
