"""`recengine.progress`: bars redirected to a file write a line now and then, not a redraw per step."""

from __future__ import annotations

import pytest


def test_a_redirected_bar_writes_a_few_lines_for_many_steps(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tqdm", reason="bars need tqdm (the export and bench extras)")
    from recengine.progress import Progress

    bar = Progress().bar(range(500), desc="steps")  # pytest's captured stderr is not a terminal
    for i in bar:
        bar.set_postfix(loss=f"{i:.4f}")
    bar.close()
    err = capsys.readouterr().err
    redraws = err.replace("\r", "\n").strip().splitlines()
    assert 1 <= len(redraws) <= 3, redraws
    assert "500/500" in redraws[-1] and "loss=499" in redraws[-1]


def test_warnings_show_even_when_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    from recengine.progress import Progress

    Progress(quiet=True).message("hidden")
    Progress(quiet=True).warn("dropped 2 rows")
    assert capsys.readouterr().err == "warning: dropped 2 rows\n"
