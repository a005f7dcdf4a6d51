"""Synthetic data sets in the data contract (docs/data.md), of any size, for the export cost curve.

`write_synthetic_data(spec, directory)` writes `items.csv`, `interactions.csv` and `users.csv` that load
with `recengine.data.load_dataset` and carry structure a recommender can learn, so every export stage does
the work it does on real data (early stopping sees a real signal, the text tower aligns to something):

- vocabulary: `vocab_size` distinct pseudo-words (syllable strings), drawn by a Zipf law (exponent ~1.1, the
  shape of word frequencies in real text);
- categories: `n_categories` with Zipf-distributed sizes; each item has a primary category and sometimes a
  second one. Each category owns a topic vocabulary (`topic_words` words), and half the words of an item's
  description come from its primary category's topic: the text predicts the category;
- items: `title` (2-5 words), `genres` (category names), `description` (`min_words`..`max_words` words;
  the default 12-40 words plus title and genres is ~20-60 tokens, the range of MovieLens item texts),
  `attr_year` (numeric);
- users: `n_interactions / mean_history` users, each with a favourite category and a history length drawn
  log-normally around `mean_history` (at least 3). Each event picks, with probability `focus`, an item of the
  user's favourite category (Zipf popularity within it), else an item of the whole catalogue (global Zipf
  popularity); timestamps increase along the history (`ctx_device` is a scene column; `users.csv` has an
  `attr_age` profile column);
- seeded: the same spec writes the same files.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recengine.errors import RequestError

SYLLABLES = ("ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "da", "ve", "zu", "ba", "fe", "gi", "ho", "ju",
             "ky", "la", "mo", "nu", "pe", "qua", "ro", "si", "tu", "wa", "xi", "yo", "ze", "chi", "sha", "tre")
CATEGORY_NAMES = ("drama", "comedy", "thriller", "romance", "documentary", "animation", "horror", "science",
                  "history", "travel", "cooking", "sports", "music", "fantasy", "crime", "family", "western",
                  "mystery", "adventure", "biography", "nature", "politics", "technology", "art")
DEVICES = ("mobile", "desktop", "tv")


@dataclass(frozen=True)
class SyntheticSpec:
    """Size and shape of one synthetic data set (see the module docstring)."""

    n_items: int
    n_interactions: int
    seed: int = 0
    mean_history: int = 20
    vocab_size: int = 20_000
    n_categories: int = 24
    topic_words: int = 300
    min_words: int = 12
    max_words: int = 40
    focus: float = 0.8
    zipf: float = 1.1

    def validate(self) -> None:
        checks = [(self.n_items >= 20, "n_items >= 20"), (self.n_interactions >= 3 * 10, "n_interactions >= 30"),
                  (3 <= self.mean_history <= self.n_interactions, "3 <= mean_history <= n_interactions"),
                  (1 <= self.n_categories <= len(CATEGORY_NAMES), f"1 <= n_categories <= {len(CATEGORY_NAMES)}"),
                  (self.vocab_size >= 100, "vocab_size >= 100"), (1 <= self.min_words <= self.max_words,
                                                                  "1 <= min_words <= max_words"),
                  (0.0 <= self.focus <= 1.0, "0 <= focus <= 1")]
        for ok, what in checks:
            if not ok:
                raise RequestError(f"synthetic data: need {what} (got {self})")

    @property
    def n_users(self) -> int:
        return max(10, self.n_interactions // self.mean_history)


def pseudo_words(n: int) -> list[str]:
    """`n` distinct lower-case pseudo-words: word i spells i in base len(SYLLABLES), at least 2 syllables."""
    base = len(SYLLABLES)
    out = []
    for i in range(n):
        digits, x = [], i + base  # + base: every word has >= 2 syllables
        while x:
            x, d = divmod(x, base)
            digits.append(SYLLABLES[d])
        out.append("".join(reversed(digits)))
    return out


def zipf_weights(n: int, exponent: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
    return w / w.sum()


def _draw(rng: np.random.Generator, weights: np.ndarray, size: int) -> np.ndarray:
    """`size` indices drawn with probabilities `weights` (inverse CDF: fast for large `size`)."""
    cdf = np.cumsum(weights)
    return np.minimum(np.searchsorted(cdf, rng.random(size) * cdf[-1], side="right"), len(weights) - 1)


def make_items(spec: SyntheticSpec, rng: np.random.Generator) -> tuple[dict[str, Any], np.ndarray]:
    """Item columns (item_id, title, genres, description, attr_year) and each item's primary category."""
    n, n_cat = spec.n_items, spec.n_categories
    words = np.array(pseudo_words(spec.vocab_size), dtype=object)
    global_w = zipf_weights(spec.vocab_size, spec.zipf)
    topic_w = zipf_weights(spec.topic_words, spec.zipf)
    topics = np.stack([rng.choice(spec.vocab_size, spec.topic_words, replace=False) for _ in range(n_cat)])
    category = _draw(rng, zipf_weights(n_cat, 0.8), n)
    second = np.where(rng.random(n) < 0.35, rng.integers(0, n_cat, n), -1)
    n_words = rng.integers(spec.min_words, spec.max_words + 1, n)
    total = int(n_words.sum())
    from_topic = rng.random(total) < 0.5
    owner = np.repeat(np.arange(n), n_words)
    ids = _draw(rng, global_w, total)
    topic_ids = topics[category[owner], _draw(rng, topic_w, total)]
    ids = np.where(from_topic, topic_ids, ids)
    token = words[ids]
    cuts = np.cumsum(n_words)[:-1]
    descriptions = [" ".join(part) for part in np.split(token, cuts)]
    n_title = rng.integers(2, 6, n)
    title_tok = words[topics[np.repeat(category, n_title), _draw(rng, topic_w, int(n_title.sum()))]]
    titles = [" ".join(part).capitalize() for part in np.split(title_tok, np.cumsum(n_title)[:-1])]
    names = np.array(CATEGORY_NAMES, dtype=object)
    genres = [f"{names[c]}|{names[s]}" if s >= 0 and s != c else str(names[c]) for c, s in zip(category, second)]
    columns = {"item_id": [f"i{i}" for i in range(n)], "title": titles, "genres": genres,
               "description": descriptions, "attr_year": rng.integers(1960, 2025, n)}
    return columns, category


def make_interactions(spec: SyntheticSpec, category: np.ndarray,
                      rng: np.random.Generator) -> dict[str, np.ndarray]:
    """user, item, timestamp and ctx_device columns of exactly `spec.n_interactions` events."""
    n_users, n_cat = spec.n_users, spec.n_categories
    weights = rng.lognormal(0.0, 1.0, n_users)
    lengths = 3 + rng.multinomial(spec.n_interactions - 3 * n_users, weights / weights.sum())
    favourite = _draw(rng, zipf_weights(n_cat, 0.8), n_users)
    user = np.repeat(np.arange(n_users), lengths)
    total = len(user)
    # items of each category ordered by a random popularity rank; Zipf within the category
    item = np.empty(total, np.int64)
    focused = rng.random(total) < spec.focus
    cat_of_event = favourite[user]
    for c in range(n_cat):
        members = rng.permutation(np.flatnonzero(category == c))
        rows = np.flatnonzero(focused & (cat_of_event == c))
        if members.size == 0:
            focused[rows] = False
            continue
        item[rows] = members[_draw(rng, zipf_weights(members.size, spec.zipf), rows.size)]
    rows = np.flatnonzero(~focused)
    global_rank = rng.permutation(spec.n_items)
    item[rows] = global_rank[_draw(rng, zipf_weights(spec.n_items, 0.9), rows.size)]
    start = rng.integers(1_577_836_800, 1_704_067_200, n_users)  # 2020-01-01 .. 2024-01-01
    gaps = rng.exponential(6 * 3600.0, total).astype(np.int64) + 1
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    steps = np.cumsum(gaps)
    steps -= np.repeat(steps[first] - gaps[first], lengths)
    timestamp = start[user] + steps
    device = np.array(DEVICES, dtype=object)[_draw(rng, np.array([0.6, 0.3, 0.1]), total)]
    return {"user": user, "item": item, "timestamp": timestamp, "device": device}


def write_synthetic_data(spec: SyntheticSpec, directory: str | Path) -> dict[str, Any]:
    """Write the data set of `spec` into `directory` (created); returns its summary (counts, words, bytes)."""
    import pandas as pd

    spec.validate()
    t0 = time.perf_counter()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    items, category = make_items(spec, rng)
    events = make_interactions(spec, category, rng)
    pd.DataFrame(items).to_csv(out / "items.csv", index=False)
    user_ids = np.array([f"u{u}" for u in range(spec.n_users)], dtype=object)
    pd.DataFrame({"user_id": user_ids[events["user"]], "item_id": np.asarray(items["item_id"])[events["item"]],
                  "timestamp": events["timestamp"], "ctx_device": events["device"]}).to_csv(
        out / "interactions.csv", index=False)
    ages = np.array(["18-24", "25-34", "35-44", "45-54", "55+"], dtype=object)
    pd.DataFrame({"user_id": user_ids, "attr_age": ages[rng.integers(0, len(ages), spec.n_users)]}).to_csv(
        out / "users.csv", index=False)
    words = [len(t.split()) + len(d.split()) + len(g.split("|"))
             for t, d, g in zip(items["title"], items["description"], items["genres"])]
    return {"spec": asdict(spec), "path": str(out), "n_items": spec.n_items, "n_users": spec.n_users,
            "n_interactions": spec.n_interactions, "mean_text_words": round(float(np.mean(words)), 1),
            "bytes": sum(p.stat().st_size for p in out.iterdir() if p.is_file()),
            "seconds": round(time.perf_counter() - t0, 2)}


__all__ = ["SyntheticSpec", "write_synthetic_data", "pseudo_words", "zipf_weights", "make_items",
           "make_interactions"]
