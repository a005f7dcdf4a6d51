"""The fresh-item policy's slot accounting, and exclusion of items re-added under an existing id."""

from __future__ import annotations

import numpy as np
import pytest

from recengine.errors import RequestError


@pytest.fixture()
def engine(lean_bundle):
    from recengine import Engine

    return Engine.open(lean_bundle, device="cpu", threads=1, retrieval="exact")


def _pop(engine, ids):
    """Interactions per item id, as the engine counts them (fresh = below fresh_below)."""
    from recengine.bundle import open_bundle

    reader = open_bundle(engine.bundle_path)
    pop = reader.load_npy(reader.manifest["items"]["popularity"])
    row = {i: r for r, i in enumerate(engine.item_ids())}
    return np.array([pop[row[i]] if i in row else 0 for i in ids])


def test_fresh_reserves_its_share_of_the_slots(engine):
    user = engine.user_ids()[0]
    plain = engine.recommend(user_id=user, k=10)
    for share, want in ((0.2, 2), (0.5, 5), (0.04, 1), (1.0, 10)):
        got = engine.recommend(user_id=user, k=10, fresh=share)
        ids = [r.item_id for r in got]
        assert len(ids) == 10 and len(set(ids)) == 10
        n_fresh = int((_pop(engine, ids) < 5).sum())
        assert n_fresh >= want
        # fresh items that earned a place keep it; the reservation only replaces the tail of the list
        earned = [r.item_id for r in plain if _pop(engine, [r.item_id])[0] >= 5]
        kept = [i for i in ids if i in earned]
        assert kept == earned[: len(kept)]
    assert [r.item_id for r in engine.recommend(user_id=user, k=10, fresh=0.0)] == [r.item_id for r in plain]


def test_fresh_counts_items_added_live(engine):
    user = engine.user_ids()[0]
    text = "brand new item nobody has seen yet"
    engine.add_items([{"item_id": "new-a", "text": text}, {"item_id": "new-b", "text": text + " two"}])
    warm = [i for i in engine.item_ids() if i not in ("new-a", "new-b") and _pop(engine, [i])[0] >= 5]
    pool = {"ids": ["new-a", "new-b"] + warm}
    plain = engine.recommend(user_id=user, k=10, filter=pool)
    got = engine.recommend(user_id=user, k=10, fresh=0.2, filter=pool)
    assert len({"new-a", "new-b"} & {r.item_id for r in got}) == 2
    assert [r.item_id for r in got][:8] == [r.item_id for r in plain if r.item_id not in ("new-a", "new-b")][:8]


def test_fresh_is_validated(engine):
    with pytest.raises(RequestError, match="fresh"):
        engine.recommend(user_id=engine.user_ids()[0], fresh=1.5)
    with pytest.raises(RequestError, match="fresh_below"):
        type(engine).open(engine.bundle_path, device="cpu", fresh_below=0)


def test_score_catalogue_puts_the_served_fresh_list_first(engine):
    from recengine import RowQuery

    user = engine.user_ids()[1]
    ids = engine.item_ids()
    row = {i: r for r, i in enumerate(ids)}
    hist = [row[i] for i in engine.history(user)]
    profile = engine.user_profiles([1])[0]
    q = RowQuery(history=np.array(hist), scene=np.zeros(engine.scene_slots, np.int64), profile=profile,
                 exclude=np.array(hist), fresh=0.3, k=10)
    (scores,) = engine.score_catalogue([q])
    served = engine.recommend(user_id=user, history=engine.history(user), k=10, fresh=0.3)
    assert [ids[r] for r in np.argsort(-scores, kind="stable")[:10]] == [r.item_id for r in served]


@pytest.mark.parametrize("how", ["upsert", "remove_then_add"])
def test_seen_item_stays_excluded_after_it_is_added_again(engine, how):
    user = engine.user_ids()[0]
    seen = engine.history(user)[-1]
    if how == "remove_then_add":
        engine.remove_items([seen])
    engine.add_items([{"item_id": seen, "text": "the same item, its text updated"}])
    assert seen in engine.history(user)
    got = engine.recommend(user_id=user, k=5, filter={"ids": [seen] + engine.item_ids()[:20]})
    assert seen not in {r.item_id for r in got}
    assert seen in {r.item_id for r in engine.recommend(user_id=user, k=5, exclude_seen=False,
                                                        filter={"ids": [seen]})}
