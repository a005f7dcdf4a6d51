"""The one rule for item attribute values (`attr_*`) that enter the catalogue at serving time.

Why a rule on the way in: attributes are kept as given and written to `items/attrs.json` by `Engine.save`,
which writes strict JSON (no NaN/inf: other languages' parsers reject them). A value that cannot be
written - NaN, inf, a set, bytes, a nested object - used to be accepted by `add_items` and then made every
later `save()` fail until that item was removed. Refusing it up front keeps the engine saveable.

What is allowed is what the catalogue can store, filter on and save (`recengine.filters.attr_column`
keeps an attribute as float64 when all values are numbers or missing, else as strings):
`str`, `bool`, finite `int`/`float` (including NumPy scalars, converted to Python values) and `None`
(missing). Integers must also convert to a finite float (filters compare numbers as float64).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import RequestError

ATTR_PREFIX = "attr_"


def check_attr_value(name: str, value: Any, where: str = "item") -> str | bool | int | float | None:
    """`value` as a plain Python scalar the catalogue can store and save, or a `RequestError` naming it."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        number: int | float = int(value)
        try:
            float(number)
        except OverflowError:
            raise RequestError(f"{where}: attribute {name!r} is an integer too large for a float64") from None
        return number
    if isinstance(value, (float, np.floating)):
        number = float(value)
        if not math.isfinite(number):
            raise RequestError(f"{where}: attribute {name!r} is {number!r}; attribute numbers must be finite "
                               "(use None for a missing value)")
        return number
    raise RequestError(f"{where}: attribute {name!r} is a {type(value).__name__}; attribute values must be "
                       "str, bool, a finite number or None")


def check_item_attrs(item: Mapping[Any, Any], where: str = "item") -> dict[str, Any]:
    """The `attr_*` entries of one item mapping, each checked by `check_attr_value` (other keys ignored)."""
    return {key: check_attr_value(key, value, where) for key, value in item.items()
            if isinstance(key, str) and key.startswith(ATTR_PREFIX)}
