"""String attributes are filtered through integer codes; the answers equal a plain object-array scan."""

from __future__ import annotations

import numpy as np
import pytest

from recengine.filters import Categorical, attr_column, build_mask

VALUES = ["en", "fr", None, "en", "de|fr", "fr", None, "es"]


def _plain(cond):
    """What each predicate means, written out row by row (missing never matches, except ne/not_in)."""
    out = []
    for v in VALUES:
        op, arg = next(iter(cond.items())) if isinstance(cond, dict) else ("eq", cond)
        if op == "eq":
            out.append(v == arg)
        elif op == "ne":
            out.append(v != arg)
        elif op == "in":
            out.append(v in arg)
        elif op == "not_in":
            out.append(v not in arg)
        elif op == "contains":
            out.append(v is not None and arg in v)
    return np.array(out)


def test_strings_become_codes():
    col = attr_column(VALUES)
    assert isinstance(col, Categorical)
    assert col.codes.dtype == np.int32 and (col.codes == -1).sum() == 2
    assert list(col.values) == ["en", "fr", "de|fr", "es"]
    assert isinstance(attr_column([1, None, 2.5]), np.ndarray)


@pytest.mark.parametrize("cond", ["fr", {"ne": "fr"}, {"in": ["en", "es"]}, {"not_in": ["en"]},
                                  {"contains": "fr"}, {"eq": "nope"}])
def test_predicates_match_a_plain_scan(cond):
    col = attr_column(VALUES)
    got = build_mask({"attr_lang": cond}, {}, {"attr_lang": col}, len(VALUES))
    np.testing.assert_array_equal(got, _plain(cond))


def test_numeric_operators_refuse_strings():
    from recengine.errors import RequestError

    with pytest.raises(RequestError, match="numeric"):
        build_mask({"attr_lang": {"lt": 3}}, {}, {"attr_lang": attr_column(VALUES)}, len(VALUES))
