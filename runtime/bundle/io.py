"""Write bundles atomically and read them back safely.

Writers fill a temporary sibling directory and rename it into place only when everything succeeded, so a
failed export leaves nothing behind. Readers check the format version and the manifest's schema
(`schema.py`), verify checksums, check every `.npy` header against the manifest and the file size before
loading it, refuse paths that leave the bundle directory and never unpickle (`allow_pickle=False`, JSON
only).

Leftovers (docs/bundle.md "Writing safely"): a writer killed outright (SIGKILL, a power cut) cannot clean up,
so every temporary directory beside the target is named `.NAME.<kind>-<host>-<pid>-<random>`; the next
writer of the same target removes those whose process is gone. `--force` swaps the new bundle in with one
atomic exchange where the OS has it (Linux `renameat2(RENAME_EXCHANGE)`), else with two renames whose
backup the next open or write puts back if the process died between them.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import BundleError
from .format import FORMAT_NAME, FORMAT_VERSION, MANIFEST_NAME, READABLE_MAJORS, REQUIRED_KEYS, index_holding, major
from .schema import (
    array_spec,
    check_depth,
    check_json_file,
    code_bounds,
    is_code_array,
    sections,
    validate_manifest,
)

HASH_THREADS = 4
"""Files hashed at once when verifying (bounded by the CPU count)."""
MAX_MANIFEST_BYTES = 64 << 20
"""A manifest is a few KB to a few MB (it lists every file): anything larger is refused unread."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, streamed through one reused buffer (`hashlib.file_digest`: no new
    bytes object per chunk, which matters for the memory of the threads that verify bundles)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


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


# ----------------------------------------------------------------------------------- leftovers
_KINDS = ("tmp", "old", "work")
"""Temporary siblings of a bundle: `tmp` the bundle being written, `old` the replaced bundle during a
`--force` commit, `work` scratch space of the writer (e.g. the export's training files)."""


def _host() -> str:
    """This machine's name reduced to [A-Za-z0-9] (a pid only identifies a process on its own host)."""
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"


def _owner_prefix(out: Path, kind: str) -> str:
    return f".{out.name}.{kind}-{_host()}-{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def leftovers(out: str | Path, kinds: tuple[str, ...] = _KINDS) -> list[Path]:
    """Temporary siblings of `out` left by writers on this host that are gone (dead pid), newest first.

    Directories of a live process, of another host, or without the owner tag are never returned."""
    out = Path(out)
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.({'|'.join(kinds)})-([A-Za-z0-9]+)-(\d+)-")
    try:
        entries = list(out.parent.iterdir())
    except OSError:
        return []
    host = _host()
    found = []
    for path in entries:
        match = pattern.match(path.name)
        if match and match.group(2) == host and not _pid_alive(int(match.group(3))) and path.is_dir():
            found.append(path)
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def recover_stranded(out: str | Path) -> bool:
    """If `out` is missing but a dead writer left the bundle it was replacing (`.NAME.old-...`: killed
    between the two renames of a non-atomic `--force` commit), move that bundle back. Returns whether it
    did. Best effort: a read-only parent leaves things as they are."""
    out = Path(out)
    if out.exists() or out.is_symlink():
        return False
    for backup in leftovers(out, ("old",)):
        if (backup / MANIFEST_NAME).is_file():
            try:
                os.rename(backup, out)
            except OSError:
                return False
            return True
    return False


def clean_leftovers(out: str | Path) -> list[Path]:
    """Remove the temporary siblings of `out` whose writer is gone (call `recover_stranded` first)."""
    removed = []
    for path in leftovers(out):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            removed.append(path)
    return removed


def _umask() -> int:
    """The process umask, read without changing it where Linux reports it (else set and restored)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux `renameat2(RENAME_EXCHANGE)`); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(b))


def bundle_path(value: Any, what: str = "bundle path") -> Path:
    """`value` (str or os.PathLike) as an absolute Path, or a BundleError naming what is wrong with it. Why:
    paths reach here from hosts and HTTP admin requests; None, a number, an empty string (it would resolve
    to the working directory), a NUL byte or a name the OS refuses must be a clear error, not a TypeError,
    ValueError or OSError from deep inside pathlib."""
    if not isinstance(value, (str, os.PathLike)):
        raise BundleError(f"{what} must be a string path, got {type(value).__name__}")
    text = os.fspath(value)
    if not isinstance(text, str) or not text.strip():
        raise BundleError(f"{what} must be a non-empty path")
    if "\x00" in text:
        raise BundleError(f"{what} must not contain a NUL character")
    try:
        path = Path(text).resolve()
        path.exists()  # ENAMETOOLONG and the like surface here, not halfway through a write
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop on older Pythons
        raise BundleError(f"{what} {text[:200]!r} cannot be used ({getattr(exc, 'strerror', None) or exc})") from None
    return path


class BundleWriter:
    """Fill a bundle in a temporary directory, then `commit()` it into place atomically.

    Use as a context manager: leaving the block with an exception (or without `commit()`) removes the
    temporary directory, so no half-written bundle ever appears at `out`. Creating a writer first puts
    back a bundle stranded by a killed `--force` commit and removes leftovers of dead writers of the same
    target. The bundle directory gets the usual permissions (0777 minus the umask), not mkdtemp's 0700.
    """

    def __init__(self, out: str | Path, force: bool = False) -> None:
        self.out = bundle_path(out, "output path")
        self.force = force
        parent = self.out.parent
        if parent.is_dir():
            recover_stranded(self.out)
            clean_leftovers(self.out)
        if self.out.exists() and not force:
            raise BundleError(f"{self.out}: output path already exists (pass --force to replace it)")
        if self.out.exists() and not self.out.is_dir():
            raise BundleError(f"{self.out}: exists and is not a directory")
        if self.out.exists() and not (self.out / MANIFEST_NAME).is_file() and any(self.out.iterdir()):
            # --force replaces a bundle, never a directory of something else (a home directory, a checkout)
            raise BundleError(f"{self.out}: exists and is not a recengine bundle (no {MANIFEST_NAME}); "
                              "refusing to replace it")
        if not parent.is_dir():
            raise BundleError(f"{parent}: parent directory of the output does not exist")
        try:
            self.root = Path(tempfile.mkdtemp(prefix=_owner_prefix(self.out, "tmp"), dir=parent))
            os.chmod(self.root, 0o777 & ~_umask())
        except OSError as exc:
            raise BundleError(f"{parent}: cannot write the bundle there ({exc.strerror or exc})") from None
        self._scratch: list[Path] = []
        self._committed = False

    def __enter__(self) -> BundleWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self._committed:
            self.abort()

    def abort(self) -> None:
        """Remove the temporary directory and any scratch directory (idempotent)."""
        shutil.rmtree(self.root, ignore_errors=True)
        self._remove_scratch()

    def _remove_scratch(self) -> None:
        for path in self._scratch:
            shutil.rmtree(path, ignore_errors=True)
        self._scratch.clear()

    @contextlib.contextmanager
    def scratch(self) -> Iterator[str]:
        """A scratch directory beside the target for files that are not part of the bundle (training
        checkpoints, ...), removed on leaving the block, on `abort`/`commit`, and - if this process is
        killed - by the next writer of the same target (unlike a directory in the system temp dir)."""
        path = Path(tempfile.mkdtemp(prefix=_owner_prefix(self.out, "work"), dir=self.out.parent))
        self._scratch.append(path)
        try:
            yield str(path)
        finally:
            shutil.rmtree(path, ignore_errors=True)
            if path in self._scratch:
                self._scratch.remove(path)

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

    def _seal(self, manifest: dict[str, Any]) -> None:
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

    def preview(self, manifest: dict[str, Any]) -> Path:
        """Seal the bundle as it stands (checksums + manifest.json) without moving it into place, and
        return its temporary directory: the export opens it with the real reader and engine to measure
        what it wrote. A later `commit` (with the final manifest) seals it again."""
        self._seal(manifest)
        return self.root

    def commit(self, manifest: dict[str, Any]) -> Path:
        """Checksum every file, write manifest.json, and move the bundle into place."""
        self._seal(manifest)
        self._remove_scratch()
        if self.out.exists() and not self.force:  # created by someone else since this writer started
            raise BundleError(f"{self.out}: output path already exists (pass --force to replace it)")
        old = self._swap_in() if self.out.exists() else None
        if old is None:
            os.replace(self.root, self.out)
        self._committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.out

    def _swap_in(self) -> Path:
        """Replace the existing bundle at `out` by ours with no moment where `out` is missing; returns
        where the old bundle now is (to be removed)."""
        if _exchange(self.root, self.out):
            return self.root  # the old bundle now sits in our owner-tagged temporary directory
        backup = Path(tempfile.mkdtemp(prefix=_owner_prefix(self.out, "old"), dir=self.out.parent))
        os.rmdir(backup)  # a unique owner-tagged name for the old bundle
        os.rename(self.out, backup)
        try:
            os.rename(self.root, self.out)
        except BaseException:
            if not self.out.exists():
                os.rename(backup, self.out)  # killed before this line: `recover_stranded` puts it back
            raise
        return backup


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (strict JSON has no NaN/Infinity)")


def loads_json(raw: bytes) -> Any:
    """Strict UTF-8 JSON (no NaN/Infinity, as `dumps_json` writes) with bounded nesting; a ValueError
    saying what is wrong otherwise (a 100k-deep document is refused, never a RecursionError)."""
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    try:
        check_depth(value, "document")
    except BundleError as exc:
        raise ValueError(str(exc)) from None
    return value


class BundleReader:
    """A verified, read-only view of a bundle directory.

    Opening checks the manifest (format, version, schema: `schema.validate_manifest`), the HNSW index
    headers against it, and - unless `verify=False` - the size and sha256 of every listed file. Without
    verification a changed or truncated file is only caught by the content checks (`.npy` headers, index
    structure, JSON syntax), not a changed value inside it. `check_schema=False` is for tools that show a
    manifest as it is (`recengine info`): only the format, version and file list are checked then.
    """

    def __init__(self, root: str | Path, verify: bool = True, check_schema: bool = True,
                 background_verify: bool = False) -> None:
        self.root = bundle_path(root)
        self._hashing: list[tuple[str, Future[str]]] = []
        self.checked_indexes: set[str] = set()
        """Index files whose whole structure was checked while reading the rows they hold (`index_rows`)."""
        self._pool: ThreadPoolExecutor | None = None
        if not self.root.exists() and not recover_stranded(self.root):
            raise BundleError(f"{root}: no such bundle directory")
        if not self.root.is_dir():
            raise BundleError(f"{root}: a bundle is a directory (with manifest.json), not a file")
        manifest_path = self.root / MANIFEST_NAME
        if not manifest_path.is_file():
            raise BundleError(f"{root}: not a recengine bundle (no {MANIFEST_NAME})")
        try:
            size = manifest_path.stat().st_size
            if size > MAX_MANIFEST_BYTES:
                raise BundleError(f"{manifest_path}: corrupted manifest ({size} bytes, more than the "
                                  f"{MAX_MANIFEST_BYTES >> 20} MiB a manifest may have)")
            raw = manifest_path.read_bytes()
        except OSError as exc:
            raise BundleError(f"{manifest_path}: cannot read the manifest ({exc.strerror or exc})") from None
        try:
            manifest = loads_json(raw)
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise BundleError(f"{manifest_path}: corrupted manifest ({exc})") from None
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
        if their_major not in READABLE_MAJORS:
            readable = " and ".join(f"{m}.x" for m in READABLE_MAJORS)
            raise BundleError(
                f"{root}: bundle format version {manifest['format_version']} is not supported by this recengine "
                f"(reads {readable}); re-export the bundle or upgrade recengine"
            )
        if not isinstance(manifest["files"], dict):
            raise BundleError(f"{manifest_path}: 'files' must map paths to checksums")
        for rel, meta in manifest["files"].items():
            safe_relpath(rel)
            if rel == MANIFEST_NAME:
                raise BundleError(f"{manifest_path}: 'files' must not list {MANIFEST_NAME} itself")
            if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str):
                raise BundleError(f"{manifest_path}: files[{rel!r}] lacks a sha256 checksum")
            size = meta.get("bytes", 0)
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise BundleError(f"{manifest_path}: files[{rel!r}].bytes must be an integer >= 0, got {size!r}")
        if check_schema:
            try:
                validate_manifest(manifest)
            except BundleError as exc:
                raise BundleError(f"{root}: {exc}") from None
        self.manifest: dict[str, Any] = sections(manifest, str(self.root))
        self._schema = check_schema
        if verify:
            self.start_verify()
            if not background_verify:
                self.finish_verify()
        if check_schema:
            self._check_index_headers()

    def _check_index_headers(self) -> None:
        """Each listed hnswlib index's header against the manifest (96 bytes each; the full structural
        check runs when the index is loaded, `recengine.hnsw_file`)."""
        from ..hnsw_file import check_header, read_header

        index = self.manifest.get("index")
        if not isinstance(index, dict):
            return
        for name, spec in index.items():
            if not isinstance(spec, dict) or "path" not in spec or "dim" not in spec:
                continue
            path = self.path(spec["path"])
            check_header(read_header(path), f"{self.root}: index.{name} ({spec['path']})", spec["dim"],
                         spec.get("count"), spec.get("M"))

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        return self.manifest["files"]

    def verify(self) -> None:
        """Check every listed file exists with the recorded size and sha256."""
        self.start_verify()
        self.finish_verify()

    def start_verify(self) -> None:
        """Check every listed file exists with the recorded size (at once) and start hashing them on a few
        threads; `finish_verify` waits for the digests and raises on the first mismatch.

        Why threads: hashlib releases the GIL while it hashes, so the files are hashed on every core at once,
        and `Engine.open` overlaps the hashing with loading (it calls `finish_verify` before serving
        anything, and reports a checksum mismatch in preference to any error the damaged content caused)."""
        if self._pool is not None:
            return
        jobs = []
        for rel, meta in self.files.items():
            path = self._resolve(rel)
            if not path.is_file():
                raise BundleError(f"{self.root}: missing file {rel}")
            size = path.stat().st_size
            if "bytes" in meta and size != meta["bytes"]:
                raise BundleError(f"{self.root}: {rel} has been modified or truncated (size mismatch)")
            jobs.append((size, rel, path))
        jobs.sort(key=lambda job: -job[0])  # largest first: the threads finish together
        self._pool = ThreadPoolExecutor(max_workers=max(1, min(HASH_THREADS, os.cpu_count() or 1, len(jobs))),
                                        thread_name_prefix="recengine-sha256")
        self._hashing = [(rel, self._pool.submit(sha256_file, path)) for _, rel, path in jobs]
        self._pool.shutdown(wait=False)

    def finish_verify(self) -> None:
        """Wait for the digests started by `start_verify` (nothing to do when it was not started); BundleError
        naming the first file whose sha256 differs from the manifest's."""
        pending, self._hashing = self._hashing, []
        failure: BundleError | None = None
        for rel, future in pending:
            try:
                digest = future.result()
            except OSError as exc:
                failure = failure or BundleError(f"{self.root}: cannot read {rel} ({exc.strerror or exc})")
                continue
            if failure is None and digest != self.files[rel].get("sha256"):
                failure = BundleError(f"{self.root}: {rel} has been modified or corrupted (sha256 mismatch)")
        if failure is not None:
            self._hashing = [(rel, future) for rel, future in pending]  # the same answer if asked again
            raise failure

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

    def array_header(self, rel: str) -> tuple[tuple[int, ...], np.dtype]:
        """Shape and dtype of a listed .npy file from its header alone, checked against the file size and
        against what the manifest implies (`schema.array_spec`): a header that declares a huge shape is
        refused before anything is allocated."""
        path = self.path(rel)

        def bad(reason: str) -> BundleError:
            return BundleError(f"{self.root}: {rel} is not a plain numeric .npy array ({reason})")

        try:
            with path.open("rb") as handle:
                version = np.lib.format.read_magic(handle)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
                elif version in ((2, 0), (3, 0)):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
                else:
                    raise bad(f"unknown .npy version {version}")
                offset = handle.tell()
            size = path.stat().st_size
        except (ValueError, EOFError, OSError, SyntaxError) as exc:
            raise bad(" ".join(str(exc).split())) from None
        if dtype.hasobject or dtype.fields is not None or dtype.kind not in "biuf":
            raise bad(f"dtype {dtype} is not a plain number type")
        if fortran and len(shape) > 1:
            raise bad("Fortran order; bundles store C order")
        if any(not isinstance(n, int) or n < 0 for n in shape):
            raise bad(f"invalid shape {shape}")
        expected_bytes = offset + int(np.prod(shape, dtype=object)) * dtype.itemsize
        if expected_bytes != size:
            raise bad(f"header declares shape {shape} of {dtype} ({expected_bytes} bytes with the header), "
                      f"the file has {size} bytes")
        spec = array_spec(self.manifest, rel)
        if spec is not None:
            kinds, want = spec
            if dtype.kind not in kinds:
                raise bad(f"dtype {dtype}, the format stores {'floats' if kinds == 'f' else 'integers'} here")
            if want is not None and (len(shape) != len(want) or any(w is not None and w != n
                                                                    for n, w in zip(shape, want))):
                shown = tuple("?" if w is None else w for w in want)
                raise bad(f"shape {shape}, the manifest (data.n_items/n_users, dims) implies {shown}")
        return tuple(shape), dtype

    def load_npy(self, rel: str, mmap: bool = False) -> np.ndarray:
        """A listed .npy array, never unpickled, its header checked first (`array_header`); float arrays
        must be finite (a NaN vector would score NaN and silently drop out of every ranking).

        An item array held by an index (format 2, `format.index_holding`) is read from that index instead,
        in the pass that checks the whole index file (`index_rows`)."""
        if index_holding(self.manifest, rel) is not None:
            return self.index_rows(rel)
        self.array_header(rel)
        path = self.path(rel)
        try:
            array = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
        except (ValueError, EOFError, OSError) as exc:
            reason = " ".join(str(exc).split())
            raise BundleError(f"{self.root}: {rel} is not a plain numeric .npy array ({reason})") from None
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise BundleError(f"{self.root}: {rel} holds non-finite values (NaN or inf)")
        if self._schema and array.size and is_code_array(self.manifest, rel):
            self._check_codes(rel, array)
        return array

    def index_rows(self, rel: str) -> np.ndarray:
        """The item array an index file holds (`items.vectors` in `index.item`, `items.text_embeddings` in
        `index.text`), float32 [n_items, width], checked like any array (shape against the manifest, finite)
        and with the whole index file checked on the way (`recengine.hnsw_file.read_vectors`). Records the
        file in `checked_indexes`, so the engine does not check it a second time while opening."""
        from ..hnsw_file import read_vectors
        from .format import IndexSpec

        space = index_holding(self.manifest, rel)
        spec = array_spec(self.manifest, rel)
        if space is None or spec is None:
            raise BundleError(f"{self.root}: {rel} is not an item array held by an index")
        _, (n_rows, width) = spec  # type: ignore[misc]
        if not isinstance(width, int):
            raise BundleError(f"{self.root}: {rel} holds item rows, but the manifest's dims do not give their width")
        index = IndexSpec.from_manifest(space, self.manifest["index"][space], width)
        rows = read_vectors(self.path(rel), index.dim, index.count, index.M)
        self.checked_indexes.add(rel)
        if n_rows is not None and rows.shape[0] != n_rows:
            raise BundleError(f"{self.root}: {rel} holds {rows.shape[0]} rows, the manifest's data.n_items "
                              f"says {n_rows}")
        return rows if rows.shape[1] == width else np.ascontiguousarray(rows[:, :width])

    def _check_codes(self, rel: str, array: np.ndarray) -> None:
        """Counts, offsets, rows and embedding codes are never negative; codes stay inside the table the
        manifest's vocabulary implies (`schema.code_bounds`)."""
        if int(array.min()) < 0:
            raise BundleError(f"{self.root}: {rel} holds negative values (counts, rows and codes are >= 0)")
        bounds = code_bounds(self.manifest, rel)
        if bounds is None:
            return
        columns = array.reshape(array.shape[0], -1) if array.ndim > 1 else array.reshape(-1, 1)
        if columns.shape[1] != len(bounds):
            raise BundleError(f"{self.root}: {rel} has {columns.shape[1]} columns, the manifest's vocabulary "
                              f"{len(bounds)}")
        highest = columns.max(axis=0)
        for j, (high, bound) in enumerate(zip(highest.tolist(), bounds)):
            if high >= bound:
                raise BundleError(f"{self.root}: {rel} column {j} holds code {high}, the vocabulary has {bound} "
                                  "(vocab.pop_bucket_edges / vocab.profile)")

    def load_json(self, rel: str) -> Any:
        """A listed JSON file, strict (no NaN/Infinity), with bounded nesting, and - for the id, text and
        attribute files - of the documented shape (`schema.check_json_file`)."""
        try:
            raw = self.path(rel).read_bytes()
        except OSError as exc:
            raise BundleError(f"{self.root}: cannot read {rel} ({exc.strerror or exc})") from None
        try:
            value = loads_json(raw)
        except ValueError as exc:
            raise BundleError(f"{self.root}: {rel} is corrupted ({exc})") from None
        if self._schema:
            try:
                check_json_file(self.manifest, rel, value)
            except BundleError as exc:
                raise BundleError(f"{self.root}: {exc}") from None
        return value

    def section(self, *keys: str) -> Any:
        """`manifest[k1][k2]...` or a BundleError naming the missing key."""
        node: Any = self.manifest
        for i, key in enumerate(keys):
            if not isinstance(node, dict) or key not in node:
                raise BundleError(f"{self.root}: manifest lacks {'.'.join(keys[: i + 1])}")
            node = node[key]
        return node


def open_bundle(path: str | Path, verify: bool = True, check_schema: bool = True,
                background_verify: bool = False) -> BundleReader:
    """Open and (by default) verify a bundle directory (see `BundleReader`). `background_verify`: the
    checksums are computed while the caller loads, and it must call `finish_verify()` before using anything."""
    return BundleReader(path, verify=verify, check_schema=check_schema, background_verify=background_verify)
