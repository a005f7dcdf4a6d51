"""Bundle writer/reader: atomic writes, verification, version and path checks, no unpickling."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from recengine import __version__
from recengine.bundle import FORMAT_NAME, FORMAT_VERSION, MANIFEST_NAME, BundleWriter, open_bundle, safe_relpath
from recengine.errors import BundleError


def write_bundle(out: Path, force: bool = False) -> Path:
    with BundleWriter(out, force=force) as writer:
        writer.write_json("items/ids.json", ["a", "b", "c"])
        writer.write_npy("items/vectors.npy", np.arange(6, dtype=np.float32).reshape(3, 2))
        writer.write_bytes("index/items.hnsw", b"\x00\x01binary")
        return writer.commit({"data": {"name": "tiny", "n_items": 3}, "metrics": {"test": {"fp32": {"hr@10": 0.5}}}})


def edit_manifest(bundle: Path, **changes) -> None:
    path = bundle / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


def test_roundtrip(tmp_path: Path) -> None:
    out = write_bundle(tmp_path / "bundle")
    reader = open_bundle(out)
    m = reader.manifest
    assert (m["format"], m["format_version"], m["recengine_version"]) == (FORMAT_NAME, FORMAT_VERSION, __version__)
    assert m["created_at"].endswith("+00:00")
    assert m["data"] == {"name": "tiny", "n_items": 3}
    assert set(m["files"]) == {"items/ids.json", "items/vectors.npy", "index/items.hnsw"}
    assert m["files"]["index/items.hnsw"]["bytes"] == 8
    assert reader.load_json("items/ids.json") == ["a", "b", "c"]
    np.testing.assert_array_equal(reader.load_npy("items/vectors.npy"), np.arange(6).reshape(3, 2))
    assert reader.load_npy("items/vectors.npy", mmap=True).dtype == np.float32
    assert reader.path("index/items.hnsw").read_bytes() == b"\x00\x01binary"
    assert reader.section("metrics", "test", "fp32", "hr@10") == 0.5
    assert reader.has("items/ids.json") and not reader.has("nope.json")
    assert siblings(out) == ["bundle"]  # no temporary directory left


def test_nothing_appears_until_commit(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    with BundleWriter(out) as writer:
        writer.write_json("a.json", {"x": 1})
        assert not out.exists()
        assert writer.root.parent == tmp_path and writer.root.name.startswith(".bundle.tmp-")
        writer.commit({})
    assert out.is_dir()


def test_failure_leaves_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    with pytest.raises(RuntimeError, match="boom"):
        with BundleWriter(out) as writer:
            writer.write_npy("big.npy", np.zeros((10, 10)))
            raise RuntimeError("boom")
    assert not out.exists()
    assert siblings(out) == []


def test_leaving_without_commit_leaves_nothing(tmp_path: Path) -> None:
    with BundleWriter(tmp_path / "bundle") as writer:
        writer.write_json("a.json", [1])
    assert os.listdir(tmp_path) == []


def test_failure_while_committing_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    with pytest.raises(BundleError, match="cannot be written as JSON"):
        with BundleWriter(out) as writer:
            writer.write_json("a.json", [1])
            writer.commit({"metrics": {"hr@10": float("nan")}})
    assert os.listdir(tmp_path) == []


def test_existing_output_needs_force_and_is_replaced_atomically(tmp_path: Path) -> None:
    out = write_bundle(tmp_path / "bundle")
    (out / "stale.txt").write_text("old")
    with pytest.raises(BundleError, match="already exists"):
        BundleWriter(out)
    write_bundle(out, force=True)
    assert not (out / "stale.txt").exists()
    open_bundle(out)
    assert siblings(out) == ["bundle"]


def test_a_failed_forced_export_keeps_the_old_bundle(tmp_path: Path) -> None:
    out = write_bundle(tmp_path / "bundle")
    with pytest.raises(RuntimeError):
        with BundleWriter(out, force=True) as writer:
            writer.write_json("new.json", [])
            raise RuntimeError("training diverged")
    assert open_bundle(out).has("items/ids.json")
    assert siblings(out) == ["bundle"]


def test_output_checks(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(BundleError, match="not a directory"):
        BundleWriter(tmp_path / "file", force=True)
    with pytest.raises(BundleError, match="parent directory"):
        BundleWriter(tmp_path / "missing" / "bundle")


def test_tampered_file_is_refused(tmp_path: Path) -> None:
    out = write_bundle(tmp_path / "bundle")
    path = out / "items" / "ids.json"
    path.write_text(path.read_text().replace('"a"', '"z"'))  # same size, other bytes
    with pytest.raises(BundleError, match=r"items/ids.json has been modified or corrupted \(sha256"):
        open_bundle(out)
    reader = open_bundle(out, verify=False)  # explicitly skipping verification still opens it
    assert reader.load_json("items/ids.json") == ["z", "b", "c"]


def test_truncated_and_missing_files_are_refused(tmp_path: Path) -> None:
    out = write_bundle(tmp_path / "bundle")
    (out / "index" / "items.hnsw").write_bytes(b"\x00")
    with pytest.raises(BundleError, match="size mismatch"):
        open_bundle(out)
    (out / "index" / "items.hnsw").unlink()
    with pytest.raises(BundleError, match="missing file index/items.hnsw"):
        open_bundle(out)


def test_unlisted_files_are_not_served(tmp_path: Path) -> None:
    out = write_bundle(tmp_path / "bundle")
    (out / "extra.json").write_text("[]")
    reader = open_bundle(out)
    with pytest.raises(BundleError, match="not listed in the manifest"):
        reader.load_json("extra.json")


@pytest.mark.parametrize("version, ok", [("1.0", True), ("1.9", True), ("2.0", True), ("2.3", True), ("3.0", False),
                                         ("0.9", False)])
def test_major_version_gate(tmp_path: Path, version: str, ok: bool) -> None:
    out = write_bundle(tmp_path / "bundle")
    edit_manifest(out, format_version=version)
    if ok:
        assert open_bundle(out).manifest["format_version"] == version
    else:
        with pytest.raises(BundleError, match=f"format version {version} is not supported"):
            open_bundle(out)


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"format_version": "one"}, "malformed format_version"),
        ({"format": "something-else"}, "is not 'recengine-bundle'"),
        ({"files": ["a"]}, "'files' must map paths"),
        ({"files": {"items/ids.json": "abc"}}, "lacks a sha256"),
        ({"files": {MANIFEST_NAME: {"sha256": "0"}}}, "must not list manifest.json"),
    ],
)
def test_malformed_manifest(tmp_path: Path, changes: dict, fragment: str) -> None:
    out = write_bundle(tmp_path / "bundle")
    edit_manifest(out, **changes)
    with pytest.raises(BundleError, match=fragment.replace("(", r"\(")):
        open_bundle(out)


def test_manifest_missing_keys_or_not_json(tmp_path: Path) -> None:
    out = write_bundle(tmp_path / "bundle")
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    del manifest["format_version"]
    (out / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="manifest lacks format_version"):
        open_bundle(out)
    (out / MANIFEST_NAME).write_text("{ not json")
    with pytest.raises(BundleError, match="corrupted manifest"):
        open_bundle(out)
    (out / MANIFEST_NAME).write_text("[1, 2]")
    with pytest.raises(BundleError, match="not a JSON object"):
        open_bundle(out)


def test_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no such bundle directory"):
        open_bundle(tmp_path / "nope")
    (tmp_path / "f").write_text("x")
    with pytest.raises(BundleError, match="not a file"):
        open_bundle(tmp_path / "f")
    with pytest.raises(BundleError, match="no manifest.json"):
        open_bundle(tmp_path)


@pytest.mark.parametrize("rel", ["../outside.json", "/etc/passwd", "a/../../b", "a//b", "a\\b", "", "a/./../.."])
def test_path_traversal_in_files_is_refused(tmp_path: Path, rel: str) -> None:
    out = write_bundle(tmp_path / "bundle")
    (tmp_path / "outside.json").write_text("[]")
    edit_manifest(out, files={rel: {"sha256": "0" * 64, "bytes": 2}})
    with pytest.raises(BundleError, match="path"):
        open_bundle(out, verify=False)


def test_symlink_out_of_the_bundle_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text('["secret"]')
    out = tmp_path / "bundle"
    with BundleWriter(out) as writer:
        os.symlink(secret, writer.path("items/ids.json"))
        writer.commit({})
    with pytest.raises(BundleError, match="leaves the bundle directory"):
        open_bundle(out)


def test_writer_refuses_unsafe_paths(tmp_path: Path) -> None:
    with BundleWriter(tmp_path / "bundle") as writer:
        for rel in ("../x.json", "/abs.json"):
            with pytest.raises(BundleError):
                writer.write_json(rel, [])
    assert safe_relpath("items/ids.json") == "items/ids.json"


def test_object_arrays_are_never_written_or_unpickled(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    with BundleWriter(out) as writer:
        with pytest.raises(BundleError, match="object arrays cannot be stored"):
            writer.write_npy("bad.npy", np.array(["a", None], dtype=object))
        # a hostile writer could still put a pickle in place: the reader must refuse to load it
        np.save(writer.path("evil.npy"), np.array([{"x": 1}], dtype=object), allow_pickle=True)
        writer.write_bytes("fake.npy", b"not an npy file at all")
        writer.commit({})
    reader = open_bundle(out)
    with pytest.raises(BundleError, match="evil.npy is not a plain numeric .npy array"):
        reader.load_npy("evil.npy")
    with pytest.raises(BundleError, match="fake.npy is not a plain numeric .npy array"):
        reader.load_npy("fake.npy")


def test_corrupted_json_file_is_a_bundle_error(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    with BundleWriter(out) as writer:
        writer.write_bytes("bad.json", b"{ nope")
        writer.commit({})
    with pytest.raises(BundleError, match="bad.json is corrupted"):
        open_bundle(out).load_json("bad.json")


def test_section_names_the_missing_key(tmp_path: Path) -> None:
    reader = open_bundle(write_bundle(tmp_path / "bundle"))
    with pytest.raises(BundleError, match="manifest lacks metrics.validation"):
        reader.section("metrics", "validation", "fp32")
