"""Ranking metrics on hand-computed cases (ranks, ties, exclusions, coverage, tail share, cold recall)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recengine.errors import RequestError
from recengine.metrics import (
    cold_query_values,
    coverage,
    evaluate_cold,
    evaluate_cold_recall,
    evaluate_full_ranking,
    hit_rate,
    mrr,
    multi_ranks,
    ndcg,
    ndcg_from_ranks,
    popular_mask,
    recall_at_k,
    recall_from_ranks,
    tail_share,
    target_ranks,
    topk_indices,
)

N_ITEMS = 12


def hand_scores() -> np.ndarray:
    """Three queries over 12 items (see test_evaluate_full_ranking_hand_computed for the ranks)."""
    return np.stack([
        np.arange(N_ITEMS, 0, -1, dtype=float),  # q0: item j scores 12-j (item 0 best)
        np.zeros(N_ITEMS),  # q1: a constant model
        np.arange(N_ITEMS, dtype=float),  # q2: item j scores j (item 11 best)
    ])


def test_target_ranks_are_pessimistic_on_ties() -> None:
    scores = np.array([[1.0, 2.0, 2.0, 0.0], [5.0, 5.0, 5.0, 5.0], [0.0, 1.0, 2.0, 3.0]])
    assert target_ranks(scores, np.array([1, 0, 3])).tolist() == [2, 4, 1]


def test_metric_formulas() -> None:
    ranks = np.array([1, 2, 10, 11])
    assert hit_rate(ranks, 10) == 0.75
    assert ndcg(ranks, 10) == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(11)) / 4)
    assert ndcg(ranks, 1) == pytest.approx(0.25)
    assert mrr(ranks) == pytest.approx((1 + 1 / 2 + 1 / 10 + 1 / 11) / 4)
    empty = np.zeros(0, dtype=np.int64)
    assert hit_rate(empty, 10) == ndcg(empty, 10) == mrr(empty) == 0.0


def test_evaluate_full_ranking_hand_computed() -> None:
    # q0: excludes items 0, 1; target 4 -> items 2, 3 ahead -> rank 3
    # q1: constant scores, excludes item 0; target 7 -> all 11 remaining items tie -> rank 11 (pessimistic)
    # q2: nothing in train, validation item 10 excluded via exclude_extra; target 11 -> rank 1
    indptr = np.array([0, 2, 3, 3])
    indices = np.array([0, 1, 0])
    valid = np.array([-1, -1, 10])
    popularity = np.array([10, 9, 8] + [0] * 9)  # head (20 % of 12 -> 3 items) = {0, 1, 2}
    scores = hand_scores()
    result = evaluate_full_ranking(
        lambda rows: scores[rows], np.array([4, 7, 11]), indptr, indices, popularity, ks=(2, 5),
        exclude_extra=[valid],
    )
    assert result.ranks.tolist() == [3, 11, 1]
    m = result.metrics
    assert m["hr@2"] == pytest.approx(1 / 3)
    assert m["hr@5"] == pytest.approx(2 / 3)
    assert m["ndcg@2"] == pytest.approx(1 / 3)
    assert m["ndcg@5"] == pytest.approx((1 / math.log2(4) + 1) / 3)
    assert m["mrr"] == pytest.approx((1 / 3 + 1 / 11 + 1) / 3)
    assert m["n_queries"] == 3
    # top-10: q0 -> 2..11; q1 -> ties by index -> 1..10; q2 -> 11, 9, 8, ..., 1 (10 excluded)
    assert result.topk[0, :10].tolist() == list(range(2, 12))
    assert result.topk[1, :10].tolist() == list(range(1, 11))
    assert result.topk[2, :10].tolist() == [11, 9, 8, 7, 6, 5, 4, 3, 2, 1]
    assert m["coverage@10"] == pytest.approx(11 / 12)  # item 0 is never recommended
    # head slots: q0 has item 2; q1 has items 1, 2; q2 has items 2, 1 -> 5 of 30 slots
    assert m["tail_share@10"] == pytest.approx(25 / 30)


def test_batching_does_not_change_results() -> None:
    scores = hand_scores()
    args = (np.array([4, 7, 11]), np.array([0, 2, 3, 3]), np.array([0, 1, 0]), np.arange(N_ITEMS))
    one = evaluate_full_ranking(lambda rows: scores[rows], *args, batch_size=1)
    big = evaluate_full_ranking(lambda rows: scores[rows], *args, batch_size=256)
    assert one.metrics == big.metrics
    assert np.array_equal(one.topk, big.topk)


def test_nan_and_inf_scores_rank_the_target_last() -> None:
    scores = np.zeros((2, N_ITEMS))
    scores[0, 3] = np.nan
    scores[1, 5] = -np.inf
    result = evaluate_full_ranking(
        lambda rows: scores[rows], np.array([3, 5]), np.array([0, 0, 0]), np.zeros(0, np.int64),
        np.zeros(N_ITEMS),
    )
    assert result.ranks.tolist() == [N_ITEMS, N_ITEMS]


def test_excluded_items_never_fill_a_slot() -> None:
    scores = np.arange(6, dtype=float)[None, :]
    scores[0, [1, 3, 5]] = -np.inf
    assert topk_indices(scores, 5).tolist() == [[4, 2, 0, -1, -1]]
    result = evaluate_full_ranking(
        lambda rows: np.arange(6, dtype=float)[None, :].repeat(len(rows), 0), np.array([0]),
        np.array([0, 3]), np.array([1, 3, 5]), np.array([5, 4, 3, 2, 1, 0]),
    )
    assert result.topk[0, :10].tolist() == [4, 2, 0] + [-1] * 7
    assert result.metrics["coverage@10"] == pytest.approx(3 / 6)
    # head = ceil(0.2 * 6) = 2 most popular = {0, 1}: item 0 is 1 of 3 real slots
    assert result.metrics["tail_share@10"] == pytest.approx(2 / 3)


def test_popular_mask_ties_by_item_index() -> None:
    assert popular_mask(np.array([1, 3, 3, 0, 3]), head_share=0.4).tolist() == [False, True, True, False, False]
    assert popular_mask(np.zeros(10), 0.2).tolist() == [True, True] + [False] * 8


def test_coverage_and_tail_share_direct() -> None:
    topk = np.array([[0, 1], [1, -1]])
    assert coverage(topk, 4) == 0.5
    assert tail_share(topk, np.array([True, False, False, False])) == pytest.approx(2 / 3)
    assert coverage(np.zeros((0, 10), np.int64), 4) == 0.0


def test_recall_at_k_hand_computed() -> None:
    topk = np.array([[3, 1, 7], [2, 5, -1], [0, 0, 0]])
    relevant = [np.array([1, 9]), np.array([5]), np.array([], dtype=np.int64)]
    # q0: 1 of 2 in top-3; q1: 1 of 1 in top-3 but 0 of 1 in top-1; q2 skipped (nothing relevant)
    assert recall_at_k(topk, relevant, 3) == pytest.approx((0.5 + 1.0) / 2)
    assert recall_at_k(topk, relevant, 1) == 0.0


def test_evaluate_cold_recall_hand_computed() -> None:
    # q0: train item 11 excluded, top-2 = {10, 9}; cold items {9, 4} -> 1/2
    # q1: constant scores, nothing excluded, top-2 = {0, 1}; cold {1} -> 1
    scores = np.stack([np.arange(N_ITEMS, dtype=float), np.zeros(N_ITEMS)])
    recall = evaluate_cold_recall(
        lambda rows: scores[rows], [np.array([9, 4]), np.array([1])], np.array([0, 1, 1]), np.array([11]),
        n_items=N_ITEMS, k=2,
    )
    assert recall == pytest.approx(0.75)


def test_multi_rank_metrics_hand_computed() -> None:
    row = np.array([5.0, 4.0, 4.0, 1.0, -np.inf])
    assert multi_ranks(row, np.array([0, 2, 4])).tolist() == [1, 3, 5]  # the tie at 4.0 ranks pessimistically
    ranks = np.array([1, 3, 30])
    assert recall_from_ranks(ranks, 20) == pytest.approx(2 / 3)
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_from_ranks(ranks, 20) == pytest.approx((1 + 1 / math.log2(4)) / ideal)
    assert ndcg_from_ranks(np.array([2]), 20) == pytest.approx(1 / math.log2(3))  # IDCG of one relevant item = 1
    assert ndcg_from_ranks(np.array([1, 2]), 1) == pytest.approx(1.0)  # IDCG capped at k
    assert recall_from_ranks(np.zeros(0, np.int64), 5) == ndcg_from_ranks(np.zeros(0, np.int64), 5) == 0.0


def test_evaluate_cold_both_protocols_hand_computed() -> None:
    # 8 items, cold items {5, 6, 7}.
    # q0: item j scores 8-j, item 0 excluded, relevant {5, 7}.
    #   hybrid: 5 is behind 1..4 -> rank 5; 7 -> rank 7.  cold-only: 5 -> rank 1, 7 -> rank 3.
    # q1: constant scores, relevant {6}: hybrid rank 8 (all tie), cold-only rank 3 (ties with the 2 other cold items)
    # q2: no relevant item -> skipped.
    # q3: item j scores j but the relevant item 6 is NaN (-> -inf): hybrid rank 8, cold-only rank 3
    scores = np.stack([8.0 - np.arange(8), np.zeros(8), np.arange(8.0), np.arange(8.0)])
    scores[3, 6] = np.nan
    relevant = [np.array([5, 7]), np.array([6]), np.array([], np.int64), np.array([6])]
    indptr, indices = np.array([0, 1, 1, 1, 1]), np.array([0])
    l2, l3, l4, l6 = (1 / math.log2(x) for x in (2, 3, 4, 6))

    out = evaluate_cold(lambda rows: scores[rows], relevant, indptr, indices, 8, np.array([7, 5, 6]), k=5,
                        batch_size=3)
    assert out["n_queries"] == 3
    assert out["cold_recall@5"] == pytest.approx((0.5 + 0 + 0) / 3)
    assert out["cold_ndcg@5"] == pytest.approx((l6 / (l2 + l3)) / 3)
    assert out["coldonly_recall@5"] == pytest.approx((1 + 1 + 1) / 3)
    assert out["coldonly_ndcg@5"] == pytest.approx(((l2 + l4) / (l2 + l3) + l4 + l4) / 3)

    # the same per query (what a paired comparison reads): q2 has no relevant item and is left out
    queries, per = cold_query_values(lambda rows: scores[rows], relevant, indptr, indices, 8, np.array([7, 5, 6]),
                                     k=5, batch_size=3)
    assert queries.tolist() == [0, 1, 3]
    assert per["cold_recall@5"].tolist() == pytest.approx([0.5, 0.0, 0.0])
    assert per["coldonly_ndcg@5"].tolist() == pytest.approx([(l2 + l4) / (l2 + l3), l4, l4])

    out = evaluate_cold(lambda rows: scores[rows], relevant, indptr, indices, 8, np.array([5, 6, 7]), k=2)
    assert out["cold_recall@2"] == 0.0 and out["cold_ndcg@2"] == 0.0
    assert out["coldonly_recall@2"] == pytest.approx(0.5 / 3)
    assert out["coldonly_ndcg@2"] == pytest.approx((l2 / (l2 + l3)) / 3)


def test_evaluate_cold_hybrid_recall_matches_evaluate_cold_recall_without_ties() -> None:
    rng = np.random.default_rng(3)
    scores = rng.random((6, 30))
    cold = np.arange(20, 30)
    relevant = [rng.choice(cold, size=1 + q % 3, replace=False) for q in range(6)]
    indptr = np.arange(0, 13, 2)
    indices = rng.integers(0, 20, 12)
    ours = evaluate_cold(lambda rows: scores[rows], relevant, indptr, indices, 30, cold, k=5)
    theirs = evaluate_cold_recall(lambda rows: scores[rows], relevant, indptr, indices, 30, k=5)
    assert ours["cold_recall@5"] == pytest.approx(theirs)
    only = evaluate_cold_recall(lambda rows: np.where(np.isin(np.arange(30), cold), scores[rows], -np.inf),
                                relevant, indptr, indices, 30, k=5)
    assert ours["coldonly_recall@5"] == pytest.approx(only)


def test_evaluate_cold_rejects_relevant_items_that_are_not_cold() -> None:
    with pytest.raises(RequestError, match="not all cold"):
        evaluate_cold(lambda rows: np.zeros((len(rows), 4)), [np.array([1])], np.array([0, 0]),
                      np.zeros(0, np.int64), 4, np.array([2, 3]))
    with pytest.raises(RequestError, match="expected"):
        evaluate_cold(lambda rows: np.zeros((len(rows), 3)), [np.array([3])], np.array([0, 0]),
                      np.zeros(0, np.int64), 4, np.array([3]))


def test_wrong_score_shape_is_a_clear_error() -> None:
    with pytest.raises(RequestError, match="expected"):
        evaluate_full_ranking(
            lambda rows: np.zeros((len(rows), 3)), np.array([0]), np.array([0, 0]), np.zeros(0, np.int64),
            np.zeros(4),
        )
    with pytest.raises(RequestError, match="expected"):
        evaluate_cold_recall(
            lambda rows: np.zeros((len(rows), 3)), [np.array([0])], np.array([0, 0]), np.zeros(0, np.int64), 4
        )


def test_a_better_model_scores_better_on_movielens(ml_tiny_dataset) -> None:
    """Popularity must beat random and a constant model must be no better than the worst case."""
    from recengine.split import leave_last_out

    data = ml_tiny_dataset
    split = leave_last_out(data.interactions, data.n_users, data.n_items)
    indptr, indices = split.train_csr()
    pop = split.item_popularity()
    targets = np.full(data.n_users, -1)
    targets[split.test.user] = split.test.item
    valid = np.full(data.n_users, -1)
    valid[split.valid.user] = split.valid.item
    rng = np.random.default_rng(0)
    random_scores = rng.random((data.n_users, data.n_items))

    def run(fn):
        return evaluate_full_ranking(fn, targets, indptr, indices, pop, exclude_extra=[valid]).metrics

    popular = run(lambda rows: np.tile(pop.astype(float), (len(rows), 1)))
    random = run(lambda rows: random_scores[rows])
    constant = run(lambda rows: np.zeros((len(rows), data.n_items)))
    assert popular["ndcg@10"] > random["ndcg@10"]
    assert popular["hr@20"] > random["hr@20"]
    assert constant["hr@20"] == 0.0 and constant["mrr"] < random["mrr"]
    assert popular["tail_share@10"] < random["tail_share@10"]
    assert popular["coverage@10"] < random["coverage@10"]


@pytest.mark.parametrize("levels", [0, 3, 1000])
def test_topk_matches_a_stable_full_sort(levels: int) -> None:
    """The fast path (argpartition) and the tie path agree with a stable sort, with and without ties."""
    rng = np.random.default_rng(levels)
    scores = rng.random((40, 300))
    if levels:
        scores = np.round(scores * levels)
    scores[rng.random(scores.shape) < 0.1] = -np.inf
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :25]
    expected[np.take_along_axis(scores, expected, axis=1) == -np.inf] = -1
    assert np.array_equal(topk_indices(scores, 25), expected)
