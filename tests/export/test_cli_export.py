"""`recengine export`: options reach the config, and every bad input is exit code 2 + one line, no output."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from recengine.cli import cli
from tests.fixtures.bad_inputs import write_case, write_good


def run(*args: str):
    return CliRunner().invoke(cli, ["export", *args], prog_name="recengine")


def _assert_clean_failure(result, out_parent: Path, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error: "), result.output
    assert fragment in lines[-1]
    assert "Traceback" not in result.output
    assert sorted(p.name for p in out_parent.iterdir()) == []


def test_export_help_lists_the_knobs():
    result = run("--help")
    assert result.exit_code == 0
    for option in ("--out", "--profile", "--config", "--encoder", "--finetune", "--device", "--epochs", "--seed",
                   "--set", "--force", "--quiet"):
        assert option in result.output


@pytest.mark.parametrize("case,fragment", [
    ("missing_data_dir", "no such data directory"),
    ("items_missing_item_id", "missing required column(s) 'item_id'"),
    ("unparsable_timestamp", "unparsable timestamp"),
    ("movielens_rating_text", "not a number"),
])
def test_bad_data_exits_2_and_leaves_nothing(tmp_path: Path, case: str, fragment: str):
    data = write_case(case, tmp_path / "data")
    out_parent = tmp_path / "out"
    out_parent.mkdir()
    result = run(str(data), "--out", str(out_parent / "bundle"), "--profile", "quick", "--quiet")
    _assert_clean_failure(result, out_parent, fragment)


def test_too_small_data_set_exits_2(tmp_path: Path):
    data = write_good(tmp_path / "data")
    out_parent = tmp_path / "out"
    out_parent.mkdir()
    result = run(str(data), "--out", str(out_parent / "bundle"), "--profile", "quick", "--quiet")
    _assert_clean_failure(result, out_parent, "too little data")


def test_existing_output_exits_2_unless_force(tmp_path: Path, ml_tiny_dir: Path):
    out = tmp_path / "bundle"
    out.mkdir()
    result = run(str(ml_tiny_dir), "--out", str(out), "--profile", "quick", "--quiet")
    assert result.exit_code == 2 and "already exists" in result.output and "--force" in result.output


def test_broken_encoder_exits_2(tmp_path: Path, ml_tiny_dir: Path):
    out_parent = tmp_path / "out"
    out_parent.mkdir()
    result = run(str(ml_tiny_dir), "--out", str(out_parent / "b"), "--profile", "quick", "--quiet",
                 "--encoder", str(tmp_path / "nope"))
    _assert_clean_failure(result, out_parent, "nope")
    empty = tmp_path / "empty-encoder"
    empty.mkdir()
    result = run(str(ml_tiny_dir), "--out", str(out_parent / "b"), "--profile", "quick", "--quiet",
                 "--encoder", str(empty))
    _assert_clean_failure(result, out_parent, "empty-encoder")


@pytest.mark.parametrize("args,fragment", [
    (("--set", "user.nosuch=3"), "user.nosuch"),
    (("--set", "user.epochs=lots"), "user.epochs"),
    (("--set", "no-equals-sign"), "KEY=VALUE"),
])
def test_bad_config_values_exit_2(tmp_path: Path, ml_tiny_dir: Path, args: tuple[str, ...], fragment: str):
    out_parent = tmp_path / "out"
    out_parent.mkdir()
    result = run(str(ml_tiny_dir), "--out", str(out_parent / "b"), "--profile", "quick", *args)
    _assert_clean_failure(result, out_parent, fragment)


def test_bad_config_file_exits_2(tmp_path: Path, ml_tiny_dir: Path):
    cfg = tmp_path / "export.toml"
    cfg.write_text("[user\nepochs = 3\n")
    out_parent = tmp_path / "out"
    out_parent.mkdir()
    result = run(str(ml_tiny_dir), "--out", str(out_parent / "b"), "--config", str(cfg))
    _assert_clean_failure(result, out_parent, "invalid TOML")


def test_cuda_without_gpu_exits_2(tmp_path: Path, ml_tiny_dir: Path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: --device cuda is valid here")
    out_parent = tmp_path / "out"
    out_parent.mkdir()
    result = run(str(ml_tiny_dir), "--out", str(out_parent / "b"), "--profile", "quick", "--quiet",
                 "--device", "cuda")
    _assert_clean_failure(result, out_parent, "cuda")
