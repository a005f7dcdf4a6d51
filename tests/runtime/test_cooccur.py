"""The co-occurrence signal (`recengine.cooccur`): hand-made cases, its place in the serving pipeline, and
hostile `cooccur` sections."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from recengine.bundle import open_bundle
from recengine.cooccur import Cooccur, dense_signal, lookup
from recengine.errors import BundleError, RequestError
from recengine.requests import RowQuery


def lists(rows: list[list[tuple[int, float]]], k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    idx = np.full((len(rows), k), -1, np.int32)
    sc = np.zeros((len(rows), k), np.float32)
    for r, pairs in enumerate(rows):
        for j, (i, s) in enumerate(pairs):
            idx[r, j], sc[r, j] = i, s
    return idx, sc


# 5 items; 0 -> {1: .5, 2: .2}, 1 -> {2: .4}, 2 -> {}, 3 -> {4: .9, 0: .1}; row 4 has no list (added later)
IDX, SC = lists([[(1, 0.5), (2, 0.2)], [(2, 0.4)], [], [(4, 0.9), (0, 0.1)]])


def co(decay: float = 0.5, weight: float = 2.0, max_history: int = 10) -> Cooccur:
    return Cooccur(indices=IDX, scores=SC, weight=weight, decay=decay, max_history=max_history)


def test_signal_is_recency_weighted_and_normalised():
    alive = np.ones(5, bool)
    rows, vals, _ = co(decay=0.5).signal(np.array([3, 0, 1]), alive)  # 1 is the latest (age 0), 3 the oldest (age 2)
    want = np.zeros(5)
    want[[1, 2]] += [0.5 * 0.5, 0.2 * 0.5]  # item 0 at age 1
    want[2] += 0.4  # item 1 at age 0
    want[[4, 0]] += [0.9 * 0.25, 0.1 * 0.25]  # item 3 at age 2
    want /= want.max()
    assert rows.tolist() == [0, 1, 2, 4]
    assert np.allclose(dense_signal(rows, vals, 5), want)


def test_signal_skips_dead_and_listless_rows_and_keeps_their_age():
    alive = np.array([True, True, False, True, True])
    rows, vals, _ = co(decay=0.5).signal(np.array([0, 4]), alive)  # 4 (latest) has no list but still ages 0
    assert rows.tolist() == [1]  # item 2 is dead
    assert np.allclose(vals, [1.0])
    empty = co().signal(np.array([2, 4]), alive)
    assert empty[0].size == 0 and empty[1].size == 0


def test_signal_reads_only_the_last_max_history_items():
    rows, _, _ = co(max_history=1).signal(np.array([3, 1]), np.ones(5, bool))
    assert rows.tolist() == [2]


def test_lookup_and_dense_agree():
    rows, vals = np.array([1, 4, 7]), np.array([0.2, 1.0, 0.5])
    wanted = np.array([0, 1, 7, 9, 4])
    assert lookup(rows, vals, wanted).tolist() == [0.0, 0.2, 0.5, 0.0, 1.0]
    assert np.allclose(dense_signal(rows, vals, 10)[wanted], lookup(rows, vals, wanted))
    assert lookup(np.zeros(0, np.int64), np.zeros(0), wanted).tolist() == [0.0] * 5


def test_remapped_drops_dead_rows_and_neighbours():
    alive = np.array([True, False, True, True, True, True])  # row 1 removed, row 5 added live
    out = co().remapped(alive)
    # old rows 0, 2, 3 keep lists (new rows 0, 1, 2); neighbours renamed: 2 -> 1, 4 -> 3, 0 -> 0; 1 dropped
    assert out.indices.tolist() == [[1, -1, -1], [-1, -1, -1], [3, 0, -1]]
    assert np.allclose(out.scores, [[0.2, 0, 0], [0, 0, 0], [0.9, 0.1, 0]])


# ----------------------------------------------------------------------------- in the engine
@pytest.fixture(scope="module")
def engines(lean_bundle):
    from recengine import Engine

    kw = dict(device="cpu", threads=1, variant="fp32", retrieval="exact", rescore=False)
    return Engine.open(lean_bundle, **kw), Engine.open(lean_bundle, cooccur_weight=0.0, **kw)


def test_the_blend_changes_lists_and_weight_zero_is_the_tower(engines, lean_bundle):
    blended, tower = engines
    users = blended.user_ids()[:8]
    changed = 0
    for u in users:
        a = [r.item_id for r in blended.recommend(user_id=u, k=10)]
        b = [r.item_id for r in tower.recommend(user_id=u, k=10)]
        changed += a != b
    assert changed > 0
    reader = open_bundle(lean_bundle)
    vectors = reader.load_npy(reader.manifest["items"]["vectors"])
    uv = reader.load_npy(reader.manifest["users"]["vectors"])
    got = tower.recommend(user_id=users[0], k=5, exclude_seen=False)
    assert [r.item_id for r in got] == [tower.item_ids()[i] for i in np.argsort(-(vectors @ uv[0]), kind="stable")[:5]]


def test_serve_and_score_catalogue_rank_alike(engines):
    """The one scoring path: `recommend(history=...)` lists the top of `score_catalogue`'s row."""
    blended, _ = engines
    ids = blended.item_ids()
    for start in (0, 30, 60):
        hist = ids[start:start + 6]
        got = [r.item_id for r in blended.recommend(history=hist, k=10)]
        rows = [ids.index(i) for i in hist]
        q = RowQuery(history=np.array(rows), scene=np.zeros(blended.scene_slots, np.int64),
                     profile=np.zeros(len(blended.user_profiles(np.array([0]))[0]), np.int64),
                     exclude=np.array(rows))
        row = blended.score_catalogue([q])[0]
        assert got == [ids[i] for i in np.argsort(-row, kind="stable")[:10]]


def test_cooccur_weight_is_checked():
    from recengine import Engine

    for bad in (-1.0, float("nan"), "1", True):
        with pytest.raises(RequestError, match="cooccur_weight"):
            Engine.open("/nonexistent", cooccur_weight=bad)


def test_save_compaction_and_live_items_keep_the_lists_consistent(lean_bundle, tmp_path):
    from recengine import Engine

    engine = Engine.open(lean_bundle, device="cpu", threads=1, variant="fp32", retrieval="exact")
    ids = engine.item_ids()
    engine.add_items([{"item_id": "fresh-1", "title": "A new thing", "genres": "Drama"}])
    user = engine.user_ids()[0]
    engine.update_user(user, ["fresh-1"])  # a history item without a list: no error, no signal from it
    engine.remove_items([ids[1], ids[2]])
    before = [r.item_id for r in engine.recommend(user_id=user, k=10)]
    assert ids[1] not in before and ids[2] not in before
    saved = engine.save(tmp_path / "saved")
    again = Engine.open(saved, device="cpu", threads=1, variant="fp32", retrieval="exact")
    m = again.manifest["cooccur"]
    reader = open_bundle(saved)
    idx = reader.load_npy(m["indices"])
    assert idx.shape[0] == len(ids) - 2  # the live rows that had lists; the added item has none
    assert idx.max() < again.n_items and idx.min() >= -1
    assert [r.item_id for r in again.recommend(user_id=user, k=10)] == before


# ----------------------------------------------------------------------------- hostile sections
def edited(src: Path, dst: Path, change) -> Path:
    shutil.copytree(src, dst)
    path = dst / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest, dst)
    path.write_text(json.dumps(manifest))
    return dst


def _set(key, value):
    def change(m, root):
        m["cooccur"][key] = value
    return change


def _array(key, array):
    def change(m, root):
        np.save(root / m["cooccur"][key], array)
    return change


@pytest.mark.parametrize("change, message", [
    (_set("weight", -1), "cooccur.weight"),
    (_set("decay", 1.5), "cooccur.decay"),
    (_set("max_history", 0), "cooccur.max_history"),
    (_set("indices", 7), "cooccur.indices"),
    (lambda m, root: m.__setitem__("cooccur", []), "cooccur must be an object"),
    (_array("indices", np.full((3, 8), 10_000, np.int32)), "shape|outside"),
    (_array("indices", np.full((160, 8), 10_000, np.int32)), "outside"),
    (_array("scores", np.full((160, 8), -1.0, np.float32)), "negative"),
    (_array("scores", np.full((160, 8), np.nan, np.float32)), "non-finite"),
    (_array("indices", np.zeros((161, 8), np.int32)), "shape"),
    (_array("indices", np.zeros((160, 8), np.float32)), "integers"),
    (lambda m, root: [np.save(root / m["cooccur"][key], np.zeros((160, 0), dt))
                      for key, dt in (("indices", np.int32), ("scores", np.float32))], "K >= 1"),
    (_set("text_map", [1, 2]), "text_map"),
    (_set("text_map", {"cos": [0.5, 0.1], "sim": [0.1, 0.2]}), "text_map"),
    (_set("text_map", {"cos": [0.1, 0.5], "sim": [-0.1, 0.2]}), "text_map"),
    (_set("text_map", {"cos": [0.1, 0.5, 0.6], "sim": [0.1, 0.2]}), "text_map"),
    (_set("text_map", {"cos": [0.1, "x"], "sim": [0.1, 0.2]}), "text_map"),
    (_set("text_map", {"cos": [0.1, float("nan")], "sim": [0.1, 0.2]}), "NaN"),  # refused as JSON already
])
def test_hostile_cooccur_sections_are_refused(lean_bundle, tmp_path, change, message):
    from recengine import Engine

    bad = edited(lean_bundle, tmp_path / "bad", change)
    with pytest.raises(BundleError, match=message):
        Engine.open(bad, device="cpu", verify=False)


def test_reach_skips_only_negligible_history_items():
    from recengine.cooccur import NEGLIGIBLE

    assert co(decay=1.0, max_history=7).reach == 7
    c = co(decay=0.4, max_history=200)
    assert 0.4 ** (c.reach - 1) >= NEGLIGIBLE > 0.4 ** c.reach
    long = np.array([3] * 40 + [0])  # item 3 forty times long ago, item 0 last
    rows, _, _ = c.signal(long, np.ones(5, bool))
    assert 4 in rows.tolist()  # the latest items that still weigh are read
    far = np.array([3] + [2] * c.reach)  # item 3 just out of reach: nothing of its list
    assert co(decay=0.4, max_history=200).signal(far, np.ones(5, bool))[0].size == 0


def test_dense_and_sparse_sums_agree(monkeypatch):
    import recengine.cooccur as module

    hist, alive = np.array([3, 0, 1]), np.array([True, True, True, False, True])
    monkeypatch.setattr(module, "DENSE_RATIO", 10**6)
    dense = co().signal(hist, alive)
    monkeypatch.setattr(module, "DENSE_RATIO", 0)
    sparse = co().signal(hist, alive)
    assert dense[0].tolist() == sparse[0].tolist() and np.allclose(dense[1], sparse[1])


# ----------------------------------------------------------------------------- the text stand-in
def with_map() -> Cooccur:
    return Cooccur(indices=IDX, scores=SC, weight=1.0, decay=0.5, max_history=10,
                   text_cos=np.array([0.2, 0.5, 0.8]), text_sim=np.array([0.1, 0.2, 0.6]))


TEXT = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.8, 0.6], [1.0, 0.0], [0.0, 1.0], [0.28, 0.96]])


def test_text_term_reaches_only_items_without_a_list():
    c = with_map()
    hist = np.array([0, 3])  # 3 is the latest (age 0), 0 at age 1
    sig = c.signal(hist, np.ones(7, bool))
    rows = np.array([1, 2, 4, 5, 6])  # 1 has a list; 2 has an empty list; 4-6 are past the lists (added live)
    got = c.text_term(hist, rows, TEXT, sig)
    assert c.listless(rows).tolist() == [False, True, True, True, True]
    # item 2 (0, 1): cos 0.6 to item 3 (age 0) -> 0.2 + 0.1 / 0.3 * 0.4; cos 0 to item 0 -> below the map
    want2 = 0.2 + (0.6 - 0.5) / 0.3 * 0.4
    # item 4 (1, 0): cos 0.8 to 3 -> 0.6; cos 1.0 to 0 (age 1, beyond the map: its last value) -> 0.6 * 0.5
    want4 = 0.6 + 0.5 * 0.6
    # item 6 (0.28, 0.96): cos 0.8 to 3 -> 0.6; cos 0.28 to 0 -> (0.1 + 0.08 / 0.3 * 0.1) * 0.5
    want6 = 0.6 + 0.5 * (0.1 + (0.28 - 0.2) / 0.3 * 0.1)
    assert np.allclose(got, np.array([0.0, want2, want4, want2, want6]) / sig.top)


def test_text_term_normalises_by_itself_when_nothing_co_occurs():
    c = with_map()
    hist = np.array([2])  # an empty list: no signal, top 0
    sig = c.signal(hist, np.ones(7, bool))
    assert sig.top == 0.0
    got = c.text_term(hist, np.array([4, 5, 6]), TEXT, sig)
    assert got.max() == pytest.approx(1.0) and got[0] == 0.0  # item 4 is orthogonal to item 2


def test_the_engine_serves_the_text_stand_in(engines, lean_bundle):
    blended, tower = engines
    reader = open_bundle(lean_bundle)
    idx = reader.load_npy(reader.manifest["cooccur"]["indices"])
    ids = blended.item_ids()
    listless = {ids[i] for i in np.flatnonzero(idx[:, 0] < 0)}
    assert listless
    lifted = 0
    for user in blended.user_ids()[:6]:  # every item is a candidate (200 > 160): all scores are served
        a = {r.item_id: r.score for r in blended.recommend(user_id=user, k=200)}
        b = {r.item_id: r.score for r in tower.recommend(user_id=user, k=200)}
        assert a.keys() == b.keys()
        lifted += sum(a[i] > b[i] + 1e-9 for i in listless if i in a)
    assert lifted > 0  # items nobody interacted with are lifted by their text, not left behind


def _brute_force_top(engine, user: str, k: int, pool_size: int) -> list[str]:
    """The blended ranking computed from its parts over every row: tower score + weight x signal, and the
    text stand-in for the `pool_size` best listless items by tower score; seen items excluded."""
    st = engine._state  # noqa: SLF001 - the test rebuilds the score from the engine's own parts
    cat, c = st.catalogue, st.cooccur
    row = st.users.row_of[user]
    hist = cat.current_rows(st.users.history(row))
    base = cat.vectors.astype(np.float64) @ st.users.vectors[row].astype(np.float64)
    base[hist] = -np.inf
    sig = c.signal(hist, cat.alive)
    score = base.copy()
    score[sig.rows] += c.weight * sig.values
    listless = np.flatnonzero(c.listless(np.arange(cat.n_rows)) & np.isfinite(base))
    listless = listless[np.argsort(-base[listless], kind="stable")[:pool_size]]
    score[listless] += c.weight * c.text_term(hist, listless, cat.unit_vectors, sig)
    return [cat.ids[i] for i in np.argsort(-score, kind="stable")[:k]]


def test_the_blend_ranks_the_whole_catalogue(engines):
    """With the exact scan and no fusion head, the served top k is the top k of the blended score over every
    row, also with a small candidate count: an item good by the tower and by the signal but in neither's own
    top 20 is still served (the union of the two top lists missed such items)."""
    blended, _ = engines
    assert not blended._state.use_fusion  # noqa: SLF001
    for user in blended.user_ids():
        got = [r.item_id for r in blended.recommend(user_id=user, k=10, candidates=20)]
        assert got == _brute_force_top(blended, user, 10, 20), user


@pytest.mark.parametrize("retrieval", ["exact", "onnx", "hnsw"])
def test_score_catalogue_ranks_as_served_on_every_backend(lean_bundle, tmp_path, retrieval):
    """Whether the blend ranks the whole catalogue follows the catalogue's size, not the backend, so
    `score_catalogue` (the evaluation) ranks as `recommend` serves also where the engine retrieves with the
    ONNX top-k or HNSW; with 10 candidates the union path and the whole-catalogue path differ."""
    from recengine import Engine

    def few(m, root):
        m["models"]["fusion"]["n_candidates"] = 10

    engine = Engine.open(edited(lean_bundle, tmp_path / "few", few), device="cpu", threads=1, variant="fp32",
                         retrieval=retrieval, rescore=False)
    ids = engine.item_ids()
    rng = np.random.default_rng(0)
    profile = np.zeros(len(engine.user_profiles(np.array([0]))[0]), np.int64)
    for _ in range(12):
        rows = rng.choice(len(ids), size=5, replace=False)
        got = [r.item_id for r in engine.recommend(history=[ids[i] for i in rows], k=10)]
        q = RowQuery(history=rows, scene=np.zeros(engine.scene_slots, np.int64), profile=profile, exclude=rows)
        row = engine.score_catalogue([q])[0]
        assert got == [ids[i] for i in np.argsort(-row, kind="stable")[:10]]
