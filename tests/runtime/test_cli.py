"""The `recengine` command line: help, version, `info`, and user errors as exit 2 + one line on stderr."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from recengine import __version__
from recengine.bundle import MANIFEST_NAME, BundleWriter
from recengine.bundle.format import FORMAT_VERSION
from recengine.cli import cli, main


@pytest.fixture()
def bundle(tmp_path: Path) -> Path:
    with BundleWriter(tmp_path / "bundle") as writer:
        writer.write_npy("items/vectors.npy", np.zeros((3, 4), dtype=np.float32))
        writer.write_json("items/ids.json", ["a", "b", "c"])
        return writer.commit({
            "data": {"name": "ml_tiny", "n_items": 3, "n_users": 2, "n_interactions": 7, "fingerprint": "ab" * 32},
            "dims": {"text": 384, "item": 4},
            "models": {"encoder": {"variants": {"fp32": {}, "int8": {}}}},
            "index": {"item": {"space": "ip", "dim": 4, "M": 16, "count": 3}},
            "metrics": {"test": {"fp32": {"ndcg@10": 0.12345}}},
            "timings": {"encoder": 1.5},
        })


def run(*args: str):
    return CliRunner().invoke(cli, list(args), prog_name="recengine")


def test_help_lists_the_commands() -> None:
    result = run("--help")
    assert result.exit_code == 0
    assert "info" in result.output
    assert run("-h").output == result.output
    assert run("info", "--help").exit_code == 0


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0 and result.output.strip() == f"recengine, version {__version__}"


def test_info_summary(bundle: Path) -> None:
    result = run("info", str(bundle))
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"format            recengine-bundle {FORMAT_VERSION}" in out  # what the writer stamps
    assert "ml_tiny: 3 items, 2 users, 7 interactions (fingerprint abababababab)" in out
    assert "dims              text=384, item=4" in out
    assert "model encoder     fp32, int8" in out
    assert "index item        space=ip, dim=4, M=16, count=3" in out
    assert "index text        none (search scans the text embeddings exactly)" in out  # 3 items: scanned
    assert "test.fp32.ndcg@10" in out and "0.1235" in out
    assert "time    encoder" in out and "1.5000 s" in out
    assert "files             2 (" in out


def test_info_json_is_the_manifest(bundle: Path) -> None:
    result = run("info", "--json", str(bundle))
    assert result.exit_code == 0
    assert json.loads(result.output) == json.loads((bundle / MANIFEST_NAME).read_text())


def test_info_survives_odd_manifest_sections(bundle: Path) -> None:
    manifest = json.loads((bundle / MANIFEST_NAME).read_text())
    manifest.update(data=[1, 2], models="x", metrics={"a": [1, 2], "grid": [{"x": 1}, {"x": 2}]}, timings=None)
    (bundle / MANIFEST_NAME).write_text(json.dumps(manifest))
    result = run("info", str(bundle))
    assert result.exit_code == 0, result.output
    assert "grid" in result.output and "2 points (see --json)" in result.output  # a table is summarised


@pytest.mark.parametrize("problem", ["missing", "tampered", "future_version", "a_file"])
def test_info_user_errors_exit_2_with_one_line(bundle: Path, tmp_path: Path, problem: str) -> None:
    target = bundle
    if problem == "missing":
        target = tmp_path / "nope"
    elif problem == "tampered":
        (bundle / "items" / "ids.json").write_text('["x", "y", "z"]')
    elif problem == "future_version":
        manifest = json.loads((bundle / MANIFEST_NAME).read_text())
        manifest["format_version"] = "9.0"
        (bundle / MANIFEST_NAME).write_text(json.dumps(manifest))
    else:
        target = bundle / "items" / "ids.json"
    result = run("info", str(target))
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr


def test_no_verify_skips_checksums(bundle: Path) -> None:
    (bundle / "items" / "ids.json").write_text('["x", "y", "z"]')
    assert run("info", "--no-verify", str(bundle)).exit_code == 0


def test_unknown_command_is_a_usage_error() -> None:
    result = run("frobnicate")
    assert result.exit_code == 2 and "No such command" in result.stderr


def test_main_returns_the_exit_code(bundle: Path, capsys) -> None:
    assert main(["info", str(bundle)]) == 0
    assert main(["info", str(bundle.parent / "nope")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_python_dash_m_recengine(bundle: Path, tmp_path: Path) -> None:
    """The real entry point, in a fresh interpreter: version, info, and a user error."""
    def call(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "recengine", *args], capture_output=True, text=True, timeout=120
        )

    version = call("--version")
    assert version.returncode == 0 and __version__ in version.stdout
    info = call("info", str(bundle))
    assert info.returncode == 0 and "recengine-bundle" in info.stdout
    bad = call("info", str(tmp_path / "missing"))
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert bad.stderr.strip() == f"error: {tmp_path / 'missing'}: no such bundle directory"
