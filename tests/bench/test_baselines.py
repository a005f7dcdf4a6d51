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


@pytest.mark.parametrize("weighting", ["none", "tfidf", "bm25"])
@pytest.mark.parametrize("shrink", [0.0, 10.0])
def test_itemknn_recovers_co_occurrence(weighting: str, shrink: float) -> None:
    data = pairs()
    scores = make("itemknn", data, K=5, weighting=weighting, shrink=shrink).score(np.array([data.n_users - 1]))[0]
    scores[0] = -np.inf  # the probe's own item
    assert int(np.argmax(scores)) == 1


def test_itemknn_decay_weights_the_latest_items_most() -> None:
    # items 0 and 1 each co-occur with one other item (0 with 2, 1 with 3); the probe took 0, then 1
    data = from_histories([[0, 2], [0, 2], [1, 3], [1, 3], [0, 1]], n_items=4)
    plain = make("itemknn", data, K=3, weighting="none", shrink=0.0).score(np.array([4]))[0]
    recent = make("itemknn", data, K=3, weighting="none", shrink=0.0, decay=0.5).score(np.array([4]))[0]
    assert plain[2] == pytest.approx(plain[3])  # order-blind: a tie
    assert recent[3] == pytest.approx(2 * recent[2])  # item 1 (age 0) counts twice item 0 (age 1)


def test_itemknn_similarity_hand_computed() -> None:
    from scipy import sparse

    from recengine.bench.baselines.itemknn import knn_similarity

    # items 0, 1, 2 over 3 users: columns (1,1,0), (1,0,0), (0,1,1): dots 0.1 = 1, 0.2 = 1, 1.2 = 0
    x = sparse.csr_matrix(np.array([[1, 1, 0], [1, 0, 1], [0, 0, 1]], dtype=np.float64))
    norms = np.sqrt([2.0, 1.0, 2.0])
    sim = knn_similarity(x, k=2, shrink=1.0).toarray()
    expected = np.array([[0, 1 / (norms[0] * norms[1] + 1), 1 / (norms[0] * norms[2] + 1)],
                         [1 / (norms[0] * norms[1] + 1), 0, 0],
                         [1 / (norms[0] * norms[2] + 1), 0, 0]])
    np.testing.assert_allclose(sim, expected, rtol=1e-6)
    top1 = knn_similarity(x, k=1, shrink=0.0).toarray()  # item 0's nearest is item 1 (cos 0.707 > 0.5)
    np.testing.assert_allclose(top1[0], [0, 1 / norms[0], 0], rtol=1e-6)


def block_diagonal(n_blocks: int = 3, items_per_block: int = 8, users_per_block: int = 10, per_user: int = 5,
                   seed: int = 0) -> tuple[TrainData, np.ndarray]:
    """A block-diagonal interaction matrix: users of block b only touch items of block b."""
    rng = np.random.default_rng(seed)
    block = np.repeat(np.arange(n_blocks), users_per_block)
    hist = [list(rng.choice(items_per_block, per_user, replace=False) + b * items_per_block) for b in block]
    return from_histories(hist, n_blocks * items_per_block, seed), block


@pytest.mark.parametrize("lam", [0.5, 10.0, 100.0])
def test_ease_recovers_the_blocks(lam: float) -> None:
    data, block = block_diagonal()
    model = make("ease", data, **{"lambda": lam})
    b = model._b
    item_block = np.arange(data.n_items) // 8
    cross = item_block[:, None] != item_block[None, :]
    assert np.all(b[cross] == 0.0)  # the inverse of a block-diagonal Gram matrix is block-diagonal
    assert np.all(np.diag(b) == 0.0) and np.any(b[~cross] != 0.0)
    scores = model.score(np.arange(data.n_users))
    for u in range(data.n_users):
        row = scores[u].copy()
        row[data.history(u)] = -np.inf
        own = item_block == block[u]
        assert np.all(row[~own] == 0.0)  # out-of-block items get exactly nothing
        assert item_block[int(np.argmax(row))] == block[u]
        if lam >= 10.0:  # with enough shrinkage every unseen item of the user's block outranks the other blocks
            assert np.all(row[own & np.isfinite(row)] > 0.0)


def test_ease_matches_the_closed_form() -> None:
    rng = np.random.default_rng(1)
    hist = [list(rng.choice(12, 4, replace=False)) for _ in range(30)]
    data = from_histories(hist + [[]], 14)  # items 12, 13: nobody touched them
    model = make("ease", data, **{"lambda": 3.0})
    x = data.user_item_matrix().toarray().astype(np.float64)
    p = np.linalg.inv(x.T @ x + 3.0 * np.eye(14))
    expected = np.eye(14) - p / np.diag(p)[None, :]  # B = I - P diag(1/diag(P))
    np.testing.assert_allclose(model.score(np.arange(31)), x @ expected, rtol=1e-4, atol=1e-5)
    assert np.all(model.score(np.arange(31))[:, 12:] == 0.0)
    with pytest.raises(ValueError, match="lambda"):
        make("ease", data, **{"lambda": 0.0})


@pytest.mark.parametrize("k, shrink", [(5, 0.0), (20, 10.0), (299, 1.0)])
def test_itemknn_similarity_is_the_same_in_any_block_size(k: int, shrink: float) -> None:
    """The similarity is computed a block of rows at a time (bounded memory on large catalogues): every block
    size gives the same matrix, bit for bit, as the whole matrix at once."""
    import scipy.sparse as sp

    from recengine.bench.baselines.itemknn import knn_similarity

    rng = np.random.default_rng(0)
    m = sp.random(400, 300, density=0.05, random_state=1, format="csr")
    m.data[:] = rng.random(m.data.size)
    whole = knn_similarity(m, k, shrink).toarray()
    for block in (4 * 300 * 7, 1):  # 7 rows per block; one row per block
        assert np.array_equal(knn_similarity(m, k, shrink, block_bytes=block).toarray(), whole)
    dots = (m.T @ m).toarray()
    norms = np.sqrt(np.diag(dots))
    np.fill_diagonal(dots, 0.0)
    cos = dots / (norms[:, None] * norms[None, :] + shrink)
    row = int(np.argmax(norms))
    assert np.allclose(np.sort(whole[row][whole[row] > 0])[::-1], np.sort(cos[row])[::-1][:k][:np.count_nonzero(
        whole[row])], rtol=1e-5)


def test_ease_is_skipped_with_numbers_when_its_matrix_cannot_fit(monkeypatch) -> None:
    """At 50,000 items EASE's dense fit needs ~28 GiB: the bench must say so, not be killed by the kernel."""
    from recengine.bench.baselines import ease
    from recengine.bench.baselines.base import BaselineSkipped
    from recengine.errors import RecengineError

    with pytest.raises(BaselineSkipped, match=r"50000 items .* needs ~27.9 GiB; 16.0 GiB is available"):
        ease.check_memory(50_000, available=16 * 2**30)
    ease.check_memory(10_000, available=16 * 2**30)  # 1.1 GiB: fits
    assert issubclass(BaselineSkipped, RecengineError)
    data, _ = block_diagonal()
    monkeypatch.setattr("recengine.bench.machine.available_memory_bytes", lambda: 1000)
    with pytest.raises(BaselineSkipped):
        make("ease", data, **{"lambda": 1.0})


def test_sasrec_full_softmax_is_skipped_when_its_logits_cannot_fit(monkeypatch) -> None:
    pytest.importorskip("torch")
    from recengine.bench.baselines.base import BaselineSkipped

    data, _ = block_diagonal()
    monkeypatch.setattr("recengine.bench.machine.available_memory_bytes", lambda: 1000)
    with pytest.raises(BaselineSkipped, match="SASRec's full softmax over"):
        make("sasrec", data, epochs=1)


def test_quality_run_notes_a_skipped_baseline(ml_tiny_dir, monkeypatch) -> None:
    from recengine.bench.quality import QualityConfig, run_quality

    monkeypatch.setattr("recengine.bench.machine.available_memory_bytes", lambda: 1000)
    report = run_quality(QualityConfig(data=str(ml_tiny_dir), profile="quick", models=("popularity", "ease"),
                                       cold=False, quiet=True))
    assert "ease" not in report["models"] and "popularity" in report["models"]
    assert any(n.startswith("ease omitted: EASE's dense inverse") for n in report["notes"])


@pytest.mark.parametrize("name", ["als", "bpr", "lightgcn", "itemknn", "ease", "frozen_text"])
def test_community_models_rank_the_users_own_half_first(name: str) -> None:
    data, group = blocks()
    overrides = {"epochs": 40, "lr": 0.05} if name == "lightgcn" else {}
    if name == "bpr":
        overrides = {"iterations": 200, "learning_rate": 0.05}
    scores = make(name, data, **overrides).score(np.arange(data.n_users))
    half = data.n_items // 2
    first, second = scores[:, :half].mean(1, keepdims=True), scores[:, half:].mean(1, keepdims=True)
    own = np.where(group[:, None] == 0, first, second)
    other = np.where(group[:, None] == 0, second, first)
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


@pytest.mark.parametrize("name", ["als", "bpr"])
def test_implicit_models_early_stop_on_iterations_and_keep_the_best_factors(name: str) -> None:
    data, _ = blocks()
    seen: list[float] = []
    rows: list[np.ndarray] = []

    def validate(score) -> float:
        value = [0.1, 0.5, 0.2, 0.1, 0.05][len(seen)] if len(seen) < 5 else 0.0
        seen.append(value)
        rows.append(score(np.arange(4)).copy())
        return value

    model = create(name, quick(name, iterations=30, eval_every=3, patience=2)).fit(data, validate)
    assert model.info.best_epoch == 6 and model.info.best_valid == 0.5  # chunk 2 of 3 iterations
    assert model.info.epochs_run == 12  # two chunks without a gain after iteration 6
    np.testing.assert_array_equal(model.score(np.arange(4)), rows[1])  # the factors of the best chunk
    assert model.refit_params()["iterations"] == 6
    refit = create(name, model.refit_params()).fit(data)  # no validation: exactly the chosen iteration count
    assert refit.info.epochs_run == 6 and refit.info.best_epoch is None
