"""The evaluation split every report uses (export validation, bench, tests).

Implicit feedback: every interaction is a positive. Leave-last-out per user:

1. Repeat (user, item) pairs are dropped, keeping the earliest event (the smallest timestamp; on equal
   timestamps the one first in the file; without a timestamp column, the one first in the file).
2. Each user's remaining events are put in order:
   * with a timestamp column: by timestamp, stable, so events with equal timestamps keep their file order;
   * without a timestamp column: in a seeded random order (`seed`), NOT file order. Why: a file without
     timestamps is usually grouped or sorted by something arbitrary (item id, export batch), and holding out
     its last rows would test on a biased sample; a seeded shuffle gives an unbiased, reproducible split.
3. The last event is test, the second-last validation, the rest train. Users with fewer than 3 distinct
   items go wholly to train and are not evaluated.

The cold-item split removes a seeded share of items (among those with enough interactions) from training
entirely, to measure how well a model recommends items it has only seen as text.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data.schema import Interactions


@dataclass(frozen=True)
class Split:
    """Train/validation/test interactions; train is sorted by (user, time), one valid/test row per user."""

    train: Interactions
    valid: Interactions
    test: Interactions
    n_users: int
    n_items: int

    def train_csr(self) -> tuple[np.ndarray, np.ndarray]:
        """Train items per user as CSR (indptr [n_users+1], indices), in chronological order."""
        return to_csr(self.train.user, self.train.item, self.n_users)

    def item_popularity(self) -> np.ndarray:
        """Train interaction count per item (int64 [n_items])."""
        return np.bincount(self.train.item, minlength=self.n_items).astype(np.int64)


def to_csr(users: np.ndarray, items: np.ndarray, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """Group `items` by `users` keeping the given order inside each user (stable sort)."""
    order = np.argsort(users, kind="stable")
    counts = np.bincount(users, minlength=n_users)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return indptr, items[order].astype(np.int64)


def chronological_order(inter: Interactions, seed: int = 0) -> np.ndarray:
    """Row order by (user, time), stable on ties; seeded random within users when there is no time."""
    if inter.timestamp is not None:
        return np.lexsort((np.arange(len(inter)), inter.timestamp, inter.user))
    rng = np.random.default_rng(seed)
    return np.lexsort((rng.permutation(len(inter)), inter.user))


def _first_of_each_pair(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Sorted positions of the first occurrence of every distinct (user, item) pair."""
    pair = users.astype(np.int64) * (int(items.max(initial=0)) + 1) + items.astype(np.int64)
    _, first = np.unique(pair, return_index=True)
    return np.sort(first)


def deduplicate(inter: Interactions, seed: int = 0) -> Interactions:
    """Drop repeat (user, item) pairs keeping the earliest; result sorted by (user, time).

    Without timestamps "earliest" means first in the file; the survivors are then shuffled per user (see
    the module docstring).
    """
    if inter.timestamp is None:
        kept = inter.subset(_first_of_each_pair(inter.user, inter.item))
        return kept.subset(chronological_order(kept, seed))
    ordered = inter.subset(chronological_order(inter, seed))
    return ordered.subset(_first_of_each_pair(ordered.user, ordered.item))


def leave_last_out(inter: Interactions, n_users: int, n_items: int, seed: int = 0, min_events: int = 3) -> Split:
    """The per-user chronological leave-last-out split described in the module docstring."""
    events = deduplicate(inter, seed)
    counts = np.bincount(events.user, minlength=n_users)
    # position of each row inside its user's (sorted) sequence, counted from the end
    starts = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    pos = np.arange(len(events)) - starts[events.user]
    from_end = counts[events.user] - 1 - pos
    evaluated = counts[events.user] >= min_events
    test_mask = evaluated & (from_end == 0)
    valid_mask = evaluated & (from_end == 1)
    train_mask = ~(test_mask | valid_mask)
    return Split(
        train=events.subset(np.flatnonzero(train_mask)),
        valid=events.subset(np.flatnonzero(valid_mask)),
        test=events.subset(np.flatnonzero(test_mask)),
        n_users=n_users,
        n_items=n_items,
    )


@dataclass(frozen=True)
class ColdItemSplit:
    """Interactions without the cold items (to train on) and the held-out cold interactions."""

    cold_items: np.ndarray
    """int64 indices of the items removed from training."""
    warm: Interactions
    """All (deduplicated) interactions with warm items: the training data of the cold protocol."""
    cold: Interactions
    """The (deduplicated) interactions with cold items: what Recall@20 is measured on."""
    n_users: int
    n_items: int


def cold_item_split(
    inter: Interactions, n_users: int, n_items: int, fraction: float = 0.1, min_interactions: int = 5, seed: int = 0
) -> ColdItemSplit:
    """Hold out a seeded `fraction` of the items with >= `min_interactions` users from training."""
    events = deduplicate(inter, seed)
    pop = np.bincount(events.item, minlength=n_items)
    eligible = np.flatnonzero(pop >= min_interactions)
    rng = np.random.default_rng(seed)
    n_cold = int(round(fraction * len(eligible)))
    cold_items = np.sort(rng.choice(eligible, size=n_cold, replace=False)) if n_cold else np.zeros(0, np.int64)
    is_cold = np.zeros(n_items, dtype=bool)
    is_cold[cold_items] = True
    mask = is_cold[events.item]
    return ColdItemSplit(
        cold_items=cold_items.astype(np.int64),
        warm=events.subset(np.flatnonzero(~mask)),
        cold=events.subset(np.flatnonzero(mask)),
        n_users=n_users,
        n_items=n_items,
    )
