"""Ranking metrics of the full-ranking protocol (see docs/data.md, "Evaluation protocol").

Every model is scored on all items; the user's known items are excluded; the one held-out item is ranked.
Ties are broken pessimistically (an item scored equal to the target counts as ranked above it), so a model
that scores everything alike cannot look good.

Cold items (items with no training interaction) have two protocols (`evaluate_cold`):
- *hybrid*: all items are ranked (the user's warm items excluded); relevant = the user's cold items;
- *cold-only*: only the cold items are ranked (the "cold" setting of the cold-start literature), which asks
  whether a model puts a new item in front of the right users at all, whatever the warm items score.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import RequestError

ScoreFn = Callable[[np.ndarray], np.ndarray]
"""Given query row indices (shape [b]), return scores float [b, n_items]."""


def target_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based pessimistic rank of `targets[i]` in `scores[i]` (excluded items must be -inf already)."""
    rows = np.arange(scores.shape[0])
    target_scores = scores[rows, targets][:, None]
    ahead = (scores >= target_scores).sum(axis=1)  # counts the target itself
    return ahead.astype(np.int64)


def hit_rate(ranks: np.ndarray, k: int) -> float:
    """HR@k (= Recall@k with one relevant item)."""
    return float(np.mean(ranks <= k)) if len(ranks) else 0.0


def ndcg(ranks: np.ndarray, k: int) -> float:
    """NDCG@k with one relevant item: 1/log2(rank+1) if rank <= k, else 0."""
    if not len(ranks):
        return 0.0
    gains = np.where(ranks <= k, 1.0 / np.log2(ranks + 1.0), 0.0)
    return float(np.mean(gains))


def mrr(ranks: np.ndarray) -> float:
    """Mean reciprocal rank over the full ranking."""
    return float(np.mean(1.0 / ranks)) if len(ranks) else 0.0


def coverage(topk: np.ndarray, n_items: int) -> float:
    """Share of the catalogue that appears in at least one list."""
    if topk.size == 0 or n_items == 0:
        return 0.0
    return float(len(np.unique(topk[topk >= 0])) / n_items)


def popular_mask(popularity: np.ndarray, head_share: float = 0.2) -> np.ndarray:
    """True for the `head_share` most popular items (by train count; ties broken by item index)."""
    n = len(popularity)
    n_head = int(np.ceil(head_share * n))
    order = np.lexsort((np.arange(n), -np.asarray(popularity)))
    mask = np.zeros(n, dtype=bool)
    mask[order[:n_head]] = True
    return mask


def tail_share(topk: np.ndarray, head: np.ndarray) -> float:
    """Share of recommended slots whose item is outside the popular head."""
    valid = topk[topk >= 0]
    return float(np.mean(~head[valid])) if valid.size else 0.0


def topk_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best items per row, best first (ties by item index); -1 for excluded slots.

    Items scored -inf (excluded) never fill a slot: when fewer than k items remain the row ends in -1s,
    so coverage and tail share count only what was really recommended. Ties always go to the lower item
    index (argpartition alone would pick an arbitrary tied item at the k-th place), so results are
    deterministic; only rows with a tie across the k-th place pay for a full sort.
    """
    n_rows, n_items = scores.shape
    k = min(k, n_items)
    if k <= 0 or n_rows == 0:
        return np.zeros((n_rows, max(k, 0)), dtype=np.int64)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    kth = part_scores.min(axis=1, keepdims=True)
    order = np.lexsort((part, -part_scores), axis=1)
    top = np.take_along_axis(part, order, axis=1).astype(np.int64)
    tied = np.flatnonzero((scores >= kth).sum(axis=1) > k)
    if len(tied):
        top[tied] = np.argsort(-scores[tied], axis=1, kind="stable")[:, :k]
    top[np.take_along_axis(scores, top, axis=1) == -np.inf] = -1
    return top


def mask_excluded(scores: np.ndarray, rows: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
                  extra: list[np.ndarray] | None = None) -> None:
    """Set the scores of each query's excluded items (a CSR per query row) to -inf, in place."""
    for b, q in enumerate(rows):
        scores[b, indices[indptr[q]:indptr[q + 1]]] = -np.inf
        if extra is not None:
            for arr in extra:
                if arr[q] >= 0:
                    scores[b, arr[q]] = -np.inf


@dataclass(frozen=True)
class RankingResult:
    """Metrics of one full-ranking evaluation, plus the raw ranks for further analysis."""

    metrics: dict[str, float]
    ranks: np.ndarray
    topk: np.ndarray


def scored_batches(score_fn: Any, n_queries: int, n_items: int, batch_size: int, exclude_indptr: np.ndarray,
                   exclude_indices: np.ndarray, exclude_extra: Any = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(query rows, float64 scores [rows, n_items]) per batch: the score function's shape checked, NaN/inf
    made -inf (ranked last) and each query's excluded items masked. One place for every protocol."""
    for start in range(0, n_queries, batch_size):
        rows = np.arange(start, min(start + batch_size, n_queries))
        scores = np.array(score_fn(rows), dtype=np.float64, copy=True)
        if scores.shape != (len(rows), n_items):
            raise RequestError(f"score_fn returned shape {scores.shape}, expected {(len(rows), n_items)}")
        scores[~np.isfinite(scores)] = -np.inf
        mask_excluded(scores, rows, exclude_indptr, exclude_indices, exclude_extra)
        yield rows, scores


def evaluate_full_ranking(
    score_fn: ScoreFn,
    targets: np.ndarray,
    exclude_indptr: np.ndarray,
    exclude_indices: np.ndarray,
    popularity: np.ndarray,
    ks: tuple[int, ...] = (10, 20),
    batch_size: int = 256,
    exclude_extra: list[np.ndarray] | None = None,
) -> RankingResult:
    """Full-ranking HR@k, NDCG@k, MRR, coverage@10 and tail share@10 over all queries.

    Query `q` has held-out item `targets[q]`; its excluded items are `exclude_indices[indptr[q]:indptr[q+1]]`
    plus `exclude_extra[j][q]` (e.g. the validation item when testing; -1 for none).
    """
    n_queries = len(targets)
    n_items = len(popularity)
    ranks = np.zeros(n_queries, dtype=np.int64)
    k_list = max(10, max(ks))
    topk = np.full((n_queries, k_list), -1, dtype=np.int64)
    for rows, scores in scored_batches(score_fn, n_queries, n_items, batch_size, exclude_indptr, exclude_indices,
                                       exclude_extra):
        # a target scored -inf (NaN from the model, or excluded by mistake) ranks last: every item ties it
        ranks[rows] = target_ranks(scores, targets[rows])
        topk[rows, : min(k_list, n_items)] = topk_indices(scores, k_list)
    head = popular_mask(popularity)
    metrics: dict[str, float] = {}
    for k in ks:
        metrics[f"hr@{k}"] = hit_rate(ranks, k)
        metrics[f"ndcg@{k}"] = ndcg(ranks, k)
    metrics["mrr"] = mrr(ranks)
    metrics["coverage@10"] = coverage(topk[:, :10], n_items)
    metrics["tail_share@10"] = tail_share(topk[:, :10], head)
    metrics["n_queries"] = float(n_queries)
    return RankingResult(metrics=metrics, ranks=ranks, topk=topk)


def recall_at_k(topk: np.ndarray, relevant: list[np.ndarray], k: int) -> float:
    """Mean over queries of |top-k ∩ relevant| / |relevant| (queries with no relevant items skipped)."""
    values = []
    for row, rel in zip(topk, relevant):
        if len(rel):
            values.append(len(np.intersect1d(row[:k], rel)) / len(rel))
    return float(np.mean(values)) if values else 0.0


def evaluate_cold_recall(
    score_fn: ScoreFn,
    relevant: list[np.ndarray],
    exclude_indptr: np.ndarray,
    exclude_indices: np.ndarray,
    n_items: int,
    k: int = 20,
    batch_size: int = 256,
) -> float:
    """Cold-item Recall@k: rank all items (minus the query's excluded items) and count cold hits."""
    n_queries = len(relevant)
    topk = np.full((n_queries, k), -1, dtype=np.int64)
    for rows, scores in scored_batches(score_fn, n_queries, n_items, batch_size, exclude_indptr, exclude_indices):
        topk[rows, : min(k, n_items)] = topk_indices(scores, k)
    return recall_at_k(topk, relevant, k)


def multi_ranks(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """1-based pessimistic rank of each `relevant` item in one score row: the number of items scored at
    least as high (itself included). Excluded items must already be -inf; a relevant item scored -inf ranks
    behind every item of the row."""
    rel_scores = scores[relevant]
    return (scores[None, :] >= rel_scores[:, None]).sum(axis=1).astype(np.int64)


def recall_from_ranks(ranks: np.ndarray, k: int) -> float:
    """|relevant items ranked <= k| / |relevant| for one query (0 for a query without relevant items)."""
    return float(np.mean(ranks <= k)) if len(ranks) else 0.0


def ndcg_from_ranks(ranks: np.ndarray, k: int) -> float:
    """Binary-gain NDCG@k of one query with several relevant items, from their (pessimistic) ranks:
    DCG = sum over relevant items ranked <= k of 1/log2(rank+1); IDCG = the same with the relevant items at
    ranks 1..min(|relevant|, k). Tied relevant items share the worst rank of their tie."""
    if not len(ranks):
        return 0.0
    dcg = float(np.sum(np.where(ranks <= k, 1.0 / np.log2(ranks + 1.0), 0.0)))
    idcg = float(np.sum(1.0 / np.log2(np.arange(1, min(len(ranks), k) + 1) + 1.0)))
    return dcg / idcg


COLD_PROTOCOLS: tuple[str, ...] = ("cold", "coldonly")
"""Metric-name prefixes of the two cold protocols: `cold_*` = hybrid, `coldonly_*` = cold-only."""


def cold_query_values(
    score_fn: ScoreFn,
    relevant: list[np.ndarray],
    exclude_indptr: np.ndarray,
    exclude_indices: np.ndarray,
    n_items: int,
    cold_items: np.ndarray,
    k: int = 20,
    batch_size: int = 256,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per query, both cold-item protocols (see `evaluate_cold`, which averages these): (the queries that
    have relevant items, in order; metric name -> value per such query). What a paired comparison of two
    scorers on the same queries needs."""
    cold_items = np.unique(np.asarray(cold_items, dtype=np.int64))
    if len(cold_items) and (cold_items[0] < 0 or cold_items[-1] >= n_items):
        raise RequestError(f"cold_items must lie in [0, {n_items}), got {cold_items[0]}..{cold_items[-1]}")
    n_queries = len(relevant)
    values: dict[str, list[float]] = {f"{p}_{m}@{k}": [] for p in COLD_PROTOCOLS for m in ("recall", "ndcg")}
    counted: list[int] = []
    for rows, scores in scored_batches(score_fn, n_queries, n_items, batch_size, exclude_indptr, exclude_indices):
        cold_scores = scores[:, cold_items]
        for b, q in enumerate(rows):
            rel = np.unique(np.asarray(relevant[q], dtype=np.int64))
            if not len(rel):
                continue
            pos = np.searchsorted(cold_items, rel)
            if np.any(pos >= len(cold_items)) or np.any(cold_items[np.minimum(pos, len(cold_items) - 1)] != rel):
                raise RequestError(f"query {q}: relevant items {rel.tolist()} are not all cold items")
            counted.append(int(q))
            for prefix, row, idx in (("cold", scores[b], rel), ("coldonly", cold_scores[b], pos)):
                ranks = multi_ranks(row, idx)
                values[f"{prefix}_recall@{k}"].append(recall_from_ranks(ranks, k))
                values[f"{prefix}_ndcg@{k}"].append(ndcg_from_ranks(ranks, k))
    return np.asarray(counted, np.int64), {name: np.asarray(v, np.float64) for name, v in values.items()}


def evaluate_cold(
    score_fn: ScoreFn,
    relevant: list[np.ndarray],
    exclude_indptr: np.ndarray,
    exclude_indices: np.ndarray,
    n_items: int,
    cold_items: np.ndarray,
    k: int = 20,
    batch_size: int = 256,
) -> dict[str, float]:
    """Both cold-item protocols from the same full score rows (pessimistic ties, as the warm metrics).

    Query `q` relates to the cold items `relevant[q]` (a subset of `cold_items`); its excluded (warm, known)
    items are `exclude_indices[indptr[q]:indptr[q+1]]`.
    - hybrid (`cold_recall@k`, `cold_ndcg@k`): every item except the excluded ones is ranked;
    - cold-only (`coldonly_recall@k`, `coldonly_ndcg@k`): only `cold_items` (minus excluded) are ranked,
      i.e. the row restricted to the cold columns, so any scorer of full rows serves both protocols.
    Recall@k = mean over queries of |relevant ranked <= k| / |relevant|; NDCG@k as `ndcg_from_ranks`.
    Queries without relevant items are skipped (`n_queries` counts the others).
    """
    _, values = cold_query_values(score_fn, relevant, exclude_indptr, exclude_indices, n_items, cold_items, k,
                                  batch_size)
    out = {name: float(np.mean(v)) if len(v) else 0.0 for name, v in values.items()}
    out["n_queries"] = float(len(values[f"cold_recall@{k}"]))
    return out
