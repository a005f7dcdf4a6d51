"""Check the CLI's output paths before any work starts.

Why: `--json`/`--report`/`--out` used to be opened only at the end, so a directory given as `--json`, a
read-only place or a parent that is a file showed up as a traceback after a whole benchmark or export
had run. These checks run first and raise `OutputPathError` (a `RecengineError`: one line, exit 2).

Writability is tested by creating (and at once removing) a probe file, not with `os.access`: `root`
passes every permission check but still cannot write to a read-only file system.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import RecengineError


class OutputPathError(RecengineError):
    """An output path given on the command line cannot be written."""


def _nearest_existing(path: Path) -> Path:
    """`path` or its nearest existing ancestor (what `mkdir(parents=True)` would start from)."""
    current = path
    while not current.exists() and not current.is_symlink():
        if current.parent == current:
            break
        current = current.parent
    return current


def _probe_dir(directory: Path, option: str, target: Path) -> None:
    """Create and remove a file in `directory`: proves it is writable, as this user, on this file system."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".recengine-probe-", dir=directory)
    except OSError as exc:
        raise OutputPathError(f"{option} {target}: cannot write in {directory} ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)


def _writable_ancestor(path: Path, option: str) -> None:
    """The parents `path` needs can be created: the nearest existing one is a writable directory."""
    base = _nearest_existing(path.parent)
    if not base.is_dir():
        raise OutputPathError(f"{option} {path}: {base} is not a directory")
    _probe_dir(base, option, path)


def check_output_file(path: str | Path, option: str) -> Path:
    """A file the command will write (parents are created): not a directory, and writable."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise OutputPathError(f"{option} {target}: is a directory (give a file name)")
    if target.exists():
        try:
            with target.open("ab"):
                pass  # opened for writing without changing it
        except OSError as exc:
            raise OutputPathError(f"{option} {target}: cannot write it ({exc.strerror or exc})") from None
        return target
    _writable_ancestor(target, option)
    return target


def check_output_dir(path: str | Path, option: str) -> Path:
    """A directory the command will create or fill: not a file, and writable (or creatable)."""
    target = Path(path).expanduser()
    if target.exists() and not target.is_dir():
        raise OutputPathError(f"{option} {target}: exists and is not a directory")
    if target.is_dir():
        _probe_dir(target, option, target)
        return target
    _writable_ancestor(target, option)
    return target


def check_bundle_out(path: str | Path, option: str, force: bool) -> Path:
    """A bundle directory to be written: its parent exists and is writable (bundles are built in a
    sibling directory and renamed into place), and it does not exist unless `force`."""
    target = Path(path).expanduser()
    if target.exists() and not force:
        raise OutputPathError(f"{option} {target}: already exists (pass --force to replace it)")
    if target.exists() and not target.is_dir():
        raise OutputPathError(f"{option} {target}: exists and is not a directory")
    parent = target.resolve().parent
    if parent.exists() and not parent.is_dir():
        raise OutputPathError(f"{option} {target}: {parent} is not a directory")
    if not parent.is_dir():
        raise OutputPathError(f"{option} {target}: parent directory {parent} does not exist")
    _probe_dir(parent, option, target)
    return target


__all__ = ["OutputPathError", "check_output_file", "check_output_dir", "check_bundle_out"]
