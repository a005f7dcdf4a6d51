"""`recengine validate DATA`: the data checks of export, without training; every bad-input case of the
shared catalogue (tests/fixtures/bad_inputs.py) is exit 2 and one `error:` line naming the problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("pandas", reason="reading data needs pandas (the export extra)")

from click.testing import CliRunner  # noqa: E402

from recengine.cli import cli  # noqa: E402
from tests.fixtures.bad_inputs import CASES, write_case, write_good  # noqa: E402


def run(*args: str):
    return CliRunner().invoke(cli, ["validate", *args], prog_name="recengine")


def test_good_data_is_described(ml_tiny_dir: Path) -> None:
    result = run(str(ml_tiny_dir))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok: ml_tiny: ")
    assert "text_columns                title, genres, tags" in result.stdout
    assert "note: interactions: their weights (a 'weight' column; MovieLens: the rating) are read and checked " \
           "but not used" in result.stderr
    assert "(with timestamps, with weights)" in result.stdout
    summary = json.loads(run(str(ml_tiny_dir), "--json").stdout)
    assert summary["timestamps"] is True and summary["text_columns"] == ["title", "genres", "tags"]


def test_dropped_interactions_are_warned_about(tmp_path: Path) -> None:
    rows = ["user_id,item_id", "u1,i1", "u1,i2", "u2,i3"] + [f"u{i % 3},i{i % 3 + 1}" for i in range(40)] + ["u2,ghost"]
    result = run(str(write_good(tmp_path / "d", interactions=rows)))
    assert result.exit_code == 0, result.output
    assert "(no timestamps, no weights)" in result.stdout
    assert "warning: interactions.csv: dropped 1 interaction(s) with items missing from the catalogue" in result.stderr


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_bad_input_is_one_line_and_exit_2(tmp_path: Path, case) -> None:
    data = write_case(case.name, tmp_path / "data")
    result = run(str(data))
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert case.fragment in lines[0]
