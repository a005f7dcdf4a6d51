"""Read a data directory (CSV or Parquet) into a validated `Dataset`.

Every problem a user can cause is reported as a `DataError` naming the file, the column, the row (1-based
line number for CSV, 0-based row for Parquet) and what is wrong, so the CLI can print one clear line.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._deps import require
from ..errors import DataError
from .schema import Dataset, Interactions, ItemTable, LoadReport
from .text import build_item_text, is_missing, is_text_column

TABLE_SUFFIXES = (".csv", ".parquet")


@dataclass(frozen=True)
class LoadOptions:
    """Knobs of the loader's validation."""

    max_unknown_item_fraction: float = 0.05
    """Interactions with items missing from the catalogue are dropped with a counted warning; past this
    share of all interactions the loader refuses the data (it is almost surely the wrong catalogue)."""
    min_interactions: int = 1


def _pd() -> Any:
    return require("pandas", "Reading a data directory")


def find_table(directory: Path, stem: str, required: bool) -> Path | None:
    """`directory/stem.csv` or `.parquet`; a `DataError` if required and absent, or if both exist."""
    found = [directory / f"{stem}{suf}" for suf in TABLE_SUFFIXES if (directory / f"{stem}{suf}").is_file()]
    if len(found) > 1:
        raise DataError(f"{directory}: both {found[0].name} and {found[1].name} exist; keep one")
    if not found:
        if required:
            raise DataError(f"{directory}: missing the {stem} table (expected {stem}.csv or {stem}.parquet)")
        return None
    return found[0]


def _row_label(path: Path, row: int) -> str:
    """Human row reference: CSV line number (header is line 1) or Parquet row index."""
    if path.suffix == ".csv":
        return f"line {row + 2}"
    return f"row {row}"


def _rows_label(path: Path, rows: np.ndarray, limit: int = 5) -> str:
    """"line 3" / "lines 3, 4 and 7 more" (CSV) or "row 0" / "rows 0, 5" (Parquet)."""
    shown = ", ".join(_row_label(path, int(r)).split(" ")[1] for r in rows[:limit])
    unit = "line" if path.suffix == ".csv" else "row"
    plural = "s" if len(rows) > 1 else ""
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return f"{unit}{plural} {shown}{more}"


def _one_line(exc: BaseException) -> str:
    """A third-party exception message squeezed onto one line (the CLI prints one line per error)."""
    return " ".join(str(exc).split())


def _check_utf8(path: Path) -> None:
    """Stream the file through a strict UTF-8 decoder; report the line of the first bad byte."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    offset = 0
    lines = 1
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                # exc.object = bytes held over from the previous chunk + this chunk
                bad = max(0, exc.start - (len(exc.object) - len(chunk)))
                line = lines + chunk[:bad].count(b"\n")
                raise DataError(
                    f"{path}: line {line}: bytes that are not valid UTF-8 at byte offset {offset + bad} "
                    f"(save the file as UTF-8)"
                ) from None
            lines += chunk.count(b"\n")
            offset += len(chunk)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise DataError(
                f"{path}: line {lines}: the file ends inside a multi-byte character (not valid UTF-8)"
            ) from None


def _csv_header(path: Path) -> list[str]:
    """The raw header fields (pandas silently renames duplicate columns to `name.1`; we must see them)."""
    import csv

    with path.open("r", encoding="utf-8-sig", newline="") as handle:
        first = next(csv.reader(handle), [])
    return [field.strip() for field in first]


def read_table(path: Path) -> Any:
    """Read one CSV/Parquet file with every CSV column as string (ids must never become floats).

    Why strings: "007" must stay "007", and an id column must not turn into floats because one row is
    empty. A UTF-8 byte-order mark at the start of a CSV file is accepted (spreadsheet exports add one).
    """
    pd = _pd()
    try:
        if path.stat().st_size == 0:
            raise DataError(f"{path}: the file is empty")
        if path.suffix == ".csv":
            _check_utf8(path)
            header = _csv_header(path)
            if not any(header):
                raise DataError(f"{path}: the file is empty (no header line)")
            dupes = sorted({h for h in header if h and header.count(h) > 1})
            if dupes:
                raise DataError(f"{path}: duplicate column name(s) {dupes} in the header")
            try:
                frame = pd.read_csv(
                    path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig",
                    skipinitialspace=False,
                )
            except pd.errors.EmptyDataError:
                raise DataError(f"{path}: the file is empty") from None
            except pd.errors.ParserError as exc:
                raise DataError(f"{path}: not a readable CSV file: {_one_line(exc)}") from None
        else:
            require("pyarrow", "Reading Parquet files")
            try:
                frame = pd.read_parquet(path)
            except Exception as exc:  # pyarrow raises many unrelated types for a broken file
                raise DataError(f"{path}: not a readable Parquet file: {_one_line(exc)}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    dupes = frame.columns[frame.columns.duplicated()].tolist()
    if dupes:
        raise DataError(f"{path}: duplicate column name(s) {dupes}")
    unnamed = [i for i, c in enumerate(frame.columns) if not c or c.startswith("Unnamed: ")]
    for i in unnamed:
        if frame.iloc[:, i].notna().any():
            raise DataError(f"{path}: column {i + 1} of the header has no name but holds values")
    if unnamed:  # empty trailing columns (a trailing comma on every line) carry nothing: drop them
        frame = frame.drop(columns=[frame.columns[i] for i in unnamed])
    if len(frame) == 0:
        raise DataError(f"{path}: the file has a header but no rows")
    return frame


def _require_columns(path: Path, frame: Any, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: missing required column(s) {', '.join(repr(c) for c in missing)} "
            f"(found: {', '.join(map(str, frame.columns))})"
        )


def _id_text(value: Any) -> str | None:
    """One id as a stripped string; None when missing. Integral floats (a Parquet id column that became
    float because of a null) print without ".0" so they still match the same id written as an integer."""
    if is_missing(value):
        return None
    if isinstance(value, (float, np.floating)):
        if float(value).is_integer():
            return str(int(value))
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return str(value).strip()


def _id_column(path: Path, frame: Any, column: str, label: str | None = None) -> np.ndarray:
    """A column of ids as stripped strings; NaN/empty ids are an error naming the rows.

    `label` is the column's name in the user's file when an adapter renamed it (MovieLens `movieId`).
    """
    values = np.array([_id_text(v) for v in frame[column].tolist()], dtype=object)
    bad = np.flatnonzero([v is None or v == "" or v.lower() == "nan" for v in values])
    if len(bad):
        raise DataError(
            f"{path}: column '{label or column}': missing (empty or NaN) id at {_rows_label(path, bad)}"
        )
    return values


def _float_column(path: Path, frame: Any, column: str, label: str | None = None) -> np.ndarray:
    pd = _pd()
    series = frame[column]
    numeric = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.flatnonzero(~np.isfinite(numeric) & series.notna().to_numpy())
    if len(bad):
        sample = series.iloc[int(bad[0])]
        raise DataError(
            f"{path}: column '{label or column}': not a number at {_rows_label(path, bad)} (e.g. {sample!r})"
        )
    return numeric


def _unix_seconds(parsed: Any) -> np.ndarray:
    """tz-aware datetimes -> float64 unix seconds, whatever the resolution (pandas 3 parses strings to
    microseconds and Parquet may hold milli/micro/nanoseconds, so `astype(int64)` is not seconds)."""
    pd = _pd()
    epoch = pd.Timestamp("1970-01-01", tz="UTC")
    return ((parsed - epoch) / pd.Timedelta(seconds=1)).to_numpy(dtype=np.float64)


def parse_timestamps(path: Path, frame: Any, column: str = "timestamp") -> np.ndarray:
    """Unix seconds (int/float) or ISO 8601 strings -> float64 unix seconds; bad rows are an error.

    A column may mix both forms row by row. ISO strings without a UTC offset are read as UTC.
    """
    pd = _pd()
    series = frame[column]
    missing = np.flatnonzero(series.isna().to_numpy())
    if len(missing):
        raise DataError(f"{path}: column '{column}': empty timestamp at {_rows_label(path, missing)}")
    if pd.api.types.is_datetime64_any_dtype(series):
        seconds = _unix_seconds(pd.to_datetime(series, utc=True))
        _check_range(path, column, seconds, series, np.ones(len(seconds), bool))
        return seconds
    if pd.api.types.is_bool_dtype(series):
        raise DataError(f"{path}: column '{column}': booleans are not timestamps (expected unix seconds or ISO 8601)")
    numeric = pd.to_numeric(series, errors="coerce")
    num = numeric.to_numpy(dtype=np.float64, na_value=np.nan)
    text_rows = ~np.isfinite(num)
    if text_rows.any():  # only those rows to strings: a whole column of 25M numbers would cost ~1 GB of them
        as_text = series[text_rows].astype(str).str.strip()
        parsed = pd.to_datetime(as_text, utc=True, errors="coerce", format="ISO8601")
        bad = np.flatnonzero(text_rows)[parsed.isna().to_numpy()]
        if len(bad):
            raise DataError(
                f"{path}: column '{column}': unparsable timestamp at {_rows_label(path, bad)} "
                f"(e.g. {str(series.iloc[int(bad[0])]).strip()!r}; expected unix seconds or ISO 8601)"
            )
        num = num.copy()
        num[text_rows] = _unix_seconds(parsed)
    _check_range(path, column, num, series, text_rows)
    return num


TIMESTAMP_UNITS_ABOVE = 1e11
"""Unix seconds above this are past the year 5138: such values are milliseconds (or finer), not seconds."""
TIMESTAMP_MAX = 1e19
"""Beyond unix nanoseconds of the year 2286: no clock wrote it (a 1e30 would overflow every date derived)."""


def _check_range(path: Path, column: str, seconds: np.ndarray, series: Any, dates: np.ndarray) -> None:
    """Refuse timestamps no event has, naming the value as written (`series`, the column as read; `dates`: the
    rows written as dates, not numbers): any before 1970; a date past the year 5138 (a placeholder such as
    9999-12-31); a number beyond `TIMESTAMP_MAX`; and a column mixing unix seconds (or dates) with numbers only
    milliseconds (or finer) can be: sorted together, every millisecond row would land after every second row."""
    def written(row: int) -> str:
        return str(series.iloc[row]).strip()

    def fail(rows: np.ndarray, what: str) -> None:
        raise DataError(f"{path}: column '{column}': {what} at {_rows_label(path, rows)} "
                        f"(e.g. {written(int(rows[0]))!r}; expected unix seconds since 1970 or ISO 8601)")

    before = np.flatnonzero(seconds < 0)
    if len(before):
        fail(before, "timestamp before 1970")
    far = np.flatnonzero(dates & (seconds > TIMESTAMP_UNITS_ABOVE))
    if len(far):
        fail(far, "date past the year 5138 (a placeholder date?)")
    huge = np.flatnonzero(~dates & (seconds > TIMESTAMP_MAX))
    if len(huge):
        fail(huge, "timestamp out of range")
    large = ~dates & (seconds > TIMESTAMP_UNITS_ABOVE)
    if large.any() and not large.all():
        rows = np.flatnonzero(large)
        raise DataError(
            f"{path}: column '{column}': timestamps in two units: {len(rows)} of {len(seconds)} rows hold numbers "
            f"only milliseconds (or finer) can be (e.g. {written(int(rows[0]))!r} at "
            f"{_rows_label(path, rows)}), the rest unix seconds or ISO dates; convert the column to one unit"
        )


def _attr_columns(path: Path, frame: Any, prefix: str = "attr_") -> dict[str, np.ndarray]:
    """`attr_*` columns: numeric when every non-empty value parses as a number, categorical otherwise."""
    pd = _pd()
    out: dict[str, np.ndarray] = {}
    for col in frame.columns:
        if not str(col).startswith(prefix):
            continue
        series = frame[col]
        numeric = pd.to_numeric(series, errors="coerce")
        present = series.notna()
        if present.any() and numeric[present].notna().all():
            out[col] = numeric.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            out[col] = np.array(["" if is_missing(v) else str(v).strip() for v in series], dtype=object)
    return out


def _context_columns(frame: Any) -> dict[str, np.ndarray]:
    return {
        col: np.array(["" if is_missing(v) else str(v).strip() for v in frame[col]], dtype=object)
        for col in frame.columns
        if str(col).startswith("ctx_")
    }


def fingerprint_files(paths: list[Path]) -> str:
    """sha256 over the names and bytes of the source files, in a stable order."""
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.name):
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def build_items(
    path: Path, frame: Any, vectors: np.ndarray | None = None, labels: Mapping[str, str] | None = None
) -> ItemTable:
    """Validate the items table and build each item's text.

    `labels` maps contract column names to the names in the user's file, for messages (adapters rename).
    """
    labels = labels or {}
    id_label = labels.get("item_id", "item_id")
    _require_columns(path, frame, ("item_id",))
    ids = _id_column(path, frame, "item_id", id_label)
    uniq, first, counts = np.unique(ids.astype(str), return_index=True, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1]
        rows = np.flatnonzero(np.isin(ids.astype(str), dup))
        raise DataError(
            f"{path}: column '{id_label}': duplicate item id(s) {', '.join(repr(str(d)) for d in dup[:5])}"
            f"{' ...' if len(dup) > 5 else ''} at {_rows_label(path, rows)}"
        )
    text_columns = tuple(str(c) for c in frame.columns if is_text_column(str(c)))
    if not text_columns:
        raise DataError(
            f"{path}: no text column (any column other than item_id and attr_*, e.g. 'title' or 'description')"
        )
    records = frame[list(text_columns)].to_dict("records")
    texts = [build_item_text(r, text_columns) for r in records]
    empty = np.flatnonzero([not t for t in texts])
    if len(empty):
        raise DataError(
            f"{path}: empty item text (all of {', '.join(text_columns)} empty) at {_rows_label(path, empty)}"
        )
    if vectors is not None and vectors.shape[0] != len(ids):
        raise DataError(
            f"{path.parent / 'item_vectors.npy'}: item_vectors.npy has {vectors.shape[0]} rows but {path.name} "
            f"has {len(ids)} items (row i must be the vector of item i)"
        )
    return ItemTable(ids=ids, texts=texts, text_columns=text_columns, attrs=_attr_columns(path, frame), vectors=vectors)


def load_item_vectors(path: Path) -> np.ndarray:
    """`item_vectors.npy`: float [n_items, d], no pickles, finite."""
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError:
        raise DataError(
            f"{path}: not a plain numeric .npy array (not an .npy file, or one holding pickled objects, which "
            f"are refused; save a float32 array with numpy.save)"
        ) from None
    except Exception as exc:
        raise DataError(f"{path}: unreadable .npy file ({_one_line(exc)})") from None
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"{path}: expected a 2-D numeric array [n_items, d], got shape {arr.shape} dtype {arr.dtype}")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        row = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise DataError(f"{path}: non-finite value in row {row}")
    return arr


def build_interactions(
    path: Path,
    frame: Any,
    item_ids: np.ndarray,
    options: LoadOptions,
    warnings: list[str],
    labels: Mapping[str, str] | None = None,
) -> tuple[Interactions, np.ndarray, int]:
    """Validate interactions, map ids to dense indices, drop (or refuse) unknown items.

    `labels` maps contract column names to the names in the user's file, for messages (adapters rename).
    """
    labels = labels or {}
    _require_columns(path, frame, ("user_id", "item_id"))
    users = _id_column(path, frame, "user_id", labels.get("user_id"))
    items = _id_column(path, frame, "item_id", labels.get("item_id"))
    lookup = {str(i): n for n, i in enumerate(item_ids)}
    item_idx = np.array([lookup.get(i, -1) for i in items], dtype=np.int64)
    unknown = item_idx < 0
    n_unknown = int(unknown.sum())
    if n_unknown:
        share = n_unknown / len(items)
        examples = ", ".join(repr(str(x)) for x in list(dict.fromkeys(items[unknown]))[:3])
        if share > options.max_unknown_item_fraction:
            raise DataError(
                f"{path}: column '{labels.get('item_id', 'item_id')}': {n_unknown} of {len(items)} interactions "
                f"({share:.1%}) name items "
                f"missing from the items table (e.g. {examples}) at {_rows_label(path, np.flatnonzero(unknown))}; "
                f"more than {options.max_unknown_item_fraction:.0%} means the catalogue does not match"
            )
        warnings.append(
            f"{path.name}: dropped {n_unknown} interaction(s) with items missing from the catalogue (e.g. {examples})"
        )
    timestamp = parse_timestamps(path, frame) if "timestamp" in frame.columns else None
    if timestamp is not None and timestamp.size and timestamp.min() > TIMESTAMP_UNITS_ABOVE:  # all one finer unit
        warnings.append(
            f"{path.name}: column '{labels.get('timestamp', 'timestamp')}' looks like milliseconds; it is read "
            f"as unix seconds (the order of events is right, derived times of day are not)"
        )
    weight = (_float_column(path, frame, "weight", labels.get("weight")) if "weight" in frame.columns
              else np.ones(len(items)))
    negative = np.flatnonzero(weight < 0)
    if len(negative):
        raise DataError(
            f"{path}: column '{labels.get('weight', 'weight')}': negative weight at {_rows_label(path, negative)} "
            f"(every interaction is a positive; use a weight >= 0)"
        )
    weight = np.where(np.isfinite(weight), weight, 1.0).astype(np.float32)
    keep = ~unknown
    user_ids, user_idx = np.unique(users[keep].astype(str), return_inverse=True)
    context = {k: v[keep] for k, v in _context_columns(frame).items()}
    inter = Interactions(
        user=user_idx.astype(np.int64),
        item=item_idx[keep],
        timestamp=None if timestamp is None else timestamp[keep],
        weight=weight[keep],
        context=context,
    )
    if len(inter) < options.min_interactions:
        raise DataError(f"{path}: no interactions left after dropping unknown items")
    return inter, user_ids.astype(object), n_unknown


def build_user_attrs(path: Path, frame: Any, user_ids: np.ndarray) -> dict[str, np.ndarray]:
    """Align `users` profile rows with the interaction users (users without a row get missing values)."""
    _require_columns(path, frame, ("user_id",))
    ids = _id_column(path, frame, "user_id")
    uniq, counts = np.unique(ids.astype(str), return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1]
        rows = np.flatnonzero(np.isin(ids.astype(str), dup))
        raise DataError(
            f"{path}: column 'user_id': duplicate user id(s) {', '.join(repr(str(d)) for d in dup[:5])}"
            f"{' ...' if len(dup) > 5 else ''} at {_rows_label(path, rows)}"
        )
    attrs = _attr_columns(path, frame)
    pos = {u: n for n, u in enumerate(ids)}
    take = np.array([pos.get(u, -1) for u in user_ids], dtype=np.int64)
    out: dict[str, np.ndarray] = {}
    for name, col in attrs.items():
        if col.dtype == object:
            aligned = np.array(["" if t < 0 else col[t] for t in take], dtype=object)
        else:
            aligned = np.where(take >= 0, col[np.maximum(take, 0)], np.nan)
        out[name] = aligned
    return out


def load_contract_dir(directory: Path, options: LoadOptions | None = None) -> Dataset:
    """Load a directory in the generic data contract (items, interactions, optional users/vectors)."""
    options = options or LoadOptions()
    items_path = find_table(directory, "items", required=True)
    inter_path = find_table(directory, "interactions", required=True)
    users_path = find_table(directory, "users", required=False)
    assert items_path is not None and inter_path is not None
    vec_path = directory / "item_vectors.npy"
    vectors = load_item_vectors(vec_path) if vec_path.is_file() else None
    items = build_items(items_path, read_table(items_path), vectors)
    warnings: list[str] = []
    inter, user_ids, dropped = build_interactions(inter_path, read_table(inter_path), items.ids, options, warnings)
    user_attrs = build_user_attrs(users_path, read_table(users_path), user_ids) if users_path else {}
    sources = [p for p in (items_path, inter_path, users_path) if p is not None]
    if vectors is not None:
        sources.append(vec_path)
    return Dataset(
        name=directory.name,
        items=items,
        user_ids=user_ids,
        interactions=inter,
        user_attrs=user_attrs,
        fingerprint=fingerprint_files(sources),
        report=LoadReport(warnings=tuple(warnings), dropped_unknown_items=dropped),
    )
