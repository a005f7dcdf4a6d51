"""`import recengine` and every runtime module import without torch/transformers (and without the extras).

Each check runs in a fresh interpreter whose meta-path hook makes the forbidden imports fail, then walks
the whole `recengine` runtime package (runtime/) plus the CLI command modules, so a module added later is
covered without editing this test.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import importlib, importlib.abc, json, pkgutil, sys

    BLOCKED = set(sys.argv[1].split(","))
    SERVE_EXTRA = {"starlette", "uvicorn", "httptools", "uvloop", "pydantic", "httpx", "aiohttp"}
    attempts, needs_serve = [], []

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                attempts.append(name)
                raise ModuleNotFoundError(f"blocked by test_lean_import: {name}", name=name)
            return None

    sys.meta_path.insert(0, Block())
    for mod in list(sys.modules):
        if mod.split(".")[0] in BLOCKED:
            del sys.modules[mod]

    import recengine
    import recengine.cli

    failures, imported = {}, []
    names = [m.name for m in pkgutil.walk_packages(recengine.__path__, "recengine.")]
    names += [module for module, _ in recengine.cli._COMMANDS]
    for name in sorted(set(names)):
        if name == "recengine.__main__":
            continue  # runs the CLI on import
        try:
            importlib.import_module(name)
            imported.append(name)
        except ModuleNotFoundError as exc:
            if name.startswith("recengine.export.") or name.startswith("recengine.bench."):
                if exc.name and name.startswith(exc.name):
                    continue  # that command module does not exist (yet)
            top = (exc.name or "").split(".")[0]
            if name.startswith("recengine.server.") and top in SERVE_EXTRA and top not in BLOCKED:
                needs_serve.append(name)  # the HTTP server's modules need the `serve` extra, not installed here
                continue
            failures[name] = f"{type(exc).__name__}: {exc}"
        except Exception as exc:
            failures[name] = f"{type(exc).__name__}: {exc}"
    commands = sorted(recengine.cli.cli.commands)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    print(json.dumps({"imported": imported, "failures": failures, "attempts": sorted(set(attempts)),
                      "loaded": loaded, "commands": commands, "needs_serve": needs_serve}))
    """
)


def run_blocked(blocked: tuple[str, ...]) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, ",".join(blocked)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    # On a lean install (`.[cpu,test]`, CI's first stage) the server modules cannot import for want of the
    # `serve` extra; wherever that extra is installed they must import like every other module.
    if all(importlib.util.find_spec(m) is not None for m in ("starlette", "uvicorn", "pydantic")):
        assert report["needs_serve"] == [], report["needs_serve"]
    return report


def test_runtime_never_imports_torch_or_transformers() -> None:
    report = run_blocked(("torch", "transformers", "peft"))
    assert report["failures"] == {}
    assert report["attempts"] == [], f"runtime modules tried to import {report['attempts']}"
    assert report["loaded"] == []
    # the walk really covered the foundation and the CLI
    for module in ("recengine.data", "recengine.split", "recengine.metrics", "recengine.bundle.io",
                   "recengine.cli", "recengine.cli.info"):
        assert module in report["imported"]
    assert "info" in report["commands"]


@pytest.mark.parametrize("extra", [("pandas", "pyarrow"), ("matplotlib", "implicit", "scipy", "sklearn")])
def test_runtime_imports_without_the_optional_extras(extra: tuple[str, ...]) -> None:
    """A lean `pip install recengine[cpu]` has no pandas/matplotlib: importing must still work (the data
    loader and the bench import them inside functions, with a DependencyError naming the extra)."""
    report = run_blocked(extra)
    assert report["failures"] == {}
    assert report["loaded"] == []
    assert "info" in report["commands"]


def test_missing_pandas_is_a_dependency_error_naming_the_extra(tmp_path) -> None:
    script = textwrap.dedent(
        """
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "pandas":
                    raise ModuleNotFoundError("blocked", name=name)
        sys.meta_path.insert(0, Block())
        from recengine.data import load_dataset
        from recengine.errors import DependencyError
        try:
            load_dataset(sys.argv[1])
        except DependencyError as exc:
            print(exc)
        """
    )
    from tests.fixtures.bad_inputs import write_good

    data = write_good(tmp_path / "data")
    proc = subprocess.run([sys.executable, "-c", script, str(data)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "pandas" in proc.stdout and "recengine[export]" in proc.stdout
