"""Nothing left behind: temporary directories of dead writers, `--force` without a missing moment, the umask.

The kill tests run the writer in a subprocess and kill it at a known point (the process signals itself
from inside the writer, so the timing is deterministic) or, for the export CLI, as soon as its temporary
directories exist.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from recengine.bundle import BundleWriter, open_bundle
from recengine.bundle import io as bundle_io
from recengine.errors import BundleError

REPO = Path(__file__).resolve().parents[2]
HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"


def write(out: Path, value: int = 1, force: bool = False) -> Path:
    with BundleWriter(out, force=force) as writer:
        writer.write_json("items/ids.json", [str(value)])
        writer.write_npy("items/vectors.npy", np.full((1, 2), value, dtype=np.float32))
        return writer.commit({"data": {"name": "t", "n_items": 1}})


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


def test_temporary_directories_carry_host_and_pid(tmp_path: Path) -> None:
    with BundleWriter(tmp_path / "b") as writer:
        assert writer.root.name.startswith(f".b.tmp-{HOST}-{os.getpid()}-")
        with writer.scratch() as scratch:
            assert Path(scratch).name.startswith(f".b.work-{HOST}-{os.getpid()}-")
            assert Path(scratch).parent == tmp_path
        assert not Path(scratch).exists()
        writer.commit({})
    assert siblings(tmp_path / "b") == []


def test_next_write_removes_only_dead_writers_leftovers(tmp_path: Path) -> None:
    out = tmp_path / "b"
    pid = dead_pid()
    stale = [tmp_path / f".b.tmp-{HOST}-{pid}-abc", tmp_path / f".b.work-{HOST}-{pid}-def",
             tmp_path / f".b.old-{HOST}-{pid}-ghi"]
    kept = [tmp_path / f".b.tmp-{HOST}-{os.getpid()}-live",   # a running writer (this process)
            tmp_path / f".b.tmp-otherhost-{pid}-remote",      # another machine's writer on a shared disk
            tmp_path / ".b.tmp-legacy",                        # no owner tag: cannot tell, left alone
            tmp_path / f".c.tmp-{HOST}-{pid}-other"]           # another target
    for path in stale + kept:
        path.mkdir()
        (path / "big.bin").write_bytes(b"x" * 1000)
    write(tmp_path / "b2")  # another target's write does not touch b's leftovers
    assert all(p.exists() for p in stale)
    write(out)
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in kept)


def test_force_replaces_without_a_missing_moment(tmp_path: Path) -> None:
    out = write(tmp_path / "b", 1)
    write(out, 2, force=True)
    assert open_bundle(out).load_json("items/ids.json") == ["2"]
    assert siblings(out) == []


def test_target_created_meanwhile_is_not_replaced_without_force(tmp_path: Path) -> None:
    out = tmp_path / "b"
    with pytest.raises(BundleError, match="already exists"):
        with BundleWriter(out) as writer:
            writer.write_json("items/ids.json", ["mine"])
            write(out, 7)  # another writer got there first
            writer.commit({})
    assert open_bundle(out).load_json("items/ids.json") == ["7"]
    assert siblings(out) == []


def test_force_fallback_restores_the_old_bundle_when_interrupted(tmp_path: Path, monkeypatch) -> None:
    """Without an atomic exchange two renames are needed; an interruption between them puts the old
    bundle back, and a process killed there leaves a backup the next open moves back into place."""
    out = write(tmp_path / "b", 1)
    monkeypatch.setattr(bundle_io, "_exchange", lambda a, b: False)
    real_rename = os.rename
    calls = []

    def rename(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # old -> backup done, new -> target interrupted
            raise KeyboardInterrupt
        return real_rename(src, dst)

    monkeypatch.setattr(bundle_io.os, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        write(out, 2, force=True)
    monkeypatch.setattr(bundle_io.os, "rename", real_rename)
    assert open_bundle(out).load_json("items/ids.json") == ["1"]
    assert siblings(out) == []
    write(out, 3, force=True)  # the fallback path itself works
    assert open_bundle(out).load_json("items/ids.json") == ["3"]
    assert siblings(out) == []


def test_a_stranded_backup_is_recovered_by_the_next_open_or_write(tmp_path: Path) -> None:
    out = write(tmp_path / "b", 1)
    pid = dead_pid()
    os.rename(out, tmp_path / f".b.old-{HOST}-{pid}-xyz")  # killed between the two renames of --force
    assert open_bundle(out).load_json("items/ids.json") == ["1"]
    assert siblings(out) == []
    os.rename(out, tmp_path / f".b.old-{HOST}-{pid}-xyz")
    with pytest.raises(BundleError, match="already exists"):
        BundleWriter(out)  # recovered first: the old bundle is logically still there
    assert open_bundle(out).load_json("items/ids.json") == ["1"]


@pytest.mark.parametrize("mask, mode", [(0o022, 0o755), (0o027, 0o750), (0o077, 0o700)])
def test_bundle_directory_honours_the_umask(tmp_path: Path, mask: int, mode: int) -> None:
    old = os.umask(mask)
    try:
        out = write(tmp_path / "b")
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == mode


_SAVE_AND_DIE = r"""
import os, signal, sys
from recengine import Engine
from recengine.bundle import io
engine = Engine.open(sys.argv[1], device="cpu")
engine.add_items([{"item_id": "killed-1", "title": "Saved when the process died"}])
if sys.argv[3] == "handled":   # what the CLI does: SIGTERM unwinds like Ctrl-C
    def stop(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)
seal = io.BundleWriter._seal
def seal_then_die(self, manifest):
    seal(self, manifest)
    os.kill(os.getpid(), signal.SIGTERM)   # the service stop arrives mid-save, files on disk
    import time; time.sleep(30)
io.BundleWriter._seal = seal_then_die
try:
    engine.save(sys.argv[2])
except KeyboardInterrupt:
    sys.exit(3)
"""


@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", ["default", "handled"])
def test_sigterm_during_save(lean_bundle: Path, tmp_path: Path, mode: str) -> None:
    """Default SIGTERM (a host that installs nothing) leaves a temp dir that the next save of the same
    target removes; with the CLI's handling nothing is left at all."""
    from recengine import Engine

    target = tmp_path / "saved"
    proc = subprocess.run([sys.executable, "-c", _SAVE_AND_DIE, str(lean_bundle), str(target), mode], cwd=REPO,
                          capture_output=True, text=True, timeout=200)
    assert not target.exists()
    if mode == "default":
        assert proc.returncode == -signal.SIGTERM, proc.stderr[-2000:]
        left = siblings(target)
        assert len(left) == 1 and left[0].startswith(".saved.tmp-"), left
        engine = Engine.open(lean_bundle, device="cpu")
        engine.save(target)
        assert siblings(target) == []
        assert Engine.open(target, device="cpu").n_items == engine.n_items
    else:
        assert proc.returncode == 3, proc.stderr[-2000:]
        assert siblings(target) == []


def _export_cmd(tiny_encoder_dir: Path, ml_tiny_dir: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "recengine", "export", str(ml_tiny_dir), "--out", str(out), "--profile", "quick",
            "--encoder", str(tiny_encoder_dir), "--quiet"]


def _start_export_and_wait(cmd: list[str], out: Path, tmpdir: Path) -> subprocess.Popen:
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if any(p.name.startswith(f".{out.name}.tmp-") for p in out.parent.iterdir()):
            time.sleep(0.3)  # well inside the work (training takes seconds)
            return proc
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"export never started writing: {proc.communicate()[1][-2000:]}")


@pytest.mark.timeout(300)
def test_sigterm_during_export_leaves_nothing_behind(tiny_encoder_dir: Path, ml_tiny_dir: Path,
                                                     tmp_path: Path) -> None:
    parent, tmpdir = tmp_path / "out", tmp_path / "tmp"
    parent.mkdir()
    tmpdir.mkdir()
    out = parent / "bundle"
    proc = _start_export_and_wait(_export_cmd(tiny_encoder_dir, ml_tiny_dir, out), out, tmpdir)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2, stderr[-2000:]
    assert stderr.strip().splitlines()[-1] == "error: terminated (SIGTERM)"
    assert "Traceback" not in stderr
    assert list(parent.iterdir()) == []
    assert list(tmpdir.iterdir()) == []  # the export's scratch space went too


@pytest.mark.timeout(300)
def test_sigkill_during_export_is_cleaned_by_the_next_write(tiny_encoder_dir: Path, ml_tiny_dir: Path,
                                                            tmp_path: Path) -> None:
    parent, tmpdir = tmp_path / "out", tmp_path / "tmp"
    parent.mkdir()
    tmpdir.mkdir()
    out = parent / "bundle"
    proc = _start_export_and_wait(_export_cmd(tiny_encoder_dir, ml_tiny_dir, out), out, tmpdir)
    proc.kill()
    proc.communicate(timeout=60)
    left = sorted(p.name for p in parent.iterdir())
    assert [n.split("-")[0] for n in left] == [".bundle.tmp", ".bundle.work"], left  # SIGKILL cannot clean up
    assert not [p for p in tmpdir.iterdir() if p.name.startswith("recengine")]  # scratch is beside the bundle
    with BundleWriter(out) as writer:  # the next writer of the same target
        assert [p.name for p in parent.iterdir()] == [writer.root.name]
    assert list(parent.iterdir()) == []
