"""Every bad input of the corpus (tests/fixtures/bad_inputs.py) gives one clear DataError."""

from __future__ import annotations

from pathlib import Path

import pytest

from recengine.data import load_dataset
from recengine.errors import DataError
from tests.fixtures.bad_inputs import CASES, write_case, write_good


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gives_data_error(case, tmp_path: Path) -> None:
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
    data = load_dataset(write_good(tmp_path / "good"))
    assert data.n_items == 5 and data.n_users == 3 and len(data.interactions) == 9


def test_case_names_are_unique() -> None:
    assert len({c.name for c in CASES}) == len(CASES)
