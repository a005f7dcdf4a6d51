"""Every bad input of the corpus (tests/fixtures/bad_inputs.py) gives one clear DataError."""

from __future__ import annotations

from pathlib import Path

import pytest

from recengine.data import load_dataset
from recengine.errors import DataError
from tests.fixtures.bad_inputs import CASES, write_case, write_good


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gives_data_error(case, tmp_path: Path) -> None:
    pytest.importorskip("pandas", reason="the data loader needs pandas (the export extra)")
    path = write_case(case.name, tmp_path)
    with pytest.raises(DataError) as info:
        load_dataset(path)
    message = str(info.value)
    assert case.fragment in message
    for fragment in case.extra_fragments:
        assert fragment in message
    assert "\n" not in message, "the CLI prints the message as one line"
    assert "Traceback" not in message


def test_corpus_starts_from_a_good_directory(tmp_path: Path) -> None:
    """The cases are edits of a directory that loads: otherwise they could fail for the wrong reason."""
    pytest.importorskip("pandas", reason="the data loader needs pandas (the export extra)")
    data = load_dataset(write_good(tmp_path / "good"))
    assert data.n_items == 5 and data.n_users == 3 and len(data.interactions) == 9


def test_case_names_are_unique() -> None:
    assert len({c.name for c in CASES}) == len(CASES)


def _export_invocation(data: Path, out: Path) -> list[str] | None:
    """`recengine export` argv for DATA and the output dir, read off the command's own parameters."""
    import click

    from recengine.cli import cli

    command = cli.commands.get("export")
    if command is None:
        return None
    args: list[str] = ["export"]
    out_given = False
    for param in command.params:
        if isinstance(param, click.Argument):
            args.append(str(data))
        elif isinstance(param, click.Option) and param.name in ("out", "output", "out_dir", "output_dir"):
            args += [param.opts[0], str(out)]
            out_given = True
        elif isinstance(param, click.Option) and param.name == "data":
            args += [param.opts[0], str(data)]
    return args if out_given else None


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_via_cli_export_exits_2_and_leaves_nothing(case, tmp_path: Path) -> None:
    # Skipped only where the export extra is not installed (a lean runtime install); with it, a missing
    # or changed `export` command is a failure, never a skip.
    pytest.importorskip("torch", reason="`recengine export` needs the export extra (torch)")
    pytest.importorskip("pandas", reason="the data loader needs pandas (the export extra)")
    from click.testing import CliRunner

    from recengine.cli import cli

    data = write_case(case.name, tmp_path / "data")
    out_parent = tmp_path / "outputs"
    out_parent.mkdir()
    args = _export_invocation(data, out_parent / "bundle")
    assert args is not None, ("`recengine export` with an output option is not registered although the export "
                              f"extra is installed (commands: {sorted(cli.commands)})")
    result = CliRunner().invoke(cli, args, prog_name="recengine")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.stderr
    if result.stderr.startswith("error: "):  # ours; click's own usage errors have their own format
        assert len(result.stderr.strip().splitlines()) == 1
        assert case.fragment in result.stderr
    assert list(out_parent.iterdir()) == [], "a failed export must leave nothing behind"
