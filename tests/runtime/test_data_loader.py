"""The generic data contract: what loads, and exactly how (ids, text, attrs, timestamps, context, users)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recengine.data import LoadOptions, build_item_text, load_dataset
from recengine.errors import DataError
from tests.fixtures.bad_inputs import INTERACTIONS, ITEMS, replace_row, write_good

pd = pytest.importorskip("pandas", reason="the data loader needs pandas (the export extra)")


def _to_parquet(directory: Path) -> None:
    """Convert every CSV table of `directory` to Parquet, with natural (typed) columns."""
    for csv in directory.glob("*.csv"):
        frame = pd.read_csv(csv)
        frame.to_parquet(csv.with_suffix(".parquet"))
        csv.unlink()


@pytest.fixture(params=["csv", "parquet"])
def good_dir(request, tmp_path: Path) -> Path:
    directory = write_good(tmp_path / "data")
    if request.param == "parquet":
        _to_parquet(directory)
    return directory


def test_loads_items_interactions_users(good_dir: Path) -> None:
    data = load_dataset(good_dir)
    assert list(data.items.ids) == ["i1", "i2", "i3", "i4", "i5"]
    assert data.items.text_columns == ("title", "genres")
    assert data.items.texts[0] == "title: Alpha\ngenres: comedy"
    assert data.items.texts[3] == "title: Delta"  # empty genres leave no line
    assert list(data.user_ids) == ["u1", "u2", "u3"]
    inter = data.interactions
    assert len(inter) == 9
    assert [data.user_ids[u] for u in inter.user[:3]] == ["u1", "u1", "u1"]
    assert [data.items.ids[i] for i in inter.item[:3]] == ["i1", "i2", "i3"]
    np.testing.assert_allclose(inter.timestamp, [1000, 1010, 1020, 1005, 1015, 1025, 1001, 1011, 1021])
    np.testing.assert_allclose(inter.weight, [1, 2, 1, 1, 1, 3, 1, 1, 1])
    assert inter.weight.dtype == np.float32
    assert list(inter.context["ctx_device"][:3]) == ["phone", "phone", "tv"]
    assert data.name == "data"
    assert len(data.fingerprint) == 64
    assert data.report.warnings == () and data.report.dropped_unknown_items == 0


def test_attrs_numeric_vs_categorical(good_dir: Path) -> None:
    data = load_dataset(good_dir)
    year = data.items.attrs["attr_year"]
    assert year.dtype == np.float64
    np.testing.assert_allclose(year[:4], [1995, 2001, 2010, 1999])
    assert np.isnan(year[4])  # missing numeric -> NaN
    brand = data.items.attrs["attr_brand"]
    assert brand.dtype == object
    assert list(brand) == ["acme", "acme", "globex", "", "initech"]  # missing categorical -> ""
    assert "attr_year" not in data.items.text_columns


def test_users_table_aligned_with_interaction_users(tmp_path: Path) -> None:
    # users.csv in another order, with a user that never interacted and one user missing
    users = ["user_id,attr_age,attr_country", "u3,51,de", "u9,40,it", "u1,34,de"]
    data = load_dataset(write_good(tmp_path / "d", users=users))
    assert list(data.user_ids) == ["u1", "u2", "u3"]
    age = data.user_attrs["attr_age"]
    np.testing.assert_allclose(age[[0, 2]], [34, 51])
    assert np.isnan(age[1])
    assert list(data.user_attrs["attr_country"]) == ["de", "", "de"]


def test_no_users_table_means_no_profiles(tmp_path: Path) -> None:
    directory = write_good(tmp_path / "d")
    (directory / "users.csv").unlink()
    assert load_dataset(directory).user_attrs == {}


def test_iso_and_unix_timestamps_agree(tmp_path: Path) -> None:
    iso = [INTERACTIONS[0]] + [
        f"{u},{i},{pd.Timestamp(int(t), unit='s', tz='UTC').isoformat()},{w},{c}"
        for u, i, t, w, c in (line.split(",") for line in INTERACTIONS[1:])
    ]
    unix = load_dataset(write_good(tmp_path / "unix")).interactions.timestamp
    parsed = load_dataset(write_good(tmp_path / "iso", interactions=iso)).interactions.timestamp
    np.testing.assert_allclose(parsed, unix)


def test_iso_timestamps_with_offsets_and_dates(tmp_path: Path) -> None:
    rows = [
        "user_id,item_id,timestamp",
        "u1,i1,2024-03-01T12:00:00Z",
        "u1,i2,2024-03-01T13:00:00+01:00",  # the same instant as the row above
        "u1,i3,2024-03-02",  # a date alone is midnight UTC
        "u2,i1,2024-03-01 12:00:00",  # no offset: read as UTC
    ]
    ts = load_dataset(write_good(tmp_path / "d", interactions=rows)).interactions.timestamp
    noon = pd.Timestamp("2024-03-01T12:00:00Z").timestamp()
    np.testing.assert_allclose(ts, [noon, noon, noon + 12 * 3600, noon])


def test_timestamp_column_mixing_unix_and_iso(tmp_path: Path) -> None:
    rows = ["user_id,item_id,timestamp", "u1,i1,1709294400", "u1,i2,2024-03-01T12:00:00Z", "u1,i3,1709294400.5"]
    ts = load_dataset(write_good(tmp_path / "d", interactions=rows)).interactions.timestamp
    np.testing.assert_allclose(ts, [1709294400, 1709294400, 1709294400.5])


def test_parquet_datetime_column_any_resolution(tmp_path: Path) -> None:
    directory = write_good(tmp_path / "d")
    frame = pd.read_csv(directory / "interactions.csv", dtype={"user_id": str, "item_id": str})
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], unit="s").astype("datetime64[ms]")
    (directory / "interactions.csv").unlink()
    frame.to_parquet(directory / "interactions.parquet")
    ts = load_dataset(directory).interactions.timestamp
    np.testing.assert_allclose(ts, [1000, 1010, 1020, 1005, 1015, 1025, 1001, 1011, 1021])


def test_without_timestamp_and_weight_columns(tmp_path: Path) -> None:
    rows = ["user_id,item_id", "u1,i1", "u1,i2", "u2,i3"]
    inter = load_dataset(write_good(tmp_path / "d", interactions=rows)).interactions
    assert inter.timestamp is None
    np.testing.assert_array_equal(inter.weight, [1, 1, 1])
    assert inter.context == {}


def test_empty_weight_defaults_to_one(tmp_path: Path) -> None:
    rows = replace_row(INTERACTIONS, 2, "u1,i2,1010,,phone")
    inter = load_dataset(write_good(tmp_path / "d", interactions=rows)).interactions
    assert inter.weight[1] == 1.0


def test_missing_context_value_is_empty_string(tmp_path: Path) -> None:
    rows = replace_row(INTERACTIONS, 1, "u1,i1,1000,1,")
    inter = load_dataset(write_good(tmp_path / "d", interactions=rows)).interactions
    assert inter.context["ctx_device"][0] == ""


def test_item_vectors_are_loaded_aligned(tmp_path: Path) -> None:
    directory = write_good(tmp_path / "d")
    vectors = np.arange(15, dtype=np.float64).reshape(5, 3)
    np.save(directory / "item_vectors.npy", vectors)
    data = load_dataset(directory)
    assert data.items.vectors is not None and data.items.vectors.dtype == np.float32
    np.testing.assert_array_equal(data.items.vectors, vectors.astype(np.float32))


def test_fingerprint_changes_with_the_data(tmp_path: Path) -> None:
    a = load_dataset(write_good(tmp_path / "a")).fingerprint
    b = load_dataset(write_good(tmp_path / "b")).fingerprint
    c = load_dataset(write_good(tmp_path / "c", interactions=INTERACTIONS[:-1])).fingerprint
    assert a == b != c


# --- edge cases a demanding user hits -----------------------------------------------------------------


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    directory = write_good(tmp_path / "d")
    for name in ("items.csv", "interactions.csv"):
        path = directory / name
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    data = load_dataset(directory)
    assert data.items.ids[0] == "i1" and data.n_users == 3


def test_whitespace_around_ids_is_stripped(tmp_path: Path) -> None:
    items = replace_row(ITEMS, 1, " i1 ,Alpha,comedy,1995,acme")
    inter = replace_row(INTERACTIONS, 1, "  u1,i1  ,1000,1,phone")
    data = load_dataset(write_good(tmp_path / "d", items=items, interactions=inter))
    assert data.items.ids[0] == "i1"
    assert list(data.user_ids) == ["u1", "u2", "u3"]
    assert data.report.dropped_unknown_items == 0


def test_numeric_looking_ids_stay_strings(tmp_path: Path) -> None:
    items = ["item_id,title", "007,Bond", "7,Seven", "1e3,Thousand", "0x1F,Hex"]
    inter = ["user_id,item_id", "0042,007", "0042,7", "42,1e3", "42,0x1F"]
    data = load_dataset(write_good(tmp_path / "d", items=items, interactions=inter))
    assert list(data.items.ids) == ["007", "7", "1e3", "0x1F"]
    assert list(data.user_ids) == ["0042", "42"]
    assert [data.items.ids[i] for i in data.interactions.item] == ["007", "7", "1e3", "0x1F"]


def test_parquet_integer_and_float_ids_match_csv_ids(tmp_path: Path) -> None:
    """An id column that Parquet stores as int (or float, after a null elsewhere) still matches."""
    directory = tmp_path / "d"
    directory.mkdir()
    pd.DataFrame({"item_id": [1, 2, 3], "title": ["a", "b", "c"]}).to_parquet(directory / "items.parquet")
    pd.DataFrame({"user_id": [10.0, 10.0, 11.0], "item_id": [1.0, 3.0, 2.0]}).to_parquet(
        directory / "interactions.parquet"
    )
    data = load_dataset(directory)
    assert list(data.items.ids) == ["1", "2", "3"]
    assert list(data.user_ids) == ["10", "11"]
    assert list(data.interactions.item) == [0, 2, 1]


def test_quoted_text_with_commas_and_newlines(tmp_path: Path) -> None:
    items = ["item_id,title,description", 'i1,"Alpha, the first","line one', 'line two"', "i2,Beta,plain"]
    inter = ["user_id,item_id", "u1,i1", "u1,i2"]
    data = load_dataset(write_good(tmp_path / "d", items=items, interactions=inter))
    assert data.items.texts[0] == "title: Alpha, the first\ndescription: line one line two"


def test_unknown_items_below_threshold_are_dropped_with_a_warning(tmp_path: Path) -> None:
    rows = INTERACTIONS + ["u4,nope,2000,1,tv"]  # 1 of 10 = 10 %
    directory = write_good(tmp_path / "d", interactions=rows)
    with pytest.raises(DataError, match="missing from the items table"):
        load_dataset(directory)
    data = load_dataset(directory, LoadOptions(max_unknown_item_fraction=0.2))
    assert len(data.interactions) == 9
    assert data.report.dropped_unknown_items == 1
    assert "dropped 1 interaction" in data.report.warnings[0] and "'nope'" in data.report.warnings[0]
    assert "u4" not in set(data.user_ids)  # a user whose every interaction was dropped does not exist


def test_trailing_comma_on_every_line_is_tolerated(tmp_path: Path) -> None:
    items = [line + "," for line in ITEMS]
    data = load_dataset(write_good(tmp_path / "d", items=items))
    assert data.items.text_columns == ("title", "genres")


def test_header_names_are_stripped(tmp_path: Path) -> None:
    items = [" item_id , title ", "i1,Alpha", "i2,Beta", "i3,Gamma", "i4,Delta", "i5,Epsilon"]
    data = load_dataset(write_good(tmp_path / "d", items=items))
    assert data.items.text_columns == ("title",)


def test_unicode_text_survives(tmp_path: Path) -> None:
    items = ["item_id,title", "i1,Amélie (2001)", "i2,千と千尋の神隠し", "i3,Ünïcödé 🎬", "i4,d", "i5,e"]
    data = load_dataset(write_good(tmp_path / "d", items=items))
    assert data.items.texts[1] == "title: 千と千尋の神隠し"
    assert data.items.texts[2] == "title: Ünïcödé 🎬"


def test_build_item_text_is_stable_and_skips_empty() -> None:
    row = {"title": "  A   film ", "genres": float("nan"), "tags": None, "plot": "x\ny"}
    assert build_item_text(row, ("title", "genres", "tags", "plot")) == "title: A film\nplot: x y"
    assert build_item_text(row, ("plot", "title")) == "plot: x y\ntitle: A film"
    assert build_item_text({}, ("title",)) == ""


def test_data_path_may_be_a_string(tmp_path: Path) -> None:
    assert load_dataset(str(write_good(tmp_path / "d"))).n_items == 5


def test_unreadable_file_is_a_data_error(tmp_path: Path) -> None:
    import os

    if os.geteuid() == 0:
        pytest.skip("root can read any file")
    directory = write_good(tmp_path / "d")
    (directory / "items.csv").chmod(0)
    with pytest.raises(DataError, match="cannot read"):
        load_dataset(directory)


def test_directory_named_like_a_table_is_not_a_table(tmp_path: Path) -> None:
    directory = write_good(tmp_path / "d")
    (directory / "items.csv").unlink()
    (directory / "items.csv").mkdir()
    with pytest.raises(DataError, match="missing the items table"):
        load_dataset(directory)



def test_parquet_nullable_dtypes_and_list_columns(tmp_path: Path) -> None:
    """pandas nullable dtypes (pd.NA) and list cells (tags) from Parquet load like their CSV twins."""
    directory = tmp_path / "d"
    directory.mkdir()
    pd.DataFrame({
        "item_id": pd.array(["a", "b", "c"], dtype="string[pyarrow]"),
        "title": pd.array(["x", "y", None], dtype="string"),
        "year": pd.array([1990, None, 2000], dtype="Int64"),
        "tags": [["funny", "dark"], [], None],
        "attr_n": pd.array([1, None, 3], dtype="Int64"),
        "attr_c": pd.array(["p", None, "q"], dtype="string"),
    }).to_parquet(directory / "items.parquet")
    pd.DataFrame({
        "user_id": pd.array([1, 2, 2], dtype="Int64"),
        "item_id": ["a", "b", "c"],
        "timestamp": pd.array([1, 2, 3], dtype="Int64"),
        "weight": pd.array([1.5, None, 2.0], dtype="Float64"),
        "ctx_d": pd.array(["m", None, "t"], dtype="string"),
    }).to_parquet(directory / "interactions.parquet")
    data = load_dataset(directory)
    assert data.items.texts == ["title: x\nyear: 1990\ntags: funny, dark", "title: y", "year: 2000"]
    np.testing.assert_array_equal(data.items.attrs["attr_n"], [1.0, np.nan, 3.0])
    assert list(data.items.attrs["attr_c"]) == ["p", "", "q"]
    assert list(data.user_ids) == ["1", "2"]
    np.testing.assert_array_equal(data.interactions.weight, [1.5, 1.0, 2.0])
    assert list(data.interactions.context["ctx_d"]) == ["m", "", "t"]


@pytest.mark.parametrize(("values", "message"), [
    (["1709294400", "-5", "1709294402"], "timestamp before 1970 at line 3 \\(e.g. '-5'"),
    (["1709294400", "1965-06-01", "1709294402"], "timestamp before 1970 at line 3 \\(e.g. '1965-06-01'"),
    (["1709294400", "1e30", "1709294402"], "timestamp out of range at line 3 \\(e.g. '1e30'"),
    (["2024-03-01", "9999-12-31", "1709294402"], "date past the year 5138 \\(a placeholder date\\?\\) at line 3"),
    (["2024-03-01T12:00:00", "1709294401000", "1709294402"], "two units: 1 of 3 rows .* '1709294401000'"),
])
def test_timestamps_no_event_has_are_refused(tmp_path: Path, values: list[str], message: str) -> None:
    rows = ["user_id,item_id,timestamp"] + [f"u{i % 2},i{i + 1},{v}" for i, v in enumerate(values)]
    with pytest.raises(DataError, match=message):
        load_dataset(write_good(tmp_path / "d", interactions=rows))


def test_parquet_datetimes_are_checked_too(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    d = write_good(tmp_path / "d")
    (d / "interactions.csv").unlink()
    stamps = pd.to_datetime(["2024-03-01", "1965-06-01", "2024-03-02"], utc=True)
    pd.DataFrame({"user_id": ["u0", "u1", "u0"], "item_id": ["i1", "i2", "i3"], "timestamp": stamps}).to_parquet(
        d / "interactions.parquet")
    with pytest.raises(DataError, match="interactions.parquet: column 'timestamp': timestamp before 1970 at row 1"):
        load_dataset(d)


def test_millisecond_timestamps_load_with_a_warning(tmp_path: Path) -> None:
    rows = ["user_id,item_id,timestamp", "u1,i1,1709294400000", "u1,i2,1709294401000", "u2,i3,1709294402000"]
    data = load_dataset(write_good(tmp_path / "d", interactions=rows))
    assert data.interactions.timestamp[0] == 1709294400000
    assert any("looks like milliseconds" in w for w in data.report.warnings)
