"""Every baseline through one contract, then each on a toy data set where the right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from recengine.bench.baselines import BASELINES, TrainData, create
from recengine.errors import RequestError

from .toy import blocks, cycle, from_histories, pairs


class OneHotText:
    """Text embeddings that put items < n/2 and the rest in two orthogonal directions."""

    def __init__(self, n_items: int) -> None:
        self.n = n_items

    def item_text_embeddings(self) -> np.ndarray:
        emb = np.zeros((self.n, 2), np.float32)
        emb[: self.n // 2, 0] = 1.0
        emb[self.n // 2:, 1] = 1.0
        return emb


def quick(name: str, **overrides) -> dict:
    return {**BASELINES[name].grid("quick")[0], **overrides}


def make(name: str, data: TrainData, **overrides):
    return create(name, quick(name, **overrides), OneHotText(data.n_items)).fit(data)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_contract(name: str) -> None:
    data, _ = blocks()
    model = make(name, data)
    users = np.array([0, 3, 7])
    scores = model.score(users)
    assert scores.shape == (3, data.n_items)
    assert np.isfinite(scores).all()
    again = make(name, data).score(users)
    np.testing.assert_allclose(scores, again, rtol=1e-4, atol=1e-4, err_msg=f"{name} is not reproducible")
    for profile in ("quick", "standard"):
        grid = BASELINES[name].grid(profile)
        assert grid and all(isinstance(p, dict) for p in grid)


def test_create_rejects_unknown_and_textless() -> None:
    with pytest.raises(RequestError, match="unknown baseline"):
        create("nope", {})
    with pytest.raises(RequestError, match="text"):
        create("frozen_text", {})


def test_popularity_recovers_the_most_popular_item() -> None:
    data = from_histories([[3], [3, 1], [3, 1], [3, 2], [0]], n_items=5)
    scores = make("popularity", data).score(np.array([4]))
    assert int(np.argmax(scores[0])) == 3
    assert list(np.argsort(-scores[0])[:2]) == [3, 1]


def test_itemknn_recovers_co_occurrence() -> None:
    data = pairs()
    scores = make("itemknn", data, K=5).score(np.array([data.n_users - 1]))[0]
    scores[0] = -np.inf  # the probe's own item
    assert int(np.argmax(scores)) == 1


@pytest.mark.parametrize("name", ["als", "bpr", "lightgcn", "itemknn", "frozen_text"])
def test_community_models_rank_the_users_own_half_first(name: str) -> None:
    data, group = blocks()
    overrides = {"epochs": 40, "lr": 0.05} if name == "lightgcn" else {}
    if name == "bpr":
        overrides = {"iterations": 200, "learning_rate": 0.05}
    scores = make(name, data, **overrides).score(np.arange(data.n_users))
    half = data.n_items // 2
    own = np.where(group[:, None] == 0, scores[:, :half].mean(1, keepdims=True), scores[:, half:].mean(1, keepdims=True))
    other = np.where(group[:, None] == 0, scores[:, half:].mean(1, keepdims=True), scores[:, :half].mean(1, keepdims=True))
    assert (own > other).mean() >= 0.9, f"{name} does not separate the communities"


def test_sasrec_predicts_the_next_item_of_a_sequence() -> None:
    data = cycle()
    model = make("sasrec", data, epochs=60, lr=5e-3, dropout=0.0)
    users = np.arange(data.n_users)
    top = np.argmax(model.score(users), axis=1)
    expected = np.array([(data.history(u)[-1] + 1) % data.n_items for u in users])
    assert (top == expected).mean() >= 0.9


def test_sasrec_history_swap_reads_the_new_history() -> None:
    data = cycle()
    model = make("sasrec", data, epochs=60, lr=5e-3, dropout=0.0)
    longer = from_histories([list(data.history(u)) + [(data.history(u)[-1] + 1) % data.n_items]
                             for u in range(data.n_users)], data.n_items)
    model.use_history(longer)
    top = np.argmax(model.score(np.arange(data.n_users)), axis=1)
    expected = np.array([(longer.history(u)[-1] + 1) % data.n_items for u in range(data.n_users)])
    assert (top == expected).mean() >= 0.9


def test_early_stopping_keeps_the_best_epoch() -> None:
    data = cycle()
    seen = []

    def validate(score) -> float:
        value = [0.1, 0.5, 0.2, 0.1, 0.05][len(seen)] if len(seen) < 5 else 0.0
        seen.append(value)
        return value

    model = create("sasrec", quick("sasrec", epochs=30, eval_every=1, patience=2)).fit(data, validate)
    assert model.info.best_epoch == 2 and model.info.best_valid == 0.5
    assert model.info.epochs_run == 4  # two evaluations without a gain after epoch 2
    assert model.refit_params()["epochs"] == 2
