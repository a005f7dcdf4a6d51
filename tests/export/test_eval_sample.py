"""The export's evaluations score a seeded sample of at most `EVAL_USERS` users per stage (all of them when
fewer): the sampled queries are exactly the full queries of the sampled users, so their metrics are the
full-ranking metrics restricted to those users."""

from __future__ import annotations

import numpy as np
import pytest

from recengine.evaluation import evaluate_queries, make_queries
from recengine.export.eval_sample import EVAL_USERS, sample_queries, sample_rows, subset_queries
from recengine.metrics import ndcg
from recengine.split import leave_last_out


@pytest.fixture(scope="module")
def split(ml_tiny_dataset):
    d = ml_tiny_dataset
    return leave_last_out(d.interactions, d.n_users, d.n_items, seed=0)


def test_sample_rows_is_seeded_sorted_and_whole_below_the_cap():
    assert np.array_equal(sample_rows(7, 10), np.arange(7))
    assert np.array_equal(sample_rows(7, 0), np.arange(7))  # 0 = every user
    a, b = sample_rows(1000, 50), sample_rows(1000, 50)
    assert np.array_equal(a, b) and len(np.unique(a)) == 50 and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, sample_rows(1000, 50, seed=1))
    assert 610 < EVAL_USERS  # the embedded MovieLens (610 validation users) is evaluated on every user


@pytest.mark.parametrize("stage", ["valid", "test"])
def test_sampled_queries_are_the_full_queries_of_the_sampled_users(split, stage):
    full = make_queries(split, stage)
    assert sample_queries(full, len(full.users)) is full
    sub = sample_queries(full, 20)
    rows = sample_rows(len(full.users), 20)
    assert len(sub.users) == 20 and np.array_equal(sub.users, full.users[rows])
    assert np.array_equal(sub.targets, full.targets[rows]) and np.array_equal(sub.scene_rows, full.scene_rows[rows])
    for i, r in enumerate(rows):
        assert np.array_equal(sub.excluded(i), full.excluded(int(r)))
    assert (sub.exclude_extra is None) == (stage == "valid")


def test_sampled_metrics_are_the_full_ranking_restricted_to_the_sample(split):
    full = make_queries(split, "valid")
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(split.n_users, split.n_items))
    by_user = lambda q: lambda rows: scores[q.users[rows]]  # noqa: E731
    whole = evaluate_queries(by_user(full), full)
    rows = sample_rows(len(full.users), 25)
    sub = subset_queries(full, rows)
    part = evaluate_queries(by_user(sub), sub)
    assert np.array_equal(part.ranks, whole.ranks[rows])
    assert part.metrics["n_queries"] == 25
    assert part.metrics["ndcg@10"] == pytest.approx(ndcg(whole.ranks[rows], 10))
