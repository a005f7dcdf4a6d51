"""Write bundles atomically and read them back safely.

Writers fill a temporary sibling directory and rename it into place only when everything succeeded, so a
failed export leaves nothing behind. Readers check the format version, verify checksums, refuse paths that
leave the bundle directory and never unpickle (`np.load(..., allow_pickle=False)`, JSON only).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import BundleError
from .format import FORMAT_NAME, FORMAT_VERSION, MANIFEST_NAME, REQUIRED_KEYS, major


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def safe_relpath(rel: str) -> str:
    """Check a bundle-relative POSIX path is canonical; refuse absolute paths, backslashes and any path
    with an empty, `.` or `..` part (it could leave the bundle directory or alias another file)."""
    if not isinstance(rel, str) or not rel or "\\" in rel or "\x00" in rel:
        raise BundleError(f"invalid path in bundle: {rel!r}")
    if rel.startswith("/") or PurePosixPath(rel).is_absolute():
        raise BundleError(f"path leaves the bundle directory: {rel!r}")
    # check the raw parts: PurePosixPath would silently collapse "a//b" and "a/./b"
    if any(part in ("..", ".", "") for part in rel.split("/")):
        raise BundleError(f"invalid path in bundle (empty, '.' or '..' part, may leave the bundle): {rel!r}")
    return rel


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps_json(obj: Any, what: str = "manifest") -> str:
    """Strict JSON (NaN/inf refused: other languages' parsers reject them), numpy scalars/arrays allowed."""
    try:
        return json.dumps(obj, indent=2, sort_keys=False, default=_json_default, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise BundleError(f"{what}: cannot be written as JSON ({exc})") from None


class BundleWriter:
    """Fill a bundle in a temporary directory, then `commit()` it into place atomically.

    Use as a context manager: leaving the block with an exception (or without `commit()`) removes the
    temporary directory, so no half-written bundle ever appears at `out`.
    """

    def __init__(self, out: str | Path, force: bool = False) -> None:
        self.out = Path(out).resolve()
        self.force = force
        if self.out.exists() and not force:
            raise BundleError(f"{self.out}: output path already exists (pass --force to replace it)")
        if self.out.exists() and not self.out.is_dir():
            raise BundleError(f"{self.out}: exists and is not a directory")
        parent = self.out.parent
        if not parent.is_dir():
            raise BundleError(f"{parent}: parent directory of the output does not exist")
        self.root = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.tmp-", dir=parent))
        self._committed = False

    def __enter__(self) -> "BundleWriter":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self._committed:
            self.abort()

    def abort(self) -> None:
        """Remove the temporary directory (idempotent)."""
        shutil.rmtree(self.root, ignore_errors=True)

    def path(self, rel: str) -> Path:
        """Absolute path of `rel` inside the bundle being written (parents created)."""
        target = self.root / safe_relpath(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def write_json(self, rel: str, obj: Any) -> str:
        self.path(rel).write_text(dumps_json(obj, rel), encoding="utf-8")
        return rel

    def write_npy(self, rel: str, array: np.ndarray) -> str:
        arr = np.asarray(array)
        if arr.dtype == object:
            raise BundleError(f"{rel}: object arrays cannot be stored (they would need pickle)")
        with self.path(rel).open("wb") as handle:
            np.save(handle, arr, allow_pickle=False)
        return rel

    def write_bytes(self, rel: str, data: bytes) -> str:
        self.path(rel).write_bytes(data)
        return rel

    def commit(self, manifest: dict[str, Any]) -> Path:
        """Checksum every file, write manifest.json, and move the bundle into place."""
        files: dict[str, dict[str, Any]] = {}
        for path in sorted(self.root.rglob("*")):
            if path.is_file() and path.name != MANIFEST_NAME:
                rel = path.relative_to(self.root).as_posix()
                files[rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
        full = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "recengine_version": __version__,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **{k: v for k, v in manifest.items() if k not in ("files",)},
            "files": files,
        }
        (self.root / MANIFEST_NAME).write_text(dumps_json(full, MANIFEST_NAME), encoding="utf-8")
        old: Path | None = None
        if self.out.exists():
            old = self.out.with_name(f".{self.out.name}.old-{os.getpid()}")
            os.replace(self.out, old)
        os.replace(self.root, self.out)
        self._committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.out


class BundleReader:
    """A verified, read-only view of a bundle directory."""

    def __init__(self, root: str | Path, verify: bool = True) -> None:
        self.root = Path(root).resolve()
        if not self.root.exists():
            raise BundleError(f"{root}: no such bundle directory")
        if not self.root.is_dir():
            raise BundleError(f"{root}: a bundle is a directory (with manifest.json), not a file")
        manifest_path = self.root / MANIFEST_NAME
        if not manifest_path.is_file():
            raise BundleError(f"{root}: not a recengine bundle (no {MANIFEST_NAME})")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleError(f"{manifest_path}: corrupted manifest ({exc})") from None
        except OSError as exc:
            raise BundleError(f"{manifest_path}: cannot read the manifest ({exc.strerror or exc})") from None
        if not isinstance(manifest, dict):
            raise BundleError(f"{manifest_path}: corrupted manifest (not a JSON object)")
        missing = [k for k in REQUIRED_KEYS if k not in manifest]
        if missing:
            raise BundleError(f"{manifest_path}: manifest lacks {', '.join(missing)}")
        if manifest["format"] != FORMAT_NAME:
            raise BundleError(f"{manifest_path}: format {manifest['format']!r} is not {FORMAT_NAME!r}")
        try:
            their_major = major(manifest["format_version"])
        except (ValueError, TypeError):
            raise BundleError(f"{manifest_path}: malformed format_version {manifest['format_version']!r}") from None
        if their_major != major(FORMAT_VERSION):
            raise BundleError(
                f"{root}: bundle format version {manifest['format_version']} is not supported by this recengine "
                f"(reads {major(FORMAT_VERSION)}.x); re-export the bundle or upgrade recengine"
            )
        if not isinstance(manifest["files"], dict):
            raise BundleError(f"{manifest_path}: 'files' must map paths to checksums")
        for rel, meta in manifest["files"].items():
            safe_relpath(rel)
            if rel == MANIFEST_NAME:
                raise BundleError(f"{manifest_path}: 'files' must not list {MANIFEST_NAME} itself")
            if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str):
                raise BundleError(f"{manifest_path}: files[{rel!r}] lacks a sha256 checksum")
        self.manifest: dict[str, Any] = manifest
        if verify:
            self.verify()

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        return self.manifest["files"]

    def verify(self) -> None:
        """Check every listed file exists with the recorded size and sha256."""
        for rel, meta in self.files.items():
            path = self._resolve(rel)
            if not path.is_file():
                raise BundleError(f"{self.root}: missing file {rel}")
            if "bytes" in meta and path.stat().st_size != meta["bytes"]:
                raise BundleError(f"{self.root}: {rel} has been modified or truncated (size mismatch)")
            try:
                digest = sha256_file(path)
            except OSError as exc:
                raise BundleError(f"{self.root}: cannot read {rel} ({exc.strerror or exc})") from None
            if digest != meta.get("sha256"):
                raise BundleError(f"{self.root}: {rel} has been modified or corrupted (sha256 mismatch)")

    def _resolve(self, rel: str) -> Path:
        rel = safe_relpath(rel)
        path = (self.root / rel).resolve()
        if self.root not in path.parents:
            raise BundleError(f"path leaves the bundle directory: {rel!r}")
        return path

    def path(self, rel: str) -> Path:
        """Absolute path of a file listed in the manifest (anything unlisted is refused)."""
        if safe_relpath(rel) not in self.files:
            raise BundleError(f"{self.root}: {rel} is not listed in the manifest")
        return self._resolve(rel)

    def has(self, rel: str) -> bool:
        return rel in self.files

    def load_npy(self, rel: str, mmap: bool = False) -> np.ndarray:
        """A listed .npy array, never unpickled (object arrays are refused)."""
        path = self.path(rel)
        try:
            return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
        except (ValueError, EOFError, OSError) as exc:
            reason = " ".join(str(exc).split())
            raise BundleError(f"{self.root}: {rel} is not a plain numeric .npy array ({reason})") from None

    def load_json(self, rel: str) -> Any:
        try:
            return json.loads(self.path(rel).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleError(f"{self.root}: {rel} is corrupted ({exc})") from None

    def section(self, *keys: str) -> Any:
        """`manifest[k1][k2]...` or a BundleError naming the missing key."""
        node: Any = self.manifest
        for i, key in enumerate(keys):
            if not isinstance(node, dict) or key not in node:
                raise BundleError(f"{self.root}: manifest lacks {'.'.join(keys[: i + 1])}")
            node = node[key]
        return node


def open_bundle(path: str | Path, verify: bool = True) -> BundleReader:
    """Open and (by default) verify a bundle directory."""
    return BundleReader(path, verify=verify)
