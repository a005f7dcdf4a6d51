"""Adapter for the MovieLens ml-latest-small layout (ratings.csv, movies.csv, tags.csv).

Item text = title, genres and the users' free-text tags (most frequent first); each rating is an implicit
positive with the rating as weight; scene context is derived from the timestamp (`ctx_daypart`,
`ctx_weekday`, UTC) because MovieLens has no context columns of its own.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import DataError
from .loader import (
    LoadOptions,
    _require_columns,
    build_interactions,
    build_items,
    fingerprint_files,
    read_table,
)
from .schema import Dataset, Interactions, LoadReport

DAYPARTS = ("night", "morning", "afternoon", "evening")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def is_movielens_dir(directory: Path) -> bool:
    """A directory in the MovieLens layout has ratings.csv and movies.csv."""
    return (directory / "ratings.csv").is_file() and (directory / "movies.csv").is_file()


def scene_from_timestamps(seconds: np.ndarray) -> dict[str, np.ndarray]:
    """Daypart (6-hour bins) and weekday in UTC from unix seconds."""
    secs = np.asarray(seconds, dtype=np.float64)
    hours = np.floor(secs / 3600.0).astype(np.int64)
    daypart = np.array(DAYPARTS, dtype=object)[(hours % 24) // 6]
    # 1970-01-01 was a Thursday (index 3).
    weekday = np.array(WEEKDAYS, dtype=object)[(np.floor(secs / 86400.0).astype(np.int64) + 3) % 7]
    return {"ctx_daypart": daypart, "ctx_weekday": weekday}


def load_movielens_dir(directory: Path, options: LoadOptions | None = None) -> Dataset:
    """Load ml-latest-small (or any MovieLens export of the same layout)."""
    options = options or LoadOptions()
    movies_path = directory / "movies.csv"
    ratings_path = directory / "ratings.csv"
    tags_path = directory / "tags.csv"
    movies = read_table(movies_path)
    _require_columns(movies_path, movies, ("movieId", "title", "genres"))
    ratings = read_table(ratings_path)
    _require_columns(ratings_path, ratings, ("userId", "movieId", "timestamp"))

    tag_text: dict[str, str] = {}
    if tags_path.is_file():
        tags = read_table(tags_path)
        _require_columns(tags_path, tags, ("movieId", "tag"))
        per_movie: dict[str, Counter[str]] = {}
        for movie, tag in zip(tags["movieId"].astype(str), tags["tag"]):
            if isinstance(tag, str) and tag.strip():
                per_movie.setdefault(movie.strip(), Counter())[tag.strip().lower()] += 1
        tag_text = {m: ", ".join(t for t, _ in c.most_common(12)) for m, c in per_movie.items()}

    genres = movies["genres"].fillna("").astype(str)
    genres = genres.where(genres != "(no genres listed)", "")
    items_frame = movies.rename(columns={"movieId": "item_id"})[["item_id", "title"]].copy()
    items_frame["genres"] = genres.str.replace("|", ", ", regex=False)
    items_frame["tags"] = [tag_text.get(str(m).strip(), "") for m in items_frame["item_id"]]
    items = build_items(movies_path, items_frame, labels={"item_id": "movieId"})

    inter_frame = ratings.rename(columns={"userId": "user_id", "movieId": "item_id"})
    if "rating" in inter_frame.columns:
        inter_frame = inter_frame.rename(columns={"rating": "weight"})
    warnings: list[str] = []
    labels = {"user_id": "userId", "item_id": "movieId", "weight": "rating"}
    inter, user_ids, dropped = build_interactions(
        ratings_path, inter_frame, items.ids, options, warnings, labels=labels
    )
    if inter.timestamp is None:  # pragma: no cover - required column above
        raise DataError(f"{ratings_path}: MovieLens ratings need a timestamp column")
    inter = Interactions(
        user=inter.user,
        item=inter.item,
        timestamp=inter.timestamp,
        weight=inter.weight,
        context=scene_from_timestamps(inter.timestamp),
    )
    sources = [p for p in (movies_path, ratings_path, tags_path) if p.is_file()]
    return Dataset(
        name=directory.name,
        items=items,
        user_ids=user_ids,
        interactions=inter,
        fingerprint=fingerprint_files(sources),
        report=LoadReport(warnings=tuple(warnings), dropped_unknown_items=dropped),
    )
