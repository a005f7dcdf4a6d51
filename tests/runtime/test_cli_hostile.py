"""The CLI on a hostile host: unwritable output paths fail before the work, a full stdout, bytes that are
not UTF-8, an unknown user - each one line on stderr (exit 2, or a warning), never a traceback.

"Before the work" is shown by giving a bad output path together with an input that the work would
reject: the error must be about the output path.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from recengine.cli import cli
from recengine.cli.paths import OutputPathError, check_bundle_out, check_output_dir, check_output_file

REPO = Path(__file__).resolve().parents[2]


def run(*args: str):
    return CliRunner().invoke(cli, list(args), prog_name="recengine")


def one_error_line(result, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr


def call(*args: str | bytes, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recengine", *args], cwd=REPO, stdout=stdout,
                          stderr=subprocess.PIPE, timeout=180)


# --------------------------------------------------------------------------- path checks (unit)
def test_path_checks(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    assert check_output_file(tmp_path / "new" / "deeper" / "r.json", "--json") == tmp_path / "new" / "deeper" / "r.json"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    assert check_output_file(tmp_path / "file", "--json") == tmp_path / "file"
    assert (tmp_path / "file").read_text() == "x"  # and changes nothing
    assert check_output_dir(tmp_path / "dir", "--report") == tmp_path / "dir"
    assert check_bundle_out(tmp_path / "b", "--out", force=False) == tmp_path / "b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "file"]  # probe files are removed
    cases = [
        (lambda: check_output_file(tmp_path / "dir", "--json"), "is a directory"),
        (lambda: check_output_file(tmp_path / "file" / "r.json", "--json"), "is not a directory"),
        (lambda: check_output_file("/proc/recengine-test/r.json", "--json"), "cannot write in /proc"),
        (lambda: check_output_dir(tmp_path / "file", "--report"), "not a directory"),
        (lambda: check_output_dir("/proc/recengine-report", "--report"), "cannot write in /proc"),
        (lambda: check_bundle_out(tmp_path / "dir", "--out", force=False), "already exists"),
        (lambda: check_bundle_out(tmp_path / "file", "--out", force=True), "not a directory"),
        (lambda: check_bundle_out(tmp_path / "missing" / "b", "--out", force=False), "does not exist"),
        (lambda: check_bundle_out("/proc/recengine-bundle", "--out", force=False), "cannot write in /proc"),
    ]
    for check, fragment in cases:
        with pytest.raises(OutputPathError, match=fragment):
            check()


# --------------------------------------------------------------------------- commands: before the work
@pytest.mark.parametrize("option, make", [("--json", lambda t: t), ("--json", lambda t: t / "f" / "x.json"),
                                          ("--report", lambda t: t / "f"), ("--json", lambda t: Path("/proc/x.json"))])
def test_bench_latency_output_checked_before_opening_the_bundle(tmp_path: Path, option: str, make) -> None:
    (tmp_path / "f").write_text("a file")
    result = run("bench", "latency", str(tmp_path / "no-such-bundle"), option, str(make(tmp_path)))
    one_error_line(result, option)  # not "no such bundle directory": the path check came first


def test_bench_quality_report_checked_before_training(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("a file")
    result = run("bench", "quality", str(tmp_path / "no-such-data"), "--profile", "quick", "--report",
                 str(tmp_path / "f"))
    one_error_line(result, "--report")


@pytest.mark.parametrize("make, fragment", [(lambda t: t / "f" / "bundle", "is not a directory"),
                                            (lambda t: t / "missing" / "bundle", "does not exist"),
                                            (lambda t: Path("/proc/recengine-bundle"), "cannot write in /proc")])
def test_export_out_checked_before_training(tmp_path: Path, make, fragment: str) -> None:
    (tmp_path / "f").write_text("a file")
    result = run("export", str(tmp_path / "no-such-data"), "--out", str(make(tmp_path)), "--profile", "quick")
    one_error_line(result, fragment)


# --------------------------------------------------------------------------- commands: serving
def test_full_stdout_is_refused_before_the_work(tmp_path: Path) -> None:
    """stdout on /dev/full is known before anything runs: the error is about the output, not about the
    bundle that does not exist (which the work would have found first)."""
    with open("/dev/full", "w") as full:
        proc = call("bench", "latency", str(tmp_path / "no-such-bundle"), stdout=full)
    stderr = proc.stderr.decode()
    assert proc.returncode == 2, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    assert stderr.strip().splitlines() == [
        "error: cannot write the output: standard output is /dev/full (No space left on device)"]


_WITHOUT_PRECHECK = """
import sys
import recengine.cli as cli
cli.stdout_problem = lambda: None  # as for a disk that fills up while the command runs
sys.exit(cli.main(sys.argv[1:]))
"""


def test_stdout_failing_while_writing_is_one_line_exit_2(lean_bundle: Path) -> None:
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-c", _WITHOUT_PRECHECK, "search", str(lean_bundle), "comedy"],
                              cwd=REPO, stdout=full, stderr=subprocess.PIPE, timeout=180)
    stderr = proc.stderr.decode()
    assert proc.returncode == 2, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    assert stderr.strip().splitlines()[-1] == "error: cannot write the output (No space left on device)"


def test_text_that_is_not_utf8_is_one_line_exit_2(lean_bundle: Path) -> None:
    proc = call("search", str(lean_bundle), b"caf\xe9 \xff")
    stderr = proc.stderr.decode()
    assert proc.returncode == 2, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("error: TEXT is not valid UTF-8")
    proc = call("recommend", str(lean_bundle), "--user", b"\xff\xfe")
    assert proc.returncode == 2 and proc.stderr.decode().strip().splitlines()[-1].startswith(
        "error: --user is not valid UTF-8")


@pytest.mark.parametrize("option", ["--scene", "--profile", "--history", "--user"])
def test_undecodable_option_values(lean_bundle: Path, option: str) -> None:
    """What Python makes of undecodable argv bytes (surrogateescape): a lone surrogate."""
    value = "daypart=\udcff" if option in ("--scene", "--profile") else "x\udcfe"
    result = run("recommend", str(lean_bundle), option, value)
    one_error_line(result, f"{option} is not valid UTF-8")


def test_unknown_user_is_warned_about(lean_bundle: Path) -> None:
    from recengine import Engine

    known = Engine.open(lean_bundle, device="cpu").user_ids()[0]
    result = run("recommend", str(lean_bundle), "--user", "no-such-user-42", "--k", "3")
    assert result.exit_code == 0, result.output
    assert "warning: unknown user 'no-such-user-42'" in result.stderr
    assert len(result.stdout.strip().splitlines()) == 3
    result = run("recommend", str(lean_bundle), "--user", known, "--k", "3")
    assert result.exit_code == 0 and "warning" not in result.stderr


def test_unknown_history_items_are_warned_about(lean_bundle: Path) -> None:
    from recengine import Engine

    known = Engine.open(lean_bundle, device="cpu").item_ids()[0]
    result = run("recommend", str(lean_bundle), "--history", known, "--history", "nope-1", "--k", "3")
    assert result.exit_code == 0, result.output
    assert "warning: 1 --history item(s) not in the catalogue, skipped: 'nope-1'" in result.stderr
    assert len(result.stdout.strip().splitlines()) == 3
    result = run("recommend", str(lean_bundle), "--history", known, "--k", "3")
    assert result.exit_code == 0 and "warning" not in result.stderr


def test_the_table_lines_up_wide_and_long_ids() -> None:
    from recengine.cli.serve import _width

    assert _width("abc") == 3 and _width("用户2") == 5 and _width("ｆｕｌｌ") == 8


def test_hostile_bundle_via_cli_is_one_line(lean_bundle: Path, tmp_path: Path) -> None:
    from tests.fixtures.hostile_bundles import BY_NAME, make_case

    for name in ("npy_huge_shape", "manifest_deep_nesting", "dims_item_abc"):
        bundle = make_case(lean_bundle, tmp_path, BY_NAME[name])
        result = run("recommend", str(bundle), "--k", "3")
        one_error_line(result, BY_NAME[name].fragment)


def test_info_never_tracebacks_on_odd_manifests(lean_bundle: Path, tmp_path: Path) -> None:
    """`info` shows manifests as they are (no schema); any field set to another type prints or is one
    error line (exit 0 or 2), never a traceback (exit 1)."""
    import json
    import shutil

    bundle = tmp_path / "b"
    shutil.copytree(lean_bundle, bundle)
    base = json.loads((bundle / "manifest.json").read_text())
    paths = [("files", "tokenizer.json", "bytes"), ("files", "tokenizer.json"), ("files",), ("models", "encoder"),
             ("models", "encoder", "variants"), ("index", "item"), ("index", "item", "dim"), ("dims",), ("data",),
             ("metrics",), ("timings",), ("format_version",), ("created_at",)]
    for path in paths:
        for bad in (None, "x", -1, [], {}, True):
            manifest = json.loads(json.dumps(base))
            node = manifest
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = bad
            (bundle / "manifest.json").write_text(json.dumps(manifest))
            for args in (["info", str(bundle)], ["info", "--no-verify", str(bundle)]):
                result = run(*args)
                assert result.exit_code in (0, 2) and "Traceback" not in result.output, (path, bad, result.output)
