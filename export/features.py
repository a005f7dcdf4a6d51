"""Scene, profile and popularity-bucket encodings, exactly as docs/bundle.md specifies them.

The same vocabularies are written into the bundle (`vocab`) so the runtime encodes a request's scene and a
user's profile into the same integer slots the towers were trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recengine.data.schema import Dataset, Interactions

UNK = "<unk>"


@dataclass(frozen=True)
class Vocab:
    """Categorical vocabularies of `ctx_*` (scene) or `attr_*` (profile) columns.

    `values[col][0]` is always `<unk>`; numeric columns are bucketised with `numeric_edges[col]`.
    """

    columns: tuple[str, ...]
    values: dict[str, list[str]]
    numeric_edges: dict[str, list[float]]

    @property
    def slots(self) -> int:
        """Width of the encoded input (1 with a constant 0 when there are no columns)."""
        return max(1, len(self.columns))

    @property
    def sizes(self) -> list[int]:
        """Vocabulary size per slot (embedding table sizes)."""
        if not self.columns:
            return [1]
        return [len(self.values[c]) if c in self.values else len(self.numeric_edges[c]) + 2 for c in self.columns]

    def to_json(self) -> dict:
        out: dict = {"columns": list(self.columns), "values": self.values}
        if self.numeric_edges:
            out["numeric_edges"] = self.numeric_edges
        return out

    def encode(self, table: dict[str, np.ndarray], n: int) -> np.ndarray:
        """Encode `n` rows of the columns in `table` into int64 [n, slots] (the runtime's rule:
        `recengine.vocab.SlotVocab.encode_table`)."""
        from recengine.vocab import SlotVocab

        return SlotVocab.from_manifest("vocab", "", self.to_json(), self.slots).encode_table(table, n)


def build_vocab(table: dict[str, np.ndarray], max_values: int = 1000, numeric_buckets: int = 8) -> Vocab:
    """Vocabulary of every column in `table`: most frequent `max_values` categories, or quantile buckets."""
    columns = tuple(sorted(table))
    values: dict[str, list[str]] = {}
    edges: dict[str, list[float]] = {}
    for col in columns:
        column = table[col]
        if np.asarray(column).dtype.kind == "f":
            x = np.asarray(column, dtype=np.float64)
            x = x[~np.isnan(x)]
            qs = np.unique(np.quantile(x, np.linspace(0, 1, numeric_buckets + 1)[1:-1])) if x.size else np.zeros(0)
            edges[col] = [float(q) for q in qs]
        else:
            strings = [str(v) for v in column if v is not None and str(v) != ""]
            uniq, counts = np.unique(np.asarray(strings, dtype=object), return_counts=True) if strings else ([], [])
            order = sorted(zip(uniq, counts), key=lambda t: (-t[1], t[0]))[:max_values]
            values[col] = [UNK] + sorted(str(v) for v, _ in order)
    return Vocab(columns=columns, values=values, numeric_edges=edges)


def scene_vocab(dataset: Dataset) -> Vocab:
    return build_vocab(dataset.interactions.context)


def profile_vocab(dataset: Dataset) -> Vocab:
    return build_vocab(dataset.user_attrs)


def encode_scene(vocab: Vocab, inter: Interactions) -> np.ndarray:
    """Scene slots of every event (int64 [n_events, slots])."""
    return vocab.encode(inter.context, len(inter))


def encode_profiles(vocab: Vocab, dataset: Dataset) -> np.ndarray:
    """Profile slots of every user (int64 [n_users, slots])."""
    return vocab.encode(dataset.user_attrs, dataset.n_users)


def pop_bucket_edges(popularity: np.ndarray, n_buckets: int) -> np.ndarray:
    """Quantile edges of the positive train counts (buckets 1..n; 0 is reserved for no interactions)."""
    pos = popularity[popularity > 0].astype(np.float64)
    if pos.size == 0:
        return np.zeros(0)
    qs = np.quantile(pos, np.linspace(0, 1, n_buckets + 1)[1:-1])
    return np.unique(np.floor(qs))


def pop_buckets(popularity: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """docs/bundle.md: 0 for no train interactions, else 1 + searchsorted(edges, count, side='right')."""
    from recengine.catalogue import pop_buckets as rule

    return rule(popularity, edges)
