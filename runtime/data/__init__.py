"""Data contract: load and validate a data directory into a `Dataset` (needs pandas: the export extra).

`load_dataset(None)` loads the embedded MovieLens ml-latest-small default.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .loader import LoadOptions, load_contract_dir
from .movielens import is_movielens_dir, load_movielens_dir, scene_from_timestamps
from .schema import WEIGHT_NOTE, Dataset, Interactions, ItemTable, LoadReport, data_warnings
from .text import build_item_text, is_text_column

EMBEDDED_MOVIELENS = Path(__file__).resolve().parent.parent / "datasets" / "ml_latest_small"


def load_dataset(path: str | Path | None = None, options: LoadOptions | None = None) -> Dataset:
    """Load `path` (data-contract directory or MovieLens layout); None means the embedded MovieLens."""
    directory = EMBEDDED_MOVIELENS if path is None else Path(path).expanduser()
    if not directory.exists():
        raise DataError(f"{directory}: no such data directory")
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory (DATA must be a directory of CSV or Parquet files)")
    if is_movielens_dir(directory):
        return load_movielens_dir(directory, options)
    if (directory / "movies.csv").is_file() and not any(
        (directory / f"items{suffix}").is_file() for suffix in (".csv", ".parquet")
    ):
        raise DataError(
            f"{directory}: has movies.csv but no ratings.csv (the MovieLens layout needs both) "
            f"and no items table of the generic data contract"
        )
    return load_contract_dir(directory, options)


__all__ = [
    "Dataset",
    "Interactions",
    "ItemTable",
    "LoadOptions",
    "LoadReport",
    "EMBEDDED_MOVIELENS",
    "build_item_text",
    "is_text_column",
    "load_dataset",
    "scene_from_timestamps",
    "WEIGHT_NOTE",
    "data_warnings",
]
