"""In-memory form of a data set that follows the data contract (see docs/data.md, "The data contract").

Everything is held as numpy arrays indexed by dense integer ids so that splits, metrics and models never
touch a dataframe: item `i` is `items.ids[i]`, user `u` is `user_ids[u]`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ItemTable:
    """The catalogue: ids, the text each item is encoded from, optional attributes and vectors."""

    ids: np.ndarray
    """object array of str, [n_items], unique."""
    texts: list[str]
    """Item text: the text columns joined as "column: value" lines (see `recengine.data.text`)."""
    text_columns: tuple[str, ...]
    """Text columns in the order used to build `texts` (recorded in bundles so live adds match)."""
    attrs: dict[str, np.ndarray] = field(default_factory=dict)
    """`attr_*` columns: object arrays of str (categorical) or float64 (numeric, NaN = missing)."""
    vectors: np.ndarray | None = None
    """Optional float32 [n_items, d] vectors made elsewhere (image, audio), rows aligned with `ids`."""

    def __len__(self) -> int:
        return int(self.ids.shape[0])


@dataclass(frozen=True)
class Interactions:
    """Interaction events as parallel arrays; every event is an implicit positive."""

    user: np.ndarray
    """int64 [n] dense user index."""
    item: np.ndarray
    """int64 [n] dense item index."""
    timestamp: np.ndarray | None
    """float64 [n] unix seconds, or None when the data set has no timestamps."""
    weight: np.ndarray
    """float32 [n] (rating, play count; 1 when absent)."""
    context: dict[str, np.ndarray] = field(default_factory=dict)
    """`ctx_*` columns: object arrays of str ("" = missing)."""

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def subset(self, index: np.ndarray) -> Interactions:
        """Rows selected by an integer or boolean index, in that order."""
        return Interactions(
            user=self.user[index],
            item=self.item[index],
            timestamp=None if self.timestamp is None else self.timestamp[index],
            weight=self.weight[index],
            context={k: v[index] for k, v in self.context.items()},
        )


@dataclass(frozen=True)
class LoadReport:
    """What the loader did besides loading: dropped rows and warnings, for the user to see."""

    warnings: tuple[str, ...] = ()
    dropped_unknown_items: int = 0
    dropped_unknown_users: int = 0


@dataclass(frozen=True)
class Dataset:
    """A validated data set: catalogue, users, interactions and optional user profiles."""

    name: str
    items: ItemTable
    user_ids: np.ndarray
    """object array of str, [n_users]."""
    interactions: Interactions
    user_attrs: dict[str, np.ndarray] = field(default_factory=dict)
    """`attr_*` profile columns aligned with `user_ids` ("" / NaN where a user has no profile row)."""
    fingerprint: str = ""
    """sha256 over the source files' bytes: identifies the data a bundle was trained on."""
    report: LoadReport = field(default_factory=LoadReport)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_users(self) -> int:
        return int(self.user_ids.shape[0])


WEIGHT_NOTE = ("interactions: their weights (a 'weight' column; MovieLens: the rating) are read and checked but not "
               "used: every (user, item) pair is one implicit positive (a weight of 0 included; drop such rows first "
               "if they mean 'no interaction')")
"""Why: rating- or count-weighted events lost accuracy where measured (Book-Crossing's ratings, 0.086-0.092 against
0.093 validation NDCG@10, bench/results/2026-12-01-rp3beta-cpu-2core), so training treats events alike; a user
whose data carries weights must not think they steer it."""


def has_weights(dataset: Dataset) -> bool:
    """Whether the interactions carry weights other than the default 1 (a weight column, or MovieLens ratings)."""
    weights = dataset.interactions.weight
    return weights is not None and bool(weights.size) and not bool(np.all(weights == 1))


def data_warnings(dataset: Dataset) -> list[str]:
    """What loading `dataset` worked around (dropped rows, units), and a weight column training ignores: printed by
    the export and kept in the manifest's `data.warnings`."""
    out = list(dataset.report.warnings)
    if has_weights(dataset):
        out.append(WEIGHT_NOTE)
    return out
