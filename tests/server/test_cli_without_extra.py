"""Without the `serve` extra, `recengine serve` is one error line naming the extra (exit 2), and
`recengine --help` still lists it. Runs everywhere: the extra is hidden by an import blocker."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("starlette", "uvicorn"):
                raise ModuleNotFoundError(f"blocked: {name}", name=name)
            return None

    sys.meta_path.insert(0, Block())
    from recengine.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, timeout=120)


def test_serve_without_the_extra_names_it(tmp_path: Path) -> None:
    r = _run("serve", str(tmp_path))
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        "error: recengine serve needs the serve extra (missing: starlette, uvicorn): pip install 'recengine[serve]'"]


def test_help_lists_serve_without_the_extra() -> None:
    r = _run("--help")
    assert r.returncode == 0, r.stderr
    assert "serve" in r.stdout
