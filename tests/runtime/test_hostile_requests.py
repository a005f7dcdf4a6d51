"""Hostile input at serving time: attribute values save() cannot write, text that is not valid Unicode.

Each is a `RequestError` naming the problem, raised before anything changes, and the engine stays
usable (and saveable) afterwards.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from recengine.attributes import check_attr_value, check_item_attrs
from recengine.errors import RequestError
from recengine.tokenize import check_texts


@pytest.fixture(scope="module")
def engine(lean_bundle: Path):
    from recengine import Engine

    return Engine.open(lean_bundle, device="cpu")


BAD_ATTRS = [float("nan"), float("inf"), -float("inf"), np.float32("nan"), {1, 2}, b"bytes", {"a": 1}, [1, 2],
             (1,), 10**400, object()]


def _attr_id(value: object) -> str:
    return type(value).__name__ + (f"_{value}" if isinstance(value, float) else "")


@pytest.mark.parametrize("value", BAD_ATTRS, ids=_attr_id)
def test_unsaveable_attribute_is_refused(value: object) -> None:
    with pytest.raises(RequestError, match="attr_p"):
        check_attr_value("attr_p", value)


def test_allowed_attributes_become_plain_python_values() -> None:
    out = check_item_attrs({"item_id": "x", "title": "t", "attr_s": "en", "attr_b": True, "attr_i": np.int64(3),
                            "attr_f": np.float32(1.5), "attr_n": None, "attr_bb": np.bool_(False)})
    assert out == {"attr_s": "en", "attr_b": True, "attr_i": 3, "attr_f": 1.5, "attr_n": None, "attr_bb": False}
    assert all(type(v) in (str, bool, int, float, type(None)) for v in out.values())


def test_nan_attribute_no_longer_blocks_save(engine, tmp_path: Path) -> None:
    from recengine import Engine

    n = engine.n_items
    for value in (float("nan"), float("inf"), {"x"}, b"\x00"):
        with pytest.raises(RequestError, match="attr_p"):
            engine.add_items([{"item_id": "bad-attr", "title": "A film", "attr_p": value}])
    assert engine.n_items == n  # nothing was added
    engine.add_items([{"item_id": "good-attr", "title": "A film", "attr_p": 2.5, "attr_q": "x", "attr_r": None}])
    saved = engine.save(tmp_path / "saved")
    reopened = Engine.open(saved, device="cpu")
    assert "good-attr" in reopened.item_ids()
    assert [r.item_id for r in reopened.recommend(k=50, filter={"attr_p": {"gte": 2.0}})] == ["good-attr"]
    engine.remove_items(["good-attr"])


SURROGATES = ["\ud800", "abc \udcff def", "ok\udfff"]


@pytest.mark.parametrize("text", SURROGATES)
def test_lone_surrogates_are_a_request_error(text: str) -> None:
    with pytest.raises(RequestError, match="not valid Unicode"):
        check_texts(["fine", text])


def test_engine_search_and_add_items_refuse_invalid_unicode(engine) -> None:
    n = engine.n_items
    for text in SURROGATES:
        with pytest.raises(RequestError, match="not valid Unicode"):
            engine.search(text)
        with pytest.raises(RequestError, match="not valid Unicode"):
            engine.add_items([{"item_id": "sur", "title": text}])
        with pytest.raises(RequestError, match="not valid Unicode"):
            engine.add_items([{"item_id": "sur", "text": text}])
    assert engine.n_items == n
    assert len(engine.search("comedy", k=3)) == 3  # still serving


def test_valid_non_ascii_text_is_fine(engine) -> None:
    results = engine.search("Amélie 東京 🎬", k=2)
    assert len(results) == 2 and all(math.isfinite(r.score) for r in results)


# ------------------------------------------------------------------ values a fuzzer found (each was not a RequestError)
BIG = 10 ** 400  # float() overflows
HUGE = 10 ** 5000  # str() and repr() raise ValueError (past 4,300 digits)


@pytest.mark.parametrize("kwargs", [
    {"profile": {"age": BIG}},
    {"profile": {"age": HUGE}},
    {"scene": {"daypart": HUGE}},
    {"filter": {"runtime": BIG}},
    {"filter": {"runtime": {"lt": BIG}}},
    {"filter": {"runtime": {"in": [BIG]}}},
    {"filter": {"studio": HUGE}},
    {"filter": {"studio": {"contains": HUGE}}},
    {"filter": {"runtime": {HUGE: 1}}},
    {"long_tail": 10 ** 30},
    {"diversity": HUGE},
    {"fresh": BIG},
    {"k": HUGE},
    {"candidates": HUGE},
    {"history": [HUGE]},
    {"user_id": HUGE},
    {"scene": np.array([1, 2])},
    {"profile": np.array([1, 2])},
    {"exclude_seen": np.array([True, False])},
    {"explain": np.array([1, 2])},
    {"explain": "yes"},
])
def test_hostile_request_values_are_request_errors(engine, kwargs: dict) -> None:
    with pytest.raises(RequestError) as err:
        engine.recommend(**kwargs)
    assert len(str(err.value)) < 400  # the message names the problem without echoing the value whole
    assert engine.recommend(k=3)  # still serving


def test_hostile_group_and_similar_values_are_request_errors(engine) -> None:
    users = engine.user_ids()[:2]
    for kwargs in ({"strategy": np.array(["average"])}, {"strategy": HUGE}, {"exclude_seen": np.array([1])}):
        with pytest.raises(RequestError):
            engine.recommend_group(users, **kwargs)
    with pytest.raises(RequestError):
        engine.similar_items(engine.item_ids()[0], filter={"runtime": {"gte": BIG}})


@pytest.mark.parametrize("path", [None, 1, "", "   ", "a\x00b", "x" * 300])
def test_save_to_a_hostile_path_is_a_bundle_error(engine, path: object) -> None:
    from recengine.errors import BundleError

    with pytest.raises(BundleError):
        engine.save(path)  # type: ignore[arg-type]
    with pytest.raises(BundleError):
        engine.reload(path if path is not None else 1)  # type: ignore[arg-type]
    assert engine.recommend(k=3)


def test_save_force_replaces_bundles_only(engine, tmp_path: Path) -> None:
    from recengine.errors import BundleError

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("x")
    with pytest.raises(BundleError, match="not a recengine bundle"):
        engine.save(mine, force=True)
    assert (mine / "keep.txt").read_text() == "x"
    first = engine.save(tmp_path / "b1")
    assert engine.save(first, force=True) == first  # a bundle is replaced
    (tmp_path / "empty").mkdir()
    assert engine.save(tmp_path / "empty", force=True).joinpath("manifest.json").is_file()


def test_ids_are_stripped_as_the_loader_strips_them(lean_bundle: Path) -> None:
    """The data loader strips every id it reads, so a padded id from a host names the same user or item;
    an id of whitespace alone is empty."""
    from recengine import Engine

    engine = Engine.open(lean_bundle, device="cpu", threads=1)
    user, items = engine.user_ids()[0], engine.item_ids()
    assert [r.item_id for r in engine.recommend(user_id=f"  {user}\t", k=5)] == \
        [r.item_id for r in engine.recommend(user_id=user, k=5)]
    assert engine.history(f" {user} ") == engine.history(user)
    assert [r.item_id for r in engine.similar_items(f" {items[3]} ", k=3)] == \
        [r.item_id for r in engine.similar_items(items[3], k=3)]
    got = engine.recommend(history=[f" {items[0]}", f"{items[1]} "], k=5)
    assert not got.skipped and [r.item_id for r in got] == \
        [r.item_id for r in engine.recommend(history=items[:2], k=5)]
    engine.update_user(f" {user} ", [f" {items[7]} "])
    assert engine.history(user)[-1] == items[7] and f" {user} " not in engine.user_ids()
    engine.add_items([{"item_id": "  fresh-1 ", "text": "a new item"}])
    assert "fresh-1" in engine.item_ids()
    assert engine.remove_items([" fresh-1"]) == 1
    for bad in ("", "   ", "\t\n"):
        with pytest.raises(RequestError, match="must not be empty"):
            engine.recommend(user_id=bad)


def test_filter_ids_are_stripped(engine) -> None:
    items = engine.item_ids()
    got = engine.recommend(user_id=engine.user_ids()[0], k=3, filter={"ids": [f" {items[5]} ", items[6]]},
                           exclude_seen=False)
    assert {r.item_id for r in got} == {items[5], items[6]}
