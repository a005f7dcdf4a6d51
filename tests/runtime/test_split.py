"""Leave-last-out and cold-item splits on hand-made sequences and on the MovieLens fixture."""

from __future__ import annotations

import numpy as np
import pytest

from recengine.data.schema import Interactions
from recengine.split import cold_item_split, deduplicate, leave_last_out, to_csr


def make(users, items, timestamps=None, weights=None, ctx=None) -> Interactions:
    n = len(users)
    return Interactions(
        user=np.asarray(users, dtype=np.int64),
        item=np.asarray(items, dtype=np.int64),
        timestamp=None if timestamps is None else np.asarray(timestamps, dtype=np.float64),
        weight=np.ones(n, np.float32) if weights is None else np.asarray(weights, np.float32),
        context={} if ctx is None else {"ctx_x": np.asarray(ctx, dtype=object)},
    )


def by_user(inter: Interactions) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for u, i in zip(inter.user.tolist(), inter.item.tolist()):
        out.setdefault(u, []).append(i)
    return out


def test_last_is_test_second_last_is_valid() -> None:
    # user 0: items 10,11,12,13 at t=3,1,2,4 -> order 11,12,10,13
    inter = make([0, 0, 0, 0], [10, 11, 12, 13], [3, 1, 2, 4])
    split = leave_last_out(inter, n_users=1, n_items=14)
    assert by_user(split.train) == {0: [11, 12]}
    assert split.valid.item.tolist() == [10]
    assert split.test.item.tolist() == [13]


def test_repeats_keep_the_earliest_event() -> None:
    # item 5 seen at t=5 and t=2: the t=2 event (weight 7, ctx "b") is the one kept
    inter = make([0] * 5, [5, 6, 5, 7, 8], [5, 1, 2, 3, 4], weights=[1, 1, 7, 1, 1], ctx=list("abbcd"))
    split = leave_last_out(inter, n_users=1, n_items=9)
    assert split.train.item.tolist() == [6, 5]
    assert split.train.weight.tolist() == [1, 7]
    assert split.train.context["ctx_x"].tolist() == ["b", "b"]
    assert split.train.timestamp.tolist() == [1, 2]
    assert (split.valid.item.tolist(), split.test.item.tolist()) == ([7], [8])


def test_users_with_fewer_than_three_distinct_items_go_wholly_to_train() -> None:
    inter = make(
        [0, 0, 1, 1, 1, 2, 2, 2],
        [1, 2, 1, 1, 2, 1, 2, 3],  # user 1 has 3 rows but only 2 distinct items
        [1, 2, 1, 2, 3, 1, 2, 3],
    )
    split = leave_last_out(inter, n_users=3, n_items=4)
    assert by_user(split.train) == {0: [1, 2], 1: [1, 2], 2: [1]}
    assert split.valid.user.tolist() == [2] and split.test.user.tolist() == [2]
    assert (split.valid.item.tolist(), split.test.item.tolist()) == ([2], [3])


def test_equal_timestamps_keep_file_order() -> None:
    inter = make([0, 0, 0, 0], [4, 3, 2, 1], [7, 7, 7, 7])
    split = leave_last_out(inter, n_users=1, n_items=5)
    assert split.train.item.tolist() == [4, 3]
    assert (split.valid.item.tolist(), split.test.item.tolist()) == ([2], [1])


def test_user_rows_may_be_interleaved_in_the_file() -> None:
    inter = make([1, 0, 1, 0, 1, 0], [1, 2, 3, 4, 5, 6], [1, 1, 2, 2, 3, 3])
    split = leave_last_out(inter, n_users=2, n_items=7)
    assert split.train.user.tolist() == [0, 1]  # train sorted by (user, time)
    assert split.test.user.tolist() == [0, 1]
    assert split.test.item.tolist() == [6, 5]
    assert split.valid.item.tolist() == [4, 3]


def test_without_timestamps_the_order_is_a_seeded_shuffle() -> None:
    n = 12
    inter = make([0] * n + [1] * n, list(range(n)) * 2)

    def order(seed: int) -> list[int]:
        s = leave_last_out(inter, n_users=2, n_items=n, seed=seed)
        return s.train.item.tolist() + s.valid.item.tolist() + s.test.item.tolist()

    assert order(0) == order(0)  # reproducible
    assert order(0) != order(1)  # the seed matters
    shuffled = [order(seed) for seed in range(5)]
    assert any(o[: n - 2] != list(range(n - 2)) for o in shuffled)  # not file order
    split = leave_last_out(inter, n_users=2, n_items=n, seed=3)
    for u in (0, 1):  # every item lands in exactly one part
        parts = by_user(split.train)[u] + by_user(split.valid)[u] + by_user(split.test)[u]
        assert sorted(parts) == list(range(n))


def test_without_timestamps_repeats_keep_the_first_row_in_the_file() -> None:
    inter = make([0, 0, 0, 0, 0], [1, 2, 1, 3, 4], weights=[5, 1, 9, 1, 1])
    for seed in range(6):
        events = deduplicate(inter, seed)
        assert sorted(events.item.tolist()) == [1, 2, 3, 4]
        assert events.weight[events.item == 1].tolist() == [5.0]


def test_split_parts_partition_the_deduplicated_events(ml_tiny_dataset) -> None:
    data = ml_tiny_dataset
    split = leave_last_out(data.interactions, data.n_users, data.n_items, seed=0)
    events = deduplicate(data.interactions)
    pairs = lambda x: set(zip(x.user.tolist(), x.item.tolist()))  # noqa: E731
    train, valid, test = pairs(split.train), pairs(split.valid), pairs(split.test)
    assert len(train) + len(valid) + len(test) == len(events) == len(pairs(events))
    assert not (train & valid or train & test or valid & test)
    assert len(split.test) == len(split.valid) == data.n_users  # every fixture user has >= 3 items
    assert np.array_equal(split.test.user, np.arange(data.n_users))
    # chronology: train <= valid <= test per user
    last_train = np.full(data.n_users, -np.inf)
    np.maximum.at(last_train, split.train.user, split.train.timestamp)
    assert (last_train <= split.valid.timestamp).all()
    assert (split.valid.timestamp <= split.test.timestamp).all()
    # train sorted by (user, time)
    key = split.train.user * 1e10 + split.train.timestamp
    assert (np.diff(key) >= 0).all()


def test_train_csr_and_popularity() -> None:
    inter = make([0, 0, 0, 0, 1, 1, 1], [3, 1, 2, 0, 1, 2, 3], [1, 2, 3, 4, 1, 2, 3])
    split = leave_last_out(inter, n_users=3, n_items=5)
    indptr, indices = split.train_csr()
    assert indptr.tolist() == [0, 2, 3, 3]  # user 2 has no events
    assert indices.tolist() == [3, 1, 1]  # chronological per user
    assert split.item_popularity().tolist() == [0, 2, 0, 1, 0]


def test_to_csr_groups_stably() -> None:
    indptr, indices = to_csr(np.array([2, 0, 2, 0]), np.array([7, 8, 9, 10]), n_users=4)
    assert indptr.tolist() == [0, 2, 2, 4, 4]
    assert indices.tolist() == [8, 10, 7, 9]


def test_cold_item_split_hand_case() -> None:
    # items 0..3 have 5 distinct users each, items 4 and 5 fewer: only 0..3 are eligible
    users, items = [], []
    for item, n in [(0, 5), (1, 5), (2, 6), (3, 5), (4, 4), (5, 1)]:
        users += list(range(n))
        items += [item] * n
    users += [0]
    items += [4]  # a repeat: user 0 and item 4 twice still counts once
    inter = make(users, items, np.arange(len(users)))
    cold = cold_item_split(inter, n_users=6, n_items=6, fraction=0.5, min_interactions=5, seed=1)
    assert len(cold.cold_items) == 2 and set(cold.cold_items.tolist()) <= {0, 1, 2, 3}
    assert not np.isin(cold.warm.item, cold.cold_items).any()
    assert np.isin(cold.cold.item, cold.cold_items).all()
    assert len(cold.warm) + len(cold.cold) == len(users) - 1
    again = cold_item_split(inter, n_users=6, n_items=6, fraction=0.5, min_interactions=5, seed=1)
    assert again.cold_items.tolist() == cold.cold_items.tolist()


def test_cold_item_split_on_movielens(ml_tiny_dataset) -> None:
    data = ml_tiny_dataset
    cold = cold_item_split(data.interactions, data.n_users, data.n_items, fraction=0.1, seed=0)
    pop = np.bincount(deduplicate(data.interactions).item, minlength=data.n_items)
    eligible = np.flatnonzero(pop >= 5)
    assert len(cold.cold_items) == round(0.1 * len(eligible))
    assert set(cold.cold_items.tolist()) <= set(eligible.tolist())
    assert len(cold.cold) == pop[cold.cold_items].sum()
    others = [cold_item_split(data.interactions, data.n_users, data.n_items, seed=s).cold_items for s in (1, 2)]
    assert any(o.tolist() != cold.cold_items.tolist() for o in others)


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_cold_item_split_extremes(fraction: float) -> None:
    inter = make(list(range(5)) * 2, [0] * 5 + [1] * 5, np.arange(10))
    cold = cold_item_split(inter, n_users=5, n_items=2, fraction=fraction, min_interactions=5)
    assert len(cold.cold_items) == (0 if fraction == 0 else 2)
    assert len(cold.warm) + len(cold.cold) == 10
