"""Format 2 (item arrays held by their HNSW index), the deferred index load, the background BM25 build and
the parallel checksum verification of `Engine.open` (issue 14: open time and footprint)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from recengine import Engine
from recengine.bundle import open_bundle
from recengine.bundle.format import FORMAT_VERSION, INDEX_SOURCE, index_holding
from recengine.bundle.schema import check_depth, check_json_file
from recengine.errors import BundleError
from recengine.hnsw_file import check_hnsw_file, read_vectors
from recengine.index_io import DeferredIndex
from recengine.lexical import LexicalIndex
from tests.fixtures.hostile_bundles import copy_bundle, edit_manifest, read_manifest, refresh_checksum


def format2(src: Path, dst: Path) -> Path:
    """`src` rewritten as the export now writes it: items.vectors / items.text_embeddings name the index
    files, their .npy copies removed (the same rewrite as bench/results/...open-footprint.../to_format2.py)."""
    bundle = copy_bundle(src, dst)

    def edit(m: dict) -> None:
        for space, key in INDEX_SOURCE.items():
            old = m["items"][key]
            m["items"][key] = m["index"][space]["path"]
            del m["files"][old]
            (bundle / old).unlink()

    edit_manifest(bundle, edit)
    return bundle


def arrays(engine: Engine) -> dict[str, np.ndarray]:
    cat = engine._state.catalogue  # noqa: SLF001 - comparing what two engines hold
    return {key: cat.array(key).copy() for key in cat.ARRAYS}


@pytest.fixture()
def f2(lean_bundle: Path, tmp_path: Path) -> Path:
    return format2(lean_bundle, tmp_path / "f2")


def test_format2_serves_exactly_what_format1_serves(lean_bundle: Path, f2: Path) -> None:
    assert not (f2 / "items" / "vectors.npy").exists() and not (f2 / "items" / "text_embeddings.npy").exists()
    old, new = Engine.open(lean_bundle, device="cpu"), Engine.open(f2, device="cpu")
    a, b = arrays(old), arrays(new)
    for key in a:
        assert np.array_equal(a[key], b[key]), key  # bit for bit: hnswlib's ip space stores vectors as given
    user = old.user_ids()[0]
    assert [(r.item_id, r.score) for r in old.recommend(user_id=user, k=8)] == \
        [(r.item_id, r.score) for r in new.recommend(user_id=user, k=8)]
    assert [r.item_id for r in old.search("the movie", k=5)] == [r.item_id for r in new.search("the movie", k=5)]


def test_format2_rows_are_read_in_the_checking_pass(f2: Path) -> None:
    reader = open_bundle(f2)
    spec = reader.manifest["index"]["text"]
    rows = reader.load_npy(reader.manifest["items"]["text_embeddings"])
    assert reader.checked_indexes == {spec["path"]}
    assert rows.shape == (reader.manifest["data"]["n_items"], reader.manifest["dims"]["text"])
    assert np.array_equal(rows, read_vectors(f2 / spec["path"], spec["dim"]))
    assert index_holding(reader.manifest, "index/items.hnsw") == "item"
    assert index_holding(reader.manifest, "items/ids.json") is None


def test_save_keeps_format2_and_live_changes(f2: Path, tmp_path: Path) -> None:
    engine = Engine.open(f2, device="cpu")
    engine.add_items([{"item_id": "new-1", "title": "A brand new film", "genres": "Drama"}])
    engine.reencode_items(engine.item_ids()[:5])
    expected = arrays(engine)
    out = engine.save(tmp_path / "saved")
    manifest = read_manifest(out)
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["items"]["vectors"] == manifest["index"]["item"]["path"]
    assert manifest["items"]["text_embeddings"] == manifest["index"]["text"]["path"]
    assert not (out / "items" / "vectors.npy").exists() and not (out / "items" / "text_embeddings.npy").exists()
    again = arrays(Engine.open(out, device="cpu"))
    for key in expected:
        assert np.array_equal(expected[key], again[key]), key


def test_save_of_an_unchanged_engine_copies_the_index_unloaded(f2: Path, tmp_path: Path) -> None:
    engine = Engine.open(f2, device="cpu")
    text = engine._state.text_index.hnsw  # noqa: SLF001
    assert isinstance(text, DeferredIndex) and not text.loaded  # 160 items: search is exact at batch 1
    out = engine.save(tmp_path / "saved")
    assert not text.loaded
    assert (out / "index" / "text.hnsw").read_bytes() == (f2 / "index" / "text.hnsw").read_bytes()


def test_an_array_may_only_name_the_index_built_over_it(f2: Path) -> None:
    def swap(m: dict) -> None:
        m["items"]["vectors"] = m["index"]["text"]["path"]

    edit_manifest(f2, swap)
    with pytest.raises(BundleError, match="items.vectors names index/text.hnsw, the file of index.text"):
        Engine.open(f2, device="cpu")


def test_a_damaged_index_holding_rows_is_refused(f2: Path) -> None:
    header = check_hnsw_file(f2 / "index" / "text.hnsw", read_manifest(f2)["index"]["text"]["dim"])
    raw = bytearray((f2 / "index" / "text.hnsw").read_bytes())
    at = 96 + header.offset_data  # the first element's first vector value
    raw[at:at + 4] = np.float32(np.nan).tobytes()
    (f2 / "index" / "text.hnsw").write_bytes(bytes(raw))
    refresh_checksum(f2, "index/text.hnsw")
    for verify in (True, False):
        with pytest.raises(BundleError, match="non-finite"):
            Engine.open(f2, device="cpu", verify=verify)


def test_rows_held_by_an_index_must_match_n_items(f2: Path) -> None:
    def edit(m: dict) -> None:
        m["data"]["n_items"] += 1
        m["index"]["text"].pop("count", None)
        m["index"]["item"].pop("count", None)

    edit_manifest(f2, edit)
    with pytest.raises(BundleError):
        Engine.open(f2, device="cpu")


# ------------------------------------------------------------------------------ deferred index load
def test_index_is_checked_at_open_and_loaded_on_first_use(lean_bundle: Path) -> None:
    """160 items: batch-1 queries are served exactly, so hnswlib loads an index only when it is used."""
    engine = Engine.open(lean_bundle, device="cpu")
    eager = Engine.open(lean_bundle, device="cpu", retrieval="hnsw")  # a batch-1 query uses it: loaded at open
    item = engine._state.items_index.hnsw  # noqa: SLF001
    assert isinstance(item, DeferredIndex) and not item.loaded
    assert not isinstance(eager._state.items_index.hnsw, DeferredIndex)  # noqa: SLF001
    assert engine.index_forms() == eager.index_forms()  # known from the manifest, still not loaded
    engine.search("the movie", k=5)
    engine.recommend(user_id=engine.user_ids()[0], k=5)
    assert not item.loaded
    queries = engine._state.users.vectors[:3]  # noqa: SLF001
    rows, _ = engine.stages().retrieve(queries, 6, backend="hnsw")
    assert item.loaded
    assert np.array_equal(rows, eager.stages().retrieve(queries, 6, backend="hnsw")[0])


def test_text_index_loads_on_first_search_or_warmup_never_at_open(lean_bundle: Path) -> None:
    """`recommend` never reads the text space, so even where a batch-1 search uses its HNSW index
    (`retrieval="hnsw"`, or a catalogue past the exact budget) hnswlib loads it on first use or in `warmup`,
    not in `Engine.open` (~0.8 s of the 5 s open at 1M items); the item index still loads at open."""
    engine = Engine.open(lean_bundle, device="cpu", retrieval="hnsw")
    text = engine._state.text_index.hnsw  # noqa: SLF001
    assert isinstance(text, DeferredIndex) and not text.loaded
    assert not isinstance(engine._state.items_index.hnsw, DeferredIndex)  # noqa: SLF001
    engine.recommend(user_id=engine.user_ids()[0], k=5)
    assert not text.loaded
    first = engine.search("the movie", k=5)
    assert text.loaded
    warmed = Engine.open(lean_bundle, device="cpu", retrieval="hnsw")
    warmed.warmup()
    assert warmed._state.text_index.hnsw.loaded  # noqa: SLF001
    assert [r.item_id for r in warmed.search("the movie", k=5)] == [r.item_id for r in first]
    exact = Engine.open(lean_bundle, device="cpu")  # 160 items: search is exact, warmup loads nothing
    exact.warmup()
    assert not exact._state.text_index.hnsw.loaded  # noqa: SLF001


def test_deferred_load_reads_the_file_opened_at_open(lean_bundle: Path, tmp_path: Path) -> None:
    """A bundle replaced on disk after open (save(force=True) swaps directories) cannot hand the engine
    another bundle's index: the load reads the file opened at open."""
    if not os.path.exists("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd (Linux)")
    bundle = copy_bundle(lean_bundle, tmp_path / "b")
    engine = Engine.open(bundle, device="cpu")
    shutil.rmtree(bundle)
    bundle.mkdir()
    rows, _ = engine.stages().retrieve(engine._state.users.vectors[:2], 5, backend="hnsw")  # noqa: SLF001
    assert rows.shape == (2, 5) and engine._state.items_index.hnsw.loaded  # noqa: SLF001


# ------------------------------------------------------------------------------ background BM25 build
def test_background_lexical_index_equals_a_synchronous_one(lean_bundle: Path) -> None:
    engine = Engine.open(lean_bundle, device="cpu")
    assert engine.wait_ready(timeout=60)
    cat = engine._state.catalogue  # noqa: SLF001
    built = LexicalIndex.build(cat.texts, cat.alive)
    lexical = engine._state.lexical  # noqa: SLF001
    for query in ("the movie", "toy story", "drama"):
        assert np.array_equal(lexical.scores(query, cat.n_rows), built.scores(query, cat.n_rows))


def test_writes_right_after_open_wait_for_the_build(lean_bundle: Path) -> None:
    """An item added (and one removed) before the background build finished is indexed once, not twice."""
    engine = Engine.open(lean_bundle, device="cpu")
    gone = engine.item_ids()[0]
    engine.add_items([{"item_id": "zz-new", "title": "Zyzzyva adventures", "genres": "Comedy"}])
    engine.remove_items([gone])
    st = engine._state  # noqa: SLF001
    assert st.lexical.n_live == st.catalogue.n_alive
    fresh = LexicalIndex.build(st.catalogue.texts, st.catalogue.alive)
    assert np.allclose(st.lexical.scores("zyzzyva adventures", st.catalogue.n_rows),
                       fresh.scores("zyzzyva adventures", st.catalogue.n_rows))
    assert engine.search("Zyzzyva adventures", k=1)[0].item_id == "zz-new"


# ------------------------------------------------------------------------------ verification, JSON checks
def test_parallel_verification_names_the_damaged_file(lean_bundle: Path, tmp_path: Path) -> None:
    bundle = copy_bundle(lean_bundle, tmp_path / "b")
    path = bundle / "users" / "history_items.npy"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="users/history_items.npy has been modified or corrupted"):
        Engine.open(bundle, device="cpu")
    with pytest.raises(BundleError, match="users/history_items.npy has been modified or corrupted"):
        open_bundle(bundle)


def test_flat_json_fast_paths_still_refuse_what_they_must() -> None:
    check_depth(["a"] * 1000, "ids")
    check_depth({"attr_x": [1, None, "a", 2.5, True]}, "attrs")
    deep: list = []
    node = deep
    for _ in range(70):
        node.append([])
        node = node[0]
    with pytest.raises(BundleError, match="nested deeper"):
        check_depth(["a", "b", deep], "ids")
    manifest = {"data": {"n_items": 3}, "items": {"ids": "items/ids.json", "attrs": "items/attrs.json"}}
    check_json_file(manifest, "items/ids.json", ["a", "b", "c"])
    for bad in (["a", "b", 3], ["a", "b", None], ["a", ["b"], "c"]):
        with pytest.raises(BundleError, match="must be a list of strings"):
            check_json_file(manifest, "items/ids.json", bad)
    with pytest.raises(BundleError, match="attr_x must be a list"):
        check_json_file(manifest, "items/attrs.json", {"attr_x": ["a", {"b": 1}, None]})
    check_json_file(manifest, "items/attrs.json", {"attr_x": ["a", 1.5, None]})


def test_old_major_versions_still_open_and_unknown_ones_do_not(lean_bundle: Path, tmp_path: Path) -> None:
    bundle = copy_bundle(lean_bundle, tmp_path / "b")
    edit_manifest(bundle, lambda m: m.update(format_version="1.0"))
    assert Engine.open(bundle, device="cpu").n_items > 0
    edit_manifest(bundle, lambda m: m.update(format_version="3.0"))
    with pytest.raises(BundleError, match=r"format version 3.0 is not supported by this recengine \(reads 1.x and"):
        Engine.open(bundle, device="cpu")
    assert json.loads((bundle / "manifest.json").read_text())["format_version"] == "3.0"


# ------------------------------------------------------------------------------ the text index rule
def test_text_index_is_wanted_only_past_the_scan_budget() -> None:
    """`search` scans the text space exactly up to `EXACT_BUDGET` items at batch 1 (`TEXT_SCAN_DIM`), so a
    bundle carries a text index only past it, unless its config says "hnsw" (always) or "scan" (never)."""
    from recengine.retrieval import EXACT_BUDGET, text_index_wanted

    assert not text_index_wanted(EXACT_BUDGET) and text_index_wanted(EXACT_BUDGET + 1)
    assert text_index_wanted(10, "hnsw") and not text_index_wanted(10 * EXACT_BUDGET, "scan")
    with pytest.raises(ValueError, match="auto, hnsw, scan"):
        text_index_wanted(10, "always")


def _auto(bundle: Path, min_recall: float | None = None) -> Path:
    """`bundle` with the export's default text index rule ("auto") in its config."""
    def edit(m: dict) -> None:
        m["config"]["index"] = {"text": "auto", **({"min_recall": min_recall} if min_recall else {})}

    edit_manifest(bundle, edit)
    return bundle


def test_save_drops_a_text_index_the_catalogue_does_not_need(lean_bundle: Path, tmp_path: Path) -> None:
    """160 items are scanned: the saved bundle stores the text rows as a float16 `.npy` instead of an index
    (docs/bundle.md "Text embeddings"), and serves the same search."""
    src = _auto(copy_bundle(lean_bundle, tmp_path / "src"))
    engine = Engine.open(src, device="cpu")
    queries = ["the movie", "drama", engine._state.catalogue.texts[7][:30]]  # noqa: SLF001
    before = [[r.item_id for r in engine.search(q, k=5)] for q in queries]
    out = engine.save(tmp_path / "saved")
    manifest = read_manifest(out)
    assert "text" not in manifest["index"] and "item" in manifest["index"]
    assert manifest["items"]["text_embeddings"] == "items/text_embeddings.npy"
    assert not (out / "index" / "text.hnsw").exists()
    stored = np.load(out / "items" / "text_embeddings.npy")
    assert stored.dtype == np.float16
    again = Engine.open(out, device="cpu")
    served = again._state.catalogue.text_embeddings  # noqa: SLF001
    assert served.dtype == np.float32 and again._state.text_index.hnsw is None  # noqa: SLF001
    assert np.abs(served - engine._state.catalogue.text_embeddings).max() < 1e-3  # noqa: SLF001
    assert [[r.item_id for r in again.search(q, k=5)] for q in queries] == before


def test_save_builds_the_text_index_once_the_catalogue_passes_the_budget(lean_bundle: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A catalogue grown past the scan budget by `add_items` is saved with a text index, built as the export
    builds one: its ef calibrated on search-like queries the bundle's own encoder encodes."""
    import recengine.retrieval as retrieval
    from recengine.index_io import EF_LADDER, PROBE_QUERIES, calibrate_ef, query_like

    small = Engine.open(_auto(copy_bundle(lean_bundle, tmp_path / "src")), device="cpu").save(tmp_path / "small")
    _auto(small, min_recall=0.99)
    monkeypatch.setattr(retrieval, "EXACT_BUDGET", 150)  # 160 items x 64 / 64 are past it
    engine = Engine.open(small, device="cpu")
    assert engine._state.text_index.hnsw is None  # noqa: SLF001 - no index until saved: scanned
    engine.add_items([{"item_id": "new-1", "title": "A brand new film", "genres": "Drama"}])
    out = engine.save(tmp_path / "grown")
    manifest = read_manifest(out)
    spec = manifest["index"]["text"]
    assert manifest["items"]["text_embeddings"] == spec["path"] == "index/text.hnsw"
    assert spec["count"] == 161 and not (out / "items" / "text_embeddings.npy").exists()
    again = Engine.open(out, device="cpu")
    st = again._state  # noqa: SLF001
    assert np.array_equal(st.catalogue.text_embeddings, engine._state.catalogue.text_embeddings)  # noqa: SLF001
    backend = st.text_index.hnsw.backend()
    probe = st.models.encode_queries(query_like(list(st.catalogue.texts), PROBE_QUERIES, manifest["config"]["seed"]))
    ef, recall = calibrate_ef(backend, st.catalogue.text_embeddings, np.arange(st.catalogue.n_rows),
                              manifest["index"]["item"]["ef_search"], 0.99, queries=probe)
    assert spec["ef_search"] == ef and (recall >= 0.99 or ef == EF_LADDER[-1])
    assert [r.item_id for r in again.search("A brand new film", k=3)][0] == "new-1"


def test_a_scan_config_never_gets_a_text_index(lean_bundle: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import recengine.retrieval as retrieval

    src = copy_bundle(lean_bundle, tmp_path / "src")
    edit_manifest(src, lambda m: m["config"].update(index={"text": "scan"}))
    monkeypatch.setattr(retrieval, "EXACT_BUDGET", 10)
    out = Engine.open(src, device="cpu").save(tmp_path / "saved")
    assert "text" not in read_manifest(out)["index"]


def test_float16_text_rows_are_checked_like_any_array(lean_bundle: Path, tmp_path: Path) -> None:
    src = _auto(copy_bundle(lean_bundle, tmp_path / "src"))
    out = Engine.open(src, device="cpu").save(tmp_path / "saved")
    rel = "items/text_embeddings.npy"
    rows = np.load(out / rel)
    rows[3, 5] = np.float16(np.inf)
    np.save(out / rel, rows)
    refresh_checksum(out, rel)
    with pytest.raises(BundleError, match="non-finite"):
        Engine.open(out, device="cpu")
    np.save(out / rel, rows[:-1])
    refresh_checksum(out, rel)
    with pytest.raises(BundleError, match="shape"):
        Engine.open(out, device="cpu")


@pytest.mark.parametrize("config", [{"index": ["hnsw"], "seed": "x"}, {"index": {"text": 7, "min_recall": "high"}},
                                    "not a mapping"])
def test_save_reads_a_malformed_config_as_the_defaults(lean_bundle: Path, tmp_path: Path, config: object,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """`config` is free-form: a hand-edited one falls back to "auto" (and no ef calibration) instead of
    stopping a save, whether the index is dropped or built."""
    import recengine.retrieval as retrieval

    src = copy_bundle(lean_bundle, tmp_path / "src")
    edit_manifest(src, lambda m: m.update(config=config))
    out = Engine.open(src, device="cpu").save(tmp_path / "small")
    assert "text" not in read_manifest(out)["index"]
    monkeypatch.setattr(retrieval, "EXACT_BUDGET", 100)
    grown = Engine.open(out, device="cpu").save(tmp_path / "grown")
    assert read_manifest(grown)["index"]["text"]["count"] == 160


def test_save_keeps_a_1x_bundles_text_rows_float32_beside_its_index(lean_bundle: Path, tmp_path: Path) -> None:
    """The lean bundle stores the text rows as a `.npy` and an index over them (the 1.x layout): a save keeps
    both, the `.npy` in float32, so the scanned rows and the indexed ones stay the same numbers."""
    out = Engine.open(lean_bundle, device="cpu").save(tmp_path / "saved")
    manifest = read_manifest(out)
    rel = manifest["items"]["text_embeddings"]
    assert rel == "items/text_embeddings.npy" and "text" in manifest["index"]
    rows = np.load(out / rel)
    assert rows.dtype == np.float32
    assert np.array_equal(rows, read_vectors(out / manifest["index"]["text"]["path"], manifest["index"]["text"]["dim"]))


def test_text_rows_beyond_float16_range_are_stored_float32(lean_bundle: Path, tmp_path: Path) -> None:
    from recengine.bundle.format import stored_item_array

    assert stored_item_array("text_embeddings", np.ones((2, 3), np.float32)).dtype == np.float16
    assert stored_item_array("text_embeddings", np.full((2, 3), 7e4, np.float32)).dtype == np.float32
    assert stored_item_array("text_embeddings", np.ones((2, 3), np.float32), indexed=True).dtype == np.float32
    assert stored_item_array("text_embeddings", np.zeros((0, 3), np.float32)).dtype == np.float16
    src = _auto(copy_bundle(lean_bundle, tmp_path / "src"))
    rows = np.load(src / "items" / "text_embeddings.npy")
    rows[0] *= 1e6  # finite, served as it is, past float16's 65504
    np.save(src / "items" / "text_embeddings.npy", rows)
    refresh_checksum(src, "items/text_embeddings.npy")
    out = Engine.open(src, device="cpu").save(tmp_path / "saved")
    assert np.array_equal(Engine.open(out, device="cpu")._state.catalogue.text_embeddings[0], rows[0])  # noqa: SLF001


def test_a_built_text_index_takes_the_configured_parameters(lean_bundle: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import recengine.retrieval as retrieval

    src = copy_bundle(lean_bundle, tmp_path / "src")
    edit_manifest(src, lambda m: m["config"].update(index={"text": "auto", "M": 12, "ef_construction": 80,
                                                          "ef_search": 40}))
    small = Engine.open(src, device="cpu").save(tmp_path / "small")
    monkeypatch.setattr(retrieval, "EXACT_BUDGET", 100)
    spec = read_manifest(Engine.open(small, device="cpu").save(tmp_path / "grown"))["index"]["text"]
    assert (spec["M"], spec["ef_construction"], spec["ef_search"]) == (12, 80, 40)
    edit_manifest(small, lambda m: m["config"].update(index={"text": "auto", "M": 10**6, "ef_search": "x"}))
    spec = read_manifest(Engine.open(small, device="cpu").save(tmp_path / "grown2"))["index"]["text"]
    item = read_manifest(small)["index"]["item"]
    assert (spec["M"], spec["ef_search"]) == (item["M"], item["ef_search"])  # out of range: the item index's
