"""The evaluation protocol of `recengine bench quality`, built only from the foundation's split and metrics.

- Split: `recengine.split.leave_last_out` (last event per user = test, second-last = validation).
- Tuning: every model's grid is fitted on `split.train` and ranked by validation NDCG@10 (epoch-based
  models early-stop on it).
- Test: the chosen setting is refitted on train+valid (epoch count = the early-stopped one) and ranks the
  test item against the full catalogue minus the user's train+valid items, so every model sees exactly the
  same events before the test event.
- Cold items: `recengine.split.cold_item_split` removes a seeded share of items from training; models are
  refitted on the warm interactions and `recengine.metrics.evaluate_cold` scores two protocols from the same
  score rows: *hybrid* (all items ranked, the user's warm items excluded; relevant = the user's cold items)
  and *cold-only* (only the cold items ranked), Recall@20 and NDCG@20 for each.
- Per scene: test queries grouped by the test event's `ctx_*` value; metrics from the same ranks.
Metrics are never recomputed here: `recengine.metrics` does all of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from recengine.data.schema import Dataset, Interactions
from recengine.metrics import (
    RankingResult,
    evaluate_cold,
    evaluate_cold_recall,
    evaluate_full_ranking,
    hit_rate,
    mrr,
    ndcg,
)
from recengine.split import ColdItemSplit, Split, cold_item_split, leave_last_out, to_csr

from .baselines.base import TrainData

UserScoreFn = Callable[[np.ndarray], np.ndarray]
"""users (int64 [b]) -> scores float [b, n_items]."""


def concat(a: Interactions, b: Interactions) -> Interactions:
    """Rows of `a` then `b` (context columns kept where both have them)."""
    keys = set(a.context) & set(b.context)
    return Interactions(
        user=np.concatenate([a.user, b.user]),
        item=np.concatenate([a.item, b.item]),
        timestamp=None if a.timestamp is None or b.timestamp is None else np.concatenate([a.timestamp, b.timestamp]),
        weight=np.concatenate([a.weight, b.weight]),
        context={k: np.concatenate([a.context[k], b.context[k]]) for k in keys},
    )


@dataclass(frozen=True)
class Queries:
    """One held-out event per query: who asked, which item is the answer, what to exclude, its scene."""

    users: np.ndarray
    targets: np.ndarray
    exclude_indptr: np.ndarray
    exclude_indices: np.ndarray
    popularity: np.ndarray
    """Item counts of the data the models were fitted on (defines the popular head for tail share)."""
    context: dict[str, np.ndarray] = field(default_factory=dict)
    timestamps: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.users.shape[0])


def queries_for(events: Interactions, history: TrainData) -> Queries:
    """Queries for the held-out `events`, excluding each user's items in `history`."""
    users = events.user.astype(np.int64)
    indptr, indices = gather_rows(history.indptr, history.indices, users)
    return Queries(
        users=users,
        targets=events.item.astype(np.int64),
        exclude_indptr=indptr,
        exclude_indices=indices,
        popularity=history.item_counts(),
        context=dict(events.context),
        timestamps=events.timestamp,
    )


def gather_rows(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR of the selected rows, in the given order (a per-query exclusion list)."""
    lengths = indptr[rows + 1] - indptr[rows]
    out_ptr = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(lengths, out=out_ptr[1:])
    out = np.concatenate([indices[indptr[r]: indptr[r + 1]] for r in rows]) if len(rows) else np.zeros(0, np.int64)
    return out_ptr, out.astype(np.int64)


def evaluate(score: UserScoreFn, queries: Queries, batch_size: int = 256) -> RankingResult:
    """Full-ranking metrics of `score` (users -> rows) on `queries` (recengine.metrics.evaluate_full_ranking)."""
    return evaluate_rows(lambda rows: score(queries.users[rows]), queries, batch_size)


def evaluate_rows(score_rows: UserScoreFn, queries: Queries, batch_size: int = 256) -> RankingResult:
    """Like `evaluate`, for a score function indexed by query row (a scorer precomputed per query)."""
    return evaluate_full_ranking(
        score_rows,
        queries.targets,
        queries.exclude_indptr,
        queries.exclude_indices,
        queries.popularity,
        batch_size=batch_size,
    )


def scene_metrics(result: RankingResult, queries: Queries,
                  min_queries: int = 1) -> dict[str, dict[str, dict[str, float]]]:
    """Per `ctx_*` column and value: n_queries, HR@10/20, NDCG@10/20, MRR over that scene's test queries."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for column, values in sorted(queries.context.items()):
        per_value: dict[str, dict[str, float]] = {}
        for value in sorted(set(values.tolist())):
            ranks = result.ranks[values == value]
            if len(ranks) < min_queries:
                continue
            per_value[str(value) or "<missing>"] = {
                "n_queries": float(len(ranks)),
                "hr@10": hit_rate(ranks, 10),
                "ndcg@10": ndcg(ranks, 10),
                "hr@20": hit_rate(ranks, 20),
                "ndcg@20": ndcg(ranks, 20),
                "mrr": mrr(ranks),
            }
        out[column] = per_value
    return out


@dataclass(frozen=True)
class ColdProtocol:
    """Warm training data and, per query user, the cold items they interacted with."""

    split: ColdItemSplit
    data: TrainData
    users: np.ndarray
    relevant: list[np.ndarray]
    exclude_indptr: np.ndarray
    exclude_indices: np.ndarray

    def recall(self, score: UserScoreFn, k: int = 20, batch_size: int = 256) -> float:
        """Cold-item Recall@k of `score` (users -> rows; recengine.metrics.evaluate_cold_recall)."""
        return self.recall_rows(lambda rows: score(self.users[rows]), k, batch_size)

    def describe(self) -> dict[str, object]:
        return {
            "split": "cold_item_split (recengine.split): a seeded share of the items with enough interactions is "
                     "removed from training; models are refitted on the warm interactions",
            "n_cold_items": int(len(self.split.cold_items)),
            "n_cold_interactions": int(len(self.split.cold)),
            "n_queries": int(len(self.users)),
            "metric": "hybrid (cold_recall@20, cold_ndcg@20): all items ranked, the user's warm items excluded, "
                      "relevant = the user's cold items; cold-only (coldonly_recall@20, coldonly_ndcg@20): only "
                      "the cold items ranked; Recall@20 = mean over users of |their cold items ranked <= 20| / "
                      "|their cold items|, NDCG@20 with binary gains; pessimistic ties "
                      "(recengine.metrics.evaluate_cold)",
            "protocols": {
                "hybrid": "all items ranked, the user's warm items excluded, relevant = the user's cold items",
                "cold_only": "only the cold items ranked (the cold setting of the cold-start literature)",
            },
        }

    def evaluate(self, score: UserScoreFn, k: int = 20, batch_size: int = 256) -> dict[str, float]:
        """Both cold protocols of `score` (users -> full rows): cold_/coldonly_ recall@k and ndcg@k."""
        return self.evaluate_rows(lambda rows: score(self.users[rows]), k, batch_size)

    def evaluate_rows(self, score_rows: UserScoreFn, k: int = 20, batch_size: int = 256) -> dict[str, float]:
        """Both cold protocols of a score function indexed by query row (full rows over the catalogue: the
        cold-only protocol ranks their cold columns, so any full-row scorer serves it unchanged)."""
        out = evaluate_cold(score_rows, self.relevant, self.exclude_indptr, self.exclude_indices,
                            self.data.n_items, self.split.cold_items, k=k, batch_size=batch_size)
        out.pop("n_queries", None)
        return out

    def recall_rows(self, score_rows: UserScoreFn, k: int = 20, batch_size: int = 256) -> float:
        """Cold-item Recall@k of a score function indexed by query row."""
        return evaluate_cold_recall(
            score_rows, self.relevant, self.exclude_indptr, self.exclude_indices,
            self.data.n_items, k=k, batch_size=batch_size,
        )


def cold_protocol(dataset: Dataset, fraction: float = 0.1, min_interactions: int = 5, seed: int = 0) -> ColdProtocol:
    """Hold out cold items; queries are the users who interacted with at least one of them."""
    cs = cold_item_split(dataset.interactions, dataset.n_users, dataset.n_items, fraction, min_interactions, seed)
    data = TrainData.from_interactions(cs.warm, dataset.n_users, dataset.n_items, dataset.items.texts, seed)
    cold_ptr, cold_items = to_csr(cs.cold.user, cs.cold.item, dataset.n_users)
    users = np.flatnonzero(np.diff(cold_ptr) > 0).astype(np.int64)
    relevant = [np.unique(cold_items[cold_ptr[u]: cold_ptr[u + 1]]) for u in users]
    ex_ptr, ex_idx = gather_rows(data.indptr, data.indices, users)
    return ColdProtocol(cs, data, users, relevant, ex_ptr, ex_idx)


@dataclass(frozen=True)
class Protocol:
    """Everything the quality bench evaluates on, derived once from the data set and seed."""

    dataset: Dataset
    split: Split
    train: TrainData
    train_valid: TrainData
    valid: Queries
    test: Queries
    seed: int

    @classmethod
    def build(cls, dataset: Dataset, seed: int = 0) -> Protocol:
        split = leave_last_out(dataset.interactions, dataset.n_users, dataset.n_items, seed=seed)
        texts = dataset.items.texts
        train = TrainData.from_interactions(split.train, dataset.n_users, dataset.n_items, texts, seed)
        train_valid = TrainData.from_interactions(
            concat(split.train, split.valid), dataset.n_users, dataset.n_items, texts, seed
        )
        return cls(dataset, split, train, train_valid, queries_for(split.valid, train),
                   queries_for(split.test, train_valid), seed)

    def describe(self) -> dict[str, object]:
        """The `protocol` block of the JSON report."""
        return {
            "split": "leave_last_out (recengine.split): per user, last event = test, second-last = validation",
            "seed": self.seed,
            "ranking": "full catalogue, known items excluded, pessimistic ties (recengine.metrics)",
            "tuning": "grid per model on split.train, selected by validation NDCG@10 (early stopping on it)",
            "test_fit": "selected setting refitted on train+valid (early-stopped epoch count), tested on split.test",
            "n_users": self.dataset.n_users,
            "n_items": self.dataset.n_items,
            "n_train_events": self.train.n_interactions(),
            "n_valid_queries": len(self.valid),
            "n_test_queries": len(self.test),
        }
