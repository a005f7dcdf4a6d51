"""Manifest schema, strict JSON and `.npy` header checks of the bundle reader (small hand-made bundles; the
real-bundle corpus is test_hostile_bundles.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recengine.bundle import MANIFEST_NAME, BundleWriter, open_bundle
from recengine.bundle import io as bundle_io
from recengine.bundle.schema import MissingKey, array_spec, validate_manifest
from recengine.errors import BundleError


def write(out: Path, manifest: dict | None = None, arrays: dict | None = None) -> Path:
    with BundleWriter(out) as writer:
        for rel, array in (arrays or {"items/vectors.npy": np.zeros((3, 4), np.float32)}).items():
            writer.write_npy(rel, array)
        return writer.commit(manifest if manifest is not None else {
            "data": {"n_items": 3, "n_users": 0}, "dims": {"text": 8, "item": 4},
            "items": {"vectors": "items/vectors.npy"}})


def test_missing_keys_name_their_path(tmp_path: Path) -> None:
    reader = open_bundle(write(tmp_path / "b"))
    with pytest.raises(MissingKey, match=r"manifest lacks dims\.scene_slots"):
        reader.manifest["dims"]["scene_slots"]
    with pytest.raises(KeyError):  # still a KeyError for code that catches one
        reader.manifest["items"]["texts"]
    assert reader.manifest["dims"].get("scene_slots", 1) == 1  # .get keeps its default


@pytest.mark.parametrize("manifest, fragment", [
    ({"dims": {"text": 8}}, "manifest lacks dims.item"),
    ({"dims": {"text": 8, "item": True}}, "dims.item must be an integer"),
    ({"dims": {"text": 8, "item": 4, "max_history": 0}}, "dims.max_history must be in 1.."),
    ({"data": {"n_items": -1}}, "data.n_items must be in 0.."),
    ({"data": {"text_columns": "title"}}, "data.text_columns must be a list"),
    ({"tokenizer": {"path": "/etc/passwd"}}, "tokenizer.path"),
    ({"models": {"encoder": {"variants": {"fp32": {"path": 5}}}}}, "models.encoder.variants.fp32.path"),
    ({"models": {"fusion": {"use_by_default": "yes"}}}, "models.fusion.use_by_default must be true or false"),
    ({"models": {"encoder": {"inputs": [{"name": "x", "dtype": "int64", "shape": ["B", -1]}]}}}, "bad axis -1"),
    ({"vocab": {"scene": {"columns": ["a"], "values": {"a": [1, 2]}}}}, "vocab.scene.values.a"),
    ({"vocab": {"profile": {"numeric_edges": {"attr_age": [30, 20]}}}}, "sorted ascending"),
    ({"index": {"item": {"M": 1}}}, "index.item.M must be in 2..10000"),
    ({"index": {"item": {"transform": "mips_augment"}}}, "transform and max_norm go together"),
    ({"index": {"item": {"max_norm": float("inf"), "transform": "mips_augment"}}}, "max_norm"),
    ({"index": {"item": {"space": "l2"}}}, "index.item.space must be one of 'ip'"),
    ({"items": ["items/vectors.npy"]}, "items must be an object"),
    ({"created_at": 5}, "created_at must be a string"),
])
def test_schema_rules(manifest: dict, fragment: str) -> None:
    full = {"format": "recengine-bundle", "format_version": "1.0", "recengine_version": "0", "created_at": "now",
            "files": {}, **manifest}
    with pytest.raises(BundleError, match=fragment.replace("(", r"\(").replace(".", r"\.")):
        validate_manifest(full)


def test_unknown_fields_are_allowed(tmp_path: Path) -> None:
    """A minor format bump only adds optional fields: readers of 1.x must accept them."""
    out = write(tmp_path / "b", {"dims": {"text": 8, "item": 4, "future_dim": "anything"}, "future": {"x": [1]}})
    assert open_bundle(out).manifest["future"] == {"x": [1]}


def test_info_style_open_skips_the_schema(tmp_path: Path) -> None:
    out = write(tmp_path / "b")
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    manifest["dims"] = {"text": 8, "item": "abc"}
    (out / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="dims.item must be an integer"):
        open_bundle(out)
    assert open_bundle(out, check_schema=False).manifest["dims"] == {"text": 8, "item": "abc"}


def test_strict_json_everywhere(tmp_path: Path) -> None:
    out = write(tmp_path / "b")
    text = (out / MANIFEST_NAME).read_text()
    (out / MANIFEST_NAME).write_text(text.rstrip()[:-1] + ', "x": Infinity}')
    with pytest.raises(BundleError, match="corrupted manifest .*Infinity"):
        open_bundle(out)


def test_oversized_manifest_is_refused_unread(tmp_path: Path, monkeypatch) -> None:
    out = write(tmp_path / "b")
    monkeypatch.setattr(bundle_io, "MAX_MANIFEST_BYTES", 100)
    with pytest.raises(BundleError, match="more than the"):
        open_bundle(out)


def test_array_spec_follows_the_manifest() -> None:
    manifest = {"data": {"n_items": 5, "n_users": 2}, "dims": {"item": 4, "text": 8, "item_feats": 3},
                "items": {"vectors": "items/v.npy", "text_embeddings": "items/t.npy", "popularity": "items/p.npy"},
                "users": {"history_indptr": "users/h.npy", "profile": "users/pr.npy"}}
    assert array_spec(manifest, "items/v.npy") == ("f", (5, 4))
    assert array_spec(manifest, "items/t.npy") == ("f", (5, 8))
    assert array_spec(manifest, "items/p.npy") == ("iu", (5,))
    assert array_spec(manifest, "users/h.npy") == ("iu", (3,))
    assert array_spec(manifest, "users/pr.npy") == ("iu", None)
    assert array_spec(manifest, "other.npy") is None
    assert array_spec({"items": {"vectors": "v.npy"}}, "v.npy") == ("f", (None, None))


def test_array_header_is_checked_before_loading(tmp_path: Path) -> None:
    out = write(tmp_path / "b", arrays={"items/vectors.npy": np.zeros((3, 4), np.float32),
                                        "extra.npy": np.arange(4, dtype=np.int32)})
    reader = open_bundle(out)
    assert reader.array_header("items/vectors.npy") == ((3, 4), np.dtype(np.float32))
    assert reader.array_header("extra.npy") == ((4,), np.dtype(np.int32))  # unknown arrays: plain checks only
    raw = (out / "extra.npy").read_bytes()
    (out / "extra.npy").write_bytes(raw.replace(b"(4,)", b"(9,)"))
    reader = open_bundle(out, verify=False)
    with pytest.raises(BundleError, match=r"header declares shape \(9,\)"):
        reader.load_npy("extra.npy")


def test_non_finite_float_arrays_are_refused(tmp_path: Path) -> None:
    out = write(tmp_path / "b", arrays={"items/vectors.npy": np.array([[0, 1, 2, np.nan]] * 3, np.float32)})
    with pytest.raises(BundleError, match="holds non-finite values"):
        open_bundle(out).load_npy("items/vectors.npy")
    with pytest.raises(BundleError, match="holds non-finite values"):
        open_bundle(out).load_npy("items/vectors.npy", mmap=True)
