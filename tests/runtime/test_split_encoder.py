"""Bundles with a split encoder (docs/bundle.md "Split encoder"): the encoder returns `item_states`, the item
head turns them into `item_vector`. Search runs the encoder alone; stored items run both, in the item
encoder's variant; a hostile item head is a BundleError at open."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from recengine import Engine
from recengine.bundle import open_bundle
from recengine.data.text import build_item_text
from recengine.errors import BundleError

NEW = {"item_id": "live-1", "title": "Galactic Robot Detectives (2031)", "genres": "Sci-Fi, Mystery"}


def _stored(engine: Engine, item_id: str) -> tuple[np.ndarray, np.ndarray]:
    cat = engine._state.catalogue  # noqa: SLF001 - white-box: stored vectors have no public accessor
    (row,), _ = cat.rows_of([item_id])
    return cat.text_vectors[row].copy(), cat.text_embeddings[row].copy()


@pytest.mark.parametrize("variant", ["fp32", "int8", "fp16"])
def test_split_bundle_serves_every_variant(lean_split_bundle: Path, variant: str) -> None:
    engine = Engine.open(lean_split_bundle, device="cpu", threads=1, variant=variant)
    assert engine.variants["item_head"] == variant == engine.variants["encoder"]
    models = engine._state.models  # noqa: SLF001
    assert models.split and models.item_head is not None
    item = engine.item_ids()[3]
    text = engine._state.catalogue.texts[3]  # noqa: SLF001
    assert engine.search(text, k=1)[0].item_id == item
    assert len(engine.recommend(user_id=engine.user_ids()[0], k=5)) == 5


def test_reencoding_a_catalogue_item_gives_its_stored_vectors(lean_split_bundle: Path) -> None:
    """The runtime chains encoder -> item head exactly as the bundle's stored arrays were made."""
    engine = Engine.open(lean_split_bundle, device="cpu", threads=1, variant="fp32")
    reader = open_bundle(lean_split_bundle)
    stored_vec = reader.load_npy(reader.manifest["items"]["text_vectors"])
    texts = engine._state.catalogue.texts  # noqa: SLF001
    emb, vec = engine.stages().encode(list(texts[:8]))
    np.testing.assert_allclose(vec, stored_vec[:8], atol=1e-5)
    np.testing.assert_allclose(engine.stages().encode_query(list(texts[:8])), emb, atol=1e-6)
    item = engine.item_ids()[5]
    before = _stored(engine, item)
    assert engine.reencode_items([item]) == 1
    after = _stored(engine, item)
    np.testing.assert_allclose(after[0], before[0], atol=1e-5)
    np.testing.assert_allclose(after[1], before[1], atol=1e-5)


def test_search_never_runs_the_item_head(lean_split_bundle: Path) -> None:
    engine = Engine.open(lean_split_bundle, device="cpu", threads=1, variant="int8")
    models = engine._state.models  # noqa: SLF001
    calls: list[int] = []
    head = models.item_head
    original = head.run
    head.run = lambda *a, **k: (calls.append(1), original(*a, **k))[1]  # type: ignore[method-assign]
    engine.search("robots in space", k=3)
    engine.warmup()
    assert calls == []
    engine.add_items([NEW])
    assert models._item_head_session is not None  # stored items: the fp32 head beside the INT8 serving one


def test_items_are_stored_through_the_fp32_pair_beside_int8(lean_split_bundle: Path) -> None:
    fp32 = Engine.open(lean_split_bundle, device="cpu", threads=1, variant="fp32")
    int8 = Engine.open(lean_split_bundle, device="cpu", threads=1, variant="int8")
    opt_in = Engine.open(lean_split_bundle, device="cpu", threads=1, variant="int8", item_variant="int8")
    for e in (fp32, int8, opt_in):
        e.add_items([NEW])
    np.testing.assert_allclose(_stored(int8, "live-1")[0], _stored(fp32, "live-1")[0], atol=1e-5)
    assert np.abs(_stored(opt_in, "live-1")[0] - _stored(fp32, "live-1")[0]).max() > 1e-4
    text = build_item_text(NEW, ["title", "genres"])
    assert fp32.search(text, k=1)[0].item_id == "live-1"


def test_saved_split_bundle_reopens_with_its_item_head(lean_split_bundle: Path, tmp_path: Path) -> None:
    engine = Engine.open(lean_split_bundle, device="cpu", threads=1)
    engine.add_items([NEW])
    engine.save(tmp_path / "saved")
    again = Engine.open(tmp_path / "saved", device="cpu", threads=1)
    assert "item_head" in again.variants
    np.testing.assert_allclose(_stored(again, "live-1")[0], _stored(engine, "live-1")[0], atol=1e-6)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _rewrite_manifest(root: Path, edit) -> None:
    path = root / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def test_a_split_encoder_without_its_item_head_is_a_bundle_error(lean_split_bundle: Path, tmp_path: Path) -> None:
    root = _copy(lean_split_bundle, tmp_path / "b")
    _rewrite_manifest(root, lambda m: m["models"].pop("item_head"))
    with pytest.raises(BundleError, match="lacks the output 'item_vector'"):
        Engine.open(root, device="cpu", threads=1)


def test_an_item_head_beside_an_unsplit_encoder_is_a_bundle_error(lean_bundle: Path, lean_split_bundle: Path,
                                                                  tmp_path: Path) -> None:
    root = _copy(lean_bundle, tmp_path / "b")
    split = json.loads((lean_split_bundle / "manifest.json").read_text())
    _rewrite_manifest(root, lambda m: m["models"].__setitem__("item_head", split["models"]["item_head"]))
    with pytest.raises(BundleError):
        Engine.open(root, device="cpu", threads=1)


def test_an_item_head_in_the_wrong_slot_is_a_bundle_error(lean_split_bundle: Path, tmp_path: Path) -> None:
    """The fusion graph declared as the item head: its inputs are not the head's."""
    root = _copy(lean_split_bundle, tmp_path / "b")

    def swap(m: dict) -> None:
        m["models"]["item_head"]["variants"] = m["models"]["fusion"]["variants"]

    _rewrite_manifest(root, swap)
    with pytest.raises(BundleError, match="item_head"):
        Engine.open(root, device="cpu", threads=1)


def test_an_item_head_without_the_encoders_variant_serves_fp32(lean_split_bundle: Path, tmp_path: Path) -> None:
    """The export trims the two together; a bundle where the head still lacks the encoder's variant (int8
    encoder, fp32 head) serves the head in fp32 and says so, rather than refusing to open."""
    root = _copy(lean_split_bundle, tmp_path / "b")
    _rewrite_manifest(root, lambda m: m["models"]["item_head"]["variants"].pop("int8"))
    engine = Engine.open(root, device="cpu", threads=1, variant="int8")
    assert engine.variants["encoder"] == "int8" and engine.variants["item_head"] == "fp32"
    assert "not in the item head" in engine.variant_reasons["item_head"]
    engine.add_items([NEW])
    assert engine.search("Galactic Robot Detectives", k=1)[0].item_id == "live-1"
