"""The export's co-occurrence lists (`recengine.export.cooccur`): against a dense reference, chunked or not;
the validation search; the lists of an exported bundle."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("scipy")

from recengine.export import cooccur  # noqa: E402
from recengine.export.config import CooccurConfig  # noqa: E402


def dense_reference(users, items, n_users, n_items, k, shrink):
    """BM25 (K1 1.2, B 0.75, as implicit's bm25_weight on the item x user matrix) + shrunk cosine, by loops."""
    x = np.zeros((n_items, n_users))
    x[items, users] = 1.0
    idf = np.maximum(np.log(n_items) - np.log1p((x > 0).sum(axis=0)), 0.0)
    length = x.sum(axis=1)
    norm = 0.25 + 0.75 * length / length.mean()
    w = np.where(x > 0, 2.2 / (1.2 * norm[:, None] + 1.0) * idf[None, :], 0.0)
    norms = np.linalg.norm(w, axis=1)
    sim = (w @ w.T) / (np.outer(norms, norms) + shrink + 1e-12)
    np.fill_diagonal(sim, 0.0)
    idx = np.full((n_items, k), -1)
    sc = np.zeros((n_items, k))
    for i in range(n_items):
        order = [j for j in np.lexsort((np.arange(n_items), -sim[i])) if sim[i, j] > 0][:k]
        idx[i, : len(order)] = order
        sc[i, : len(order)] = sim[i, order]
    return idx, sc


@pytest.fixture(scope="module")
def interactions():
    rng = np.random.default_rng(3)
    n_users, n_items = 60, 40
    pop = rng.pareto(1.2, n_items) + 0.05
    users, items = [], []
    for u in range(n_users):
        chosen = rng.choice(n_items, size=rng.integers(2, 12), replace=False, p=pop / pop.sum())
        users += [u] * len(chosen)
        items += chosen.tolist()
    users.append(0)  # a duplicate event counts once
    items.append(items[0])
    return np.array(users), np.array(items), n_users, n_items


@pytest.mark.parametrize("budget", [10**9, 50])
def test_neighbours_match_the_dense_reference(interactions, monkeypatch, budget):
    """BM25 lists against `dense_reference` (tf-idf: `test_tfidf_lists_weight_by_user_idf_only`)."""
    monkeypatch.setattr(cooccur, "PAIR_BUDGET", budget)  # 50: many small chunks
    users, items, n_users, n_items = interactions
    got = cooccur.item_neighbours(users, items, n_users, n_items, k=5, shrinks=(0.0, 10.0))
    for shrink in (0.0, 10.0):
        idx, sc = got[shrink]
        ref_idx, ref_sc = dense_reference(users, items, n_users, n_items, 5, shrink)
        assert idx.dtype == np.int32 and sc.dtype == np.float32
        assert np.allclose(sc, ref_sc, atol=1e-5)
        # equal scores may be listed in either order: compare the sets of each score level
        for i in range(n_items):
            for level in np.unique(ref_sc[i][ref_sc[i] > 0]):
                assert set(idx[i][np.isclose(sc[i], level, atol=1e-6)]) == \
                    set(ref_idx[i][np.isclose(ref_sc[i], level, atol=1e-6)])


def test_items_without_interactions_get_empty_lists():
    idx, sc = cooccur.item_neighbours(np.array([0, 0, 1]), np.array([0, 1, 1]), 2, 4, k=3, shrinks=(1.0,))[1.0]
    assert idx[2].tolist() == [-1, -1, -1] and idx[3].tolist() == [-1, -1, -1]
    assert idx[0, 0] == 1 and idx[1, 0] == 0 and sc[0, 0] > 0


def test_score_spread_is_the_median_gap_to_the_100th():
    rows = np.stack([np.r_[np.arange(200.0), -np.inf], np.r_[2 * np.arange(200.0), -np.inf]])
    assert cooccur.score_spread(rows) == pytest.approx((99 + 198) / 2)
    assert cooccur.score_spread(np.zeros((2, 10))) == 1.0  # too few items: unit scale


def test_choose_searches_decay_then_weight_and_keeps_nothing_without_a_gain(lean_bundle):
    from recengine import Engine

    engine = Engine.open(lean_bundle, device="cpu", threads=1, variant="fp32", retrieval="exact")
    n = engine.n_items
    idx = np.full((n, 2), -1, np.int32)
    lists = {("bm25", 1.0): (idx, np.zeros((n, 2), np.float32)), ("bm25", 5.0): (idx, np.zeros((n, 2), np.float32))}
    cfg = CooccurConfig(shrinks=(1.0, 5.0), decays=(1.0, 0.5), weights=(1.0, 2.0, 4.0), cuts=(1,))

    def peaked(e):  # best at decay 0.5 and the largest weight (spread 2: absolute weight 8)
        c = e._state.cooccur
        if c is None:
            return {"ndcg@10": 0.1}
        return {"ndcg@10": 0.2 + 0.01 * (c.decay == 0.5) + 0.001 * c.weight}

    base_state = engine._state
    engine._state = dataclasses.replace(base_state, cooccur=None)
    got = cooccur.choose(engine, lists, cfg, peaked, spread=2.0)
    # the grid's best weight is its largest, 4; validation still rises past it: doubled WEIGHT_STEPS times
    assert got.chosen and got.decay == 0.5 and got.relative_weight == 4.0 * 2**cooccur.WEIGHT_STEPS
    assert got.base == 0.1
    # 2 lists x 2 decays at the middle weight, the 2 other weights, the other decay at the chosen weight, the
    # doublings (halving 4 gives 2, measured already), the cut
    assert len(got.grid) == 4 + 2 + 1 + cooccur.WEIGHT_STEPS + 1
    assert [p["relative_weight"] for p in got.grid[7:7 + cooccur.WEIGHT_STEPS]] == \
        [4.0 * 2**s for s in range(1, cooccur.WEIGHT_STEPS + 1)]
    assert got.k == 1  # the cut to 1 neighbour scored no lower (peaked ignores the lists): kept
    assert all(p["relative_weight"] == 2.0 for p in got.grid[:4])
    assert got.weighting == "bm25" and got.grid[-1]["k"] == 1

    def near_half(e):  # best at relative 0.5 (absolute 1): one halving from the grid's best, 1, then a drop
        c = e._state.cooccur
        return {"ndcg@10": 0.1 if c is None else 0.2 - 0.001 * abs(c.weight - 1.0)}

    got = cooccur.choose(engine, lists, cfg, near_half, spread=2.0)
    assert got.relative_weight == 0.5
    assert [p["relative_weight"] for p in got.grid[7:]] == [0.5, 0.25, 0.5]  # halved twice (kept once); the cut

    def light(e):  # the smaller the weight the better: halved past the grid's smallest, never doubled
        c = e._state.cooccur
        return {"ndcg@10": 0.1 if c is None else 0.2 - 0.001 * c.weight}

    got = cooccur.choose(engine, lists, cfg, light, spread=2.0)
    assert got.relative_weight == 1.0 / 2**cooccur.WEIGHT_STEPS
    assert max(p["relative_weight"] for p in got.grid[4:]) == 4.0  # the grid's; no doubling tried

    got = cooccur.choose(engine, lists, cfg, lambda e: {"ndcg@10": 0.1 if e._state.cooccur is None else 0.09},
                         spread=2.0)
    assert not got.chosen and got.best is None and got.base == 0.1


def test_choose_tries_the_popularity_exponents_at_the_best_point_and_cuts_the_scaled_lists(lean_bundle):
    """With the items' user counts, each exponent is measured at the best point on the lists it scales; the
    best is kept, the cut is measured on the scaled lists; without counts no exponent is tried."""
    from recengine import Engine

    engine = Engine.open(lean_bundle, device="cpu", threads=1, variant="fp32", retrieval="exact")
    n = engine.n_items
    idx = np.tile(np.array([[1, 2, -1]], np.int32), (n, 1))
    sc = np.tile(np.array([[0.9, 0.3, 0.0]], np.float32), (n, 1))
    users = np.ones(n, np.int64)
    users[1] = 16  # the first neighbour is popular: beta 0.5 divides it by 4 and lists item 2 first, 0.25 by 2
    cfg = CooccurConfig(decays=(1.0,), weights=(1.0,), cuts=(1,), pop_exponents=(0.5, 0.25))

    def first_listed(e):  # validation rewards serving item 2 first
        c = e._state.cooccur
        return {"ndcg@10": 0.1 if c is None else 0.2 + 0.05 * (int(c.indices[0, 0]) == 2)}

    engine._state = dataclasses.replace(engine._state, cooccur=None)
    got = cooccur.choose(engine, {("ease", 100.0): (idx, sc)}, cfg, first_listed, spread=1.0, users=users)
    # ascending; then the weight halved and doubled (no gain: kept at 1) and the cut, at the chosen exponent
    assert [p["pop_exponent"] for p in got.grid] == [0.0, 0.25, 0.5, 0.5, 0.5, 0.5]
    assert [p["relative_weight"] for p in got.grid[3:5]] == [0.5, 2.0] and got.relative_weight == 1.0
    assert got.pop_exponent == 0.5 and got.best == pytest.approx(0.25) and got.k == 1
    assert got.grid[1]["ndcg@10"] == pytest.approx(0.2)  # 0.9 / 2 = 0.45 > 0.3: item 1 stays first
    plain = cooccur.choose(engine, {("ease", 100.0): (idx, sc)}, cfg, first_listed, spread=1.0)
    assert plain.pop_exponent == 0.0 and all(p["pop_exponent"] == 0.0 for p in plain.grid)


def test_popularity_scaled_divides_by_users_to_the_beta_and_resorts():
    idx = np.array([[0, 1, 2, -1], [-1, -1, -1, -1]], np.int32)
    sc = np.array([[0.8, 0.6, 0.1, 0.0], [0.0, 0.0, 0.0, 0.0]], np.float32)
    users = np.array([64, 1, 4])
    got_idx, got_sc = cooccur.popularity_scaled(idx, sc, users, 0.5)
    assert got_idx.tolist() == [[1, 0, 2, -1], [-1, -1, -1, -1]]
    # 0.8 / 8, 0.6 / 1, 0.1 / 2, re-sorted, then brought back to the input's largest (0.8): times 0.8 / 0.6
    np.testing.assert_allclose(got_sc, [[0.8, 0.8 / 6, 0.4 / 6, 0.0], [0.0, 0.0, 0.0, 0.0]], rtol=1e-6)
    assert got_sc.dtype == np.float32 and got_idx.dtype == np.int32
    same_idx, same_sc = cooccur.popularity_scaled(idx, sc, users, 0.0)
    assert same_idx is idx and same_sc is sc
    events = type("E", (), {"user": np.array([0, 0, 1, 2, 2]), "item": np.array([1, 1, 1, 0, 1])})()
    assert cooccur.item_users(events, 4).tolist() == [1, 3, 0, 0]  # distinct users: a repeat counts once


def test_settings_given_serve_their_popularity_exponent(tiny_bundle, ml_tiny_dir):
    """The path of settings chosen before (the bench's cold-item fit): the lists written are the given kind
    scaled by the given exponent over the popularity of the events they are built from, and the stand-in's map
    is aligned on those lists, not on the unscaled ones."""
    import json

    from recengine.cooccur import FILES
    from recengine.data import load_dataset
    from recengine.export.config import ExportConfig
    from recengine.export.validation import open_variant
    from recengine.split import leave_last_out

    ds = load_dataset(ml_tiny_dir)
    seed = json.loads((tiny_bundle / "manifest.json").read_text())["config"]["seed"]
    split = leave_last_out(ds.interactions, ds.n_users, ds.n_items, seed=seed)
    cfg = ExportConfig.from_profile("quick")
    fixed = cooccur.Choice(base=0.0, spread=1.0, grid=[], weighting="bm25", shrink=10.0, decay=1.0,
                           relative_weight=1.0, k=20, pop_exponent=0.5, text_standin=True, standin_strength=1.0)
    w = _RecordingWriter()
    section, choice = cooccur.fit_cooccur(w, tiny_bundle, ds, split, cfg, fixed=fixed)
    built = cooccur.build_lists({"bm25": (10.0,)}, split.train, ds, split, cfg.cooccur)[("bm25", 10.0)]
    want_idx, want_sc = cooccur.popularity_scaled(*built, cooccur.item_users(split.train, ds.n_items), 0.5)
    idx = w.written[FILES["indices"]]
    np.testing.assert_array_equal(idx, want_idx[:, :20])
    np.testing.assert_array_equal(w.written[FILES["scores"]], want_sc[:, :20].astype(np.float16))
    assert not np.array_equal(idx, built[0][:, :20])  # the exponent moved the lists
    assert section["pop_exponent"] == 0.5 and choice.pop_exponent == 0.5
    unit = open_variant(tiny_bundle, "fp32")._state.catalogue.unit_vectors
    want_map = cooccur.text_map(want_idx[:, :20], want_sc[:, :20], unit)
    assert want_map is not None and section["text_map"] == cooccur.scaled_map(want_map, 1.0)


@pytest.mark.parametrize("value", [(0.0,), (-0.1,), (1.5,), (float("nan"),)])
def test_pop_exponents_must_lie_in_zero_to_one(value):
    from recengine.errors import ExportError
    from recengine.export.config import ExportConfig

    cfg = ExportConfig()
    cfg.cooccur.pop_exponents = value
    with pytest.raises(ExportError, match="cooccur.pop_exponents"):
        cfg.validate()


@pytest.mark.parametrize("cost, kept, tried", [
    ({1.0: 0.0, 2.0: 0.01, 4.0: 0.015}, 4.0, [1.0, 2.0, 4.0]),  # every strength within the tolerance: the largest
    ({1.0: 0.005, 2.0: 0.03, 4.0: 0.0}, 1.0, [1.0, 2.0]),  # stops at the first past it
    ({1.0: 0.021, 2.0: 0.0, 4.0: 0.0}, None, [1.0]),  # the first already costs too much: no stand-in
    ({1.0: -0.01, 2.0: 0.0, 4.0: 0.019}, 4.0, [1.0, 2.0, 4.0]),  # a gain counts like no cost
])
def test_the_stand_in_is_kept_at_the_largest_strength_validation_allows(lean_bundle, cost, kept, tried):
    from recengine import Engine

    engine = Engine.open(lean_bundle, device="cpu", threads=1, variant="fp32", retrieval="exact")
    n = engine.n_items
    idx = np.full((n, 2), -1, np.int32)
    sc = np.zeros((n, 2), np.float32)
    mapping = {"cos": [0.1, 0.5], "sim": [0.2, 0.4]}
    section = {"weight": 1.0, "decay": 1.0, "max_history": 50}
    choice = cooccur.Choice(base=0.1, spread=1.0, grid=[], shrink=10.0, decay=1.0, relative_weight=1.0, best=0.2)

    def scripted(e):  # the strength the engine serves, read back from its map: 0.2 x strength at the first point
        strength = round(float(e._state.cooccur.text_sim[0]) / 0.2, 6)
        return {"ndcg@10": 0.2 * (1.0 - cost[strength])}

    got = cooccur.choose_standin(engine, idx, sc, section, mapping, (4.0, 1.0, 2.0), scripted, choice)
    assert got == kept
    assert [p["text_standin"] for p in choice.grid] == tried  # ascending, whatever the config's order
    assert choice.best == pytest.approx(0.2 if kept is None else 0.2 * (1.0 - cost[kept]))
    assert cooccur.scaled_map(mapping, 2.0) == {"cos": [0.1, 0.5], "sim": [0.4, 0.8]}


def test_text_map_aligns_text_cosines_with_list_similarities():
    rng = np.random.default_rng(0)
    n, k = 300, 10
    text = rng.standard_normal((n, 16))
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    idx = np.full((n, k), -1, np.int32)
    sc = np.zeros((n, k), np.float32)
    warm = np.arange(250)  # the last 50 items have no list
    for i in warm:
        others = rng.choice(warm[warm != i], size=k, replace=False)
        idx[i] = others
        sc[i] = np.sort(rng.uniform(0.01, 0.3, k))[::-1]
    got = cooccur.text_map(idx, sc, text)
    x, y = np.array(got["cos"]), np.array(got["sim"])
    assert x.size == y.size == k and np.all(np.diff(x) >= 0) and np.all(np.diff(y) >= 0)
    # the top of the map: the mean nearest-neighbour cosine among warm items and the mean best similarity
    unit = text[warm] @ text[warm].T
    np.fill_diagonal(unit, -np.inf)
    assert x[-1] == pytest.approx(unit.max(axis=1).mean(), rel=1e-4)
    assert y[-1] == pytest.approx(sc[warm, 0].mean(), rel=1e-4)
    assert cooccur.text_map(np.full((5, 3), -1, np.int32), np.zeros((5, 3), np.float32), text[:5]) is None
    # query rows: the cold side of each cosine; the rows themselves give the default map, others move it
    same = cooccur.text_map(idx, sc, text, query=text * 3.0)  # scale-free: rows are normalised
    assert np.allclose(same["cos"], got["cos"], atol=1e-6) and same["sim"] == got["sim"]
    shifted = text + 0.5 * rng.standard_normal(text.shape)
    other = cooccur.text_map(idx, sc, text, query=shifted)
    assert other["sim"] == got["sim"] and other["cos"][-1] < got["cos"][-1]


def test_tfidf_lists_weight_by_user_idf_only():
    # 10 items; user 0 took items 0, 1; user 1 took items 0, 1, 2
    users, items = np.array([0, 0, 1, 1, 1]), np.array([0, 1, 0, 1, 2])
    x = cooccur.bm25_items(users, items, 2, 10, weighting="tfidf").toarray()
    idf = np.log(10) - np.log1p(np.array([2, 3]))  # 1.20 and 0.92: a user who took fewer items counts more
    want = np.zeros((10, 2))
    want[[0, 1], 0] = idf[0]
    want[[0, 1, 2], 1] = idf[1]
    assert np.allclose(x, want) and x[0, 0] > x[0, 1] > 0
    with pytest.raises(ValueError, match="weighting"):
        cooccur.bm25_items(users, items, 2, 10, weighting="nope")


def test_binary_lists_are_the_plain_cosine_of_the_interactions():
    """`binary`: the 0/1 item x user matrix (duplicates counted once), so with shrink 0 the lists hold the
    textbook cosine |U_i & U_j| / sqrt(|U_i| |U_j|)."""
    # user 0 took items 0, 1 (item 1 twice); user 1 took 0, 1, 2; user 2 took 0
    users, items = np.array([0, 0, 0, 1, 1, 1, 2]), np.array([0, 1, 1, 0, 1, 2, 0])
    x = cooccur.bm25_items(users, items, 3, 4, weighting="binary").toarray()
    assert np.array_equal(x, [[1, 1, 1], [1, 1, 0], [0, 1, 0], [0, 0, 0]])
    idx, sc = cooccur.item_neighbours(users, items, 3, 4, 2, (0.0,), weighting="binary")[0.0]
    assert list(idx[0]) == [1, 2] and np.allclose(sc[0], [2 / np.sqrt(6), 1 / np.sqrt(3)])
    assert list(idx[1]) == [0, 2] and np.allclose(sc[1], [2 / np.sqrt(6), 1 / np.sqrt(2)])
    assert idx[3, 0] == -1


def test_ease_lists_are_the_positive_top_of_easer_rows(interactions):
    from recengine.export.ease import ease_weights

    users, items, n_users, n_items = interactions
    got = cooccur.ease_neighbours(users, items, n_users, n_items, k=4, lambdas=(5.0,))[5.0]
    x = np.zeros((n_users, n_items))
    x[users, items] = 1.0
    active = np.flatnonzero(x.sum(axis=0) > 0)
    b = ease_weights(x[:, active].T @ x[:, active], 5.0)
    for row, i in enumerate(active):
        want = [active[j] for j in np.argsort(-b[row], kind="stable") if b[row, j] > 0][:4]
        listed = [j for j in got[0][i] if j >= 0]
        assert set(listed) == set(want)
        assert np.allclose(sorted(got[1][i][: len(listed)], reverse=True), got[1][i][: len(listed)])
    inactive = np.setdiff1d(np.arange(n_items), active)
    assert all((got[0][i] == -1).all() for i in inactive)


def test_each_lambda_gets_its_own_ease_lists(interactions):
    """Every lambda inverts its own Gram matrix in place: one call with several equals separate calls."""
    users, items, n_users, n_items = interactions
    both = cooccur.ease_neighbours(users, items, n_users, n_items, k=4, lambdas=(5.0, 50.0))
    for lam in (5.0, 50.0):
        alone = cooccur.ease_neighbours(users, items, n_users, n_items, k=4, lambdas=(lam,))[lam]
        assert np.array_equal(both[lam][0], alone[0]) and np.allclose(both[lam][1], alone[1])
    assert not np.allclose(both[5.0][1], both[50.0][1])


def test_text_tokens_are_the_shared_words_without_field_names():
    texts = ["title: Red Fox\nauthor: Ann Lee", "title: Blue Fox\nauthor: Ann Lee", "title: Café Noir\nauthor: Bo",
             "title: Noir Cafe\nauthor: Cy"]
    f = cooccur.text_tokens(texts)
    assert f.shape == (4, 5)  # fox, ann, lee, noir, cafe (café folded): "title"/"author" are not words here
    words = np.asarray(f.sum(axis=0)).ravel()
    assert sorted(words.tolist()) == [2, 2, 2, 2, 2]  # red, blue, bo, cy: one item each, dropped
    assert f[0].nnz == 3 and f[2].nnz == 2  # fox, ann, lee | cafe, noir
    assert cooccur.text_tokens(["product_id: 1", "product_id: 2"]).shape == (2, 0)  # ids as text: no shared word


def test_ease_with_text_side_information_is_ease_of_the_stacked_matrix(interactions):
    """Side information (Jeunen et al. 2020): EASE of [X; alpha F^T] -- items that share words but no user get
    a weight, and alpha -> 0 gives plain EASE."""
    import scipy.sparse as sp

    from recengine.export.ease import ease_weights

    users, items, n_users, n_items = interactions
    rng = np.random.default_rng(0)
    f = sp.csr_matrix((rng.random((n_items, 12)) < 0.2).astype(np.float64))
    got = cooccur.ease_neighbours(users, items, n_users, n_items, k=4, lambdas=(5.0,), side=f, alpha=0.7)[5.0]
    x = np.zeros((n_users, n_items))
    x[users, items] = 1.0
    active = np.flatnonzero(x.sum(axis=0) > 0)
    stacked = np.vstack([x[:, active], 0.7 * f.toarray()[active].T])
    b = ease_weights(stacked.T @ stacked, 5.0)
    for row, i in enumerate(active):
        want = [active[j] for j in np.argsort(-b[row], kind="stable") if b[row, j] > 0][:4]
        assert set(j for j in got[0][i] if j >= 0) == set(want)
    plain = cooccur.ease_neighbours(users, items, n_users, n_items, k=4, lambdas=(5.0,))[5.0]
    tiny = cooccur.ease_neighbours(users, items, n_users, n_items, k=4, lambdas=(5.0,), side=f, alpha=1e-6)[5.0]
    assert np.array_equal(plain[0], tiny[0]) and not np.array_equal(plain[0], got[0])


def test_ease_lists_are_skipped_past_the_item_cap(interactions, monkeypatch):
    monkeypatch.setattr(cooccur, "EASE_MAX_ITEMS", 5)
    users, items, n_users, n_items = interactions
    assert cooccur.ease_neighbours(users, items, n_users, n_items, k=4, lambdas=(5.0,)) == {}


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan")])
def test_ease_text_alpha_must_be_positive(value):
    from recengine.errors import ExportError
    from recengine.export.config import ExportConfig

    assert "ease_text" in CooccurConfig().weightings
    with pytest.raises(ExportError, match="cooccur.ease_text_alpha"):
        ExportConfig.from_profile("quick").override({"cooccur.ease_text_alpha": value}).validate()


class _RecordingWriter:
    """Stands in for the bundle writer: keeps what `refit_cooccur` writes, by path."""

    def __init__(self):
        self.written = {}

    def write_npy(self, rel, array):
        self.written[rel] = np.array(array)
        return rel


@pytest.mark.parametrize("kind,param,beta", [("bm25", 10.0, 0.0), ("ease", 100.0, 0.0), ("ease", 100.0, 0.3)])
def test_refit_serves_the_chosen_lists_rebuilt_from_train_and_valid_never_test(ml_tiny_dir, kind, param, beta):
    """The served lists are the chosen kind rebuilt from train + validation events (as the bench's EASE and
    ItemKNN are refitted), scaled by the chosen popularity exponent over the same events' popularity, cut to
    the chosen k; the test events are never read (poisoning them changes nothing); and they differ from the
    lists the choice measured, so the check can fail."""
    from recengine.cooccur import FILES
    from recengine.data import load_dataset
    from recengine.export.fit import train_valid_split
    from recengine.split import leave_last_out

    ds = load_dataset(ml_tiny_dir)
    split = leave_last_out(ds.interactions, ds.n_users, ds.n_items, seed=0)
    co = CooccurConfig()
    choice = cooccur.Choice(base=0.1, spread=1.0, grid=[], weighting=kind, shrink=param, decay=1.0,
                            relative_weight=1.0, k=20, pop_exponent=beta)
    section = {"k": 20, "weight": 1.0, "decay": 1.0, "max_history": 200}
    cfg = type("Cfg", (), {"cooccur": co})()

    def served(s):
        w = _RecordingWriter()
        out = cooccur.refit_cooccur(w, None, section, choice, ds, s, cfg)
        assert out == section  # no stand-in here: the settings are served as chosen
        return w.written[FILES["indices"]], w.written[FILES["scores"]]

    idx, sc = served(split)
    both = train_valid_split(split).train
    want_idx, want_sc = cooccur.popularity_scaled(*cooccur.build_lists({kind: (param,)}, both, ds, split, co)[
        (kind, param)], cooccur.item_users(both, ds.n_items), beta)
    if beta:  # the exponent reorders the lists
        plain = cooccur.build_lists({kind: (param,)}, both, ds, split, co)[(kind, param)][0][:, :20]
        assert not np.array_equal(idx, plain)
    np.testing.assert_array_equal(idx, want_idx[:, :20])
    np.testing.assert_array_equal(sc, want_sc[:, :20].astype(np.float16))
    assert choice.refit_events == len(split.train) + len(split.valid)
    before_idx, _ = cooccur.build_lists({kind: (param,)}, split.train, ds, split, co)[(kind, param)]
    assert not np.array_equal(idx, before_idx[:, :20])

    rng = np.random.default_rng(0)
    poisoned = dataclasses.replace(split.test, item=rng.integers(0, ds.n_items, len(split.test)))
    idx2, sc2 = served(dataclasses.replace(split, test=poisoned))
    np.testing.assert_array_equal(idx2, idx)
    np.testing.assert_array_equal(sc2, sc)


def test_cooccur_refit_must_be_a_boolean():
    from recengine.errors import ExportError
    from recengine.export.config import ExportConfig

    assert ExportConfig().override({"cooccur.refit": "off"}).cooccur.refit is False
    with pytest.raises(ExportError, match="cooccur.refit"):
        ExportConfig().override({"cooccur.refit": "maybe"})


def test_refit_keeps_the_measured_lists_where_ease_passes_its_cap_with_the_validation_items(ml_tiny_dir, monkeypatch):
    """Train within `EASE_MAX_ITEMS`, train + valid past it (an item seen in validation only): the refit
    cannot build the chosen EASE lists, so the lists the choice measured stay (nothing written, no
    `refit_events`) rather than the export failing after all its training."""
    from recengine.data import load_dataset
    from recengine.export.fit import train_valid_split
    from recengine.split import leave_last_out

    ds = load_dataset(ml_tiny_dir)
    split = leave_last_out(ds.interactions, ds.n_users, ds.n_items, seed=0)
    in_train = np.unique(split.train.item).size
    assert np.unique(train_valid_split(split).train.item).size > in_train
    monkeypatch.setattr(cooccur, "EASE_MAX_ITEMS", in_train)
    choice = cooccur.Choice(base=0.1, spread=1.0, grid=[], weighting="ease", shrink=100.0, decay=1.0,
                            relative_weight=1.0, k=20)
    section = {"k": 20, "weight": 1.0, "decay": 1.0, "max_history": 200, "similarity": "ease", "lambda": 100.0}
    w = _RecordingWriter()
    out = cooccur.refit_cooccur(w, None, section, choice, ds, split, type("Cfg", (), {"cooccur": CooccurConfig()})())
    assert out == section and w.written == {} and choice.refit_events is None


def test_large_ease_inverses_run_on_one_blas_thread(monkeypatch):
    """OpenBLAS's threaded Cholesky crashed the process past ~16,000 items (`THREADED_MAX_ITEMS`): above the
    threshold the factorisation and inverse see one BLAS thread, and the threads come back after; the
    result is the same EASE either way."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import scipy.linalg  # noqa: F401  (its OpenBLAS must be loaded for the limits to be visible)

    from recengine.export import ease

    seen = []
    real = scipy.linalg.lapack.get_lapack_funcs

    def spy(names, arrays):
        potrf, potri = real(names, arrays)

        def counted(*a, **kw):
            seen.append(max((p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"),
                            default=1))
            return potrf(*a, **kw)
        return counted, potri

    monkeypatch.setattr(scipy.linalg.lapack, "get_lapack_funcs", spy)
    rng = np.random.default_rng(0)
    x = (rng.random((80, 40)) < 0.2).astype(np.float64)
    gram = x.T @ x
    before = [p["num_threads"] for p in threadpoolctl.threadpool_info()]
    small = ease.ease_weights(gram, 10.0)
    monkeypatch.setattr(ease, "THREADED_MAX_ITEMS", 10)
    large = ease.ease_weights(gram, 10.0)
    assert seen[1] == 1 and (seen[0] == max(before) or max(before) == 1)
    assert [p["num_threads"] for p in threadpoolctl.threadpool_info()] == before
    np.testing.assert_allclose(large, small)
