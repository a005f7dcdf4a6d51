"""The MovieLens layout adapter, on the tiny fixture, the embedded copy and hand-written samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recengine.data import EMBEDDED_MOVIELENS, load_dataset, scene_from_timestamps
from tests.fixtures.bad_inputs import write_lines

pd = pytest.importorskip("pandas", reason="the data loader needs pandas (the export extra)")


def test_fixture_shape_and_ids(ml_tiny_dataset, ml_tiny_dir: Path) -> None:
    data = ml_tiny_dataset
    ratings = pd.read_csv(ml_tiny_dir / "ratings.csv")
    movies = pd.read_csv(ml_tiny_dir / "movies.csv")
    assert data.n_users == ratings["userId"].nunique() == 80
    assert data.n_items == len(movies) == 400
    assert len(data.interactions) == len(ratings)
    assert all(isinstance(i, str) for i in data.items.ids)
    assert list(data.items.ids) == [str(m) for m in movies["movieId"]]
    assert data.items.text_columns == ("title", "genres", "tags")
    # every user has enough history for leave-last-out, and some movies were never rated (long tail)
    assert np.bincount(data.interactions.user).min() >= 10
    assert (np.bincount(data.interactions.item, minlength=data.n_items) == 0).sum() > 0


def test_fixture_keeps_the_licence(ml_tiny_dir: Path) -> None:
    text = (ml_tiny_dir / "README.txt").read_text(encoding="utf-8")
    assert "GroupLens" in text and "ml-latest-small" in text


def test_item_text_title_genres_tags(ml_tiny_dataset) -> None:
    data = ml_tiny_dataset
    toy_story = list(data.items.ids).index("1")
    assert data.items.texts[toy_story] == (
        "title: Toy Story (1995)\ngenres: Adventure, Animation, Children, Comedy, Fantasy\ntags: pixar, fun"
    )


def test_ratings_become_weighted_positives_with_scene(ml_tiny_dataset, ml_tiny_dir: Path) -> None:
    data = ml_tiny_dataset
    ratings = pd.read_csv(ml_tiny_dir / "ratings.csv", dtype={"userId": str, "movieId": str})
    first = ratings.iloc[0]  # user 4, movie 21, rating 3.0, 986935199 = Tue 2001-04-10 20:39:59 UTC
    inter = data.interactions
    assert data.user_ids[inter.user[0]] == first["userId"]
    assert data.items.ids[inter.item[0]] == first["movieId"]
    assert inter.weight[0] == first["rating"] == 3.0
    assert inter.timestamp[0] == 986935199
    assert inter.context["ctx_daypart"][0] == "evening"
    assert inter.context["ctx_weekday"][0] == "tue"
    assert set(inter.context) == {"ctx_daypart", "ctx_weekday"}


def test_scene_from_timestamps_hand_computed() -> None:
    hour, day = 3600, 86400
    seconds = np.array([0, 6 * hour - 1, 6 * hour, 12 * hour, 18 * hour, 4 * day + 7 * hour, -1])
    scene = scene_from_timestamps(seconds)
    assert list(scene["ctx_daypart"]) == ["night", "night", "morning", "afternoon", "evening", "morning", "evening"]
    # 1970-01-01 was a Thursday; 1969-12-31 23:59:59 a Wednesday
    assert list(scene["ctx_weekday"]) == ["thu", "thu", "thu", "thu", "thu", "mon", "wed"]


def test_small_layout_without_tags_and_no_genres(tmp_path: Path) -> None:
    write_lines(tmp_path / "movies.csv", ["movieId,title,genres", "1,A (1990),(no genres listed)", "2,B,Drama|War"])
    write_lines(tmp_path / "ratings.csv", ["userId,movieId,rating,timestamp", "1,1,4.5,0", "1,2,1.0,100"])
    data = load_dataset(tmp_path)
    assert data.items.texts == ["title: A (1990)", "title: B\ngenres: Drama, War"]
    np.testing.assert_allclose(data.interactions.weight, [4.5, 1.0])


def test_tags_lowercased_most_frequent_first(tmp_path: Path) -> None:
    write_lines(tmp_path / "movies.csv", ["movieId,title,genres", "1,A,Drama", "2,B,Drama"])
    write_lines(tmp_path / "ratings.csv", ["userId,movieId,rating,timestamp", "1,1,4,0", "1,2,4,1"])
    write_lines(tmp_path / "tags.csv", [
        "userId,movieId,tag,timestamp", "1,1,Dark,0", "2,1,funny,0", "3,1,dark,0", "4,1,  ,0", "5,2,quiet,0",
    ])
    data = load_dataset(tmp_path)
    assert data.items.texts[0] == "title: A\ngenres: Drama\ntags: dark, funny"
    assert data.items.texts[1] == "title: B\ngenres: Drama\ntags: quiet"


def test_ratings_without_rating_column_weigh_one(tmp_path: Path) -> None:
    write_lines(tmp_path / "movies.csv", ["movieId,title,genres", "1,A,Drama"])
    write_lines(tmp_path / "ratings.csv", ["userId,movieId,timestamp", "1,1,0", "2,1,5"])
    np.testing.assert_array_equal(load_dataset(tmp_path).interactions.weight, [1.0, 1.0])


def test_embedded_default_is_ml_latest_small() -> None:
    data = load_dataset(None)
    assert data.name == EMBEDDED_MOVIELENS.name
    assert (data.n_users, data.n_items, len(data.interactions)) == (610, 9742, 100836)
    assert data.report.dropped_unknown_items == 0
