"""Cold start end to end: an item nobody interacted with reaches the users its text matches.

A toy catalogue of two kinds of item (words that only one kind uses) and two groups of users, each
interacting only with its kind. One item of each kind has no interactions at all. After a real export
(quick profile, tiny encoder), the cold item of a kind must enter the top-k of that kind's users, above
the other kind's warm items, and not the top-k of the other group; an item added live behaves the same.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from recengine.export.cold_start import ColdGenerator, fit_generator, generate
from tests.fixtures.toy_groups import write_group_interactions

KINDS = {"a": "space robots laser galaxy starship", "b": "garden flowers cooking recipes kitchen"}
PER_KIND, USERS_PER_KIND, K = 30, 24, 10


def _toy(root: Path) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir()
    with (root / "items.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["item_id", "title", "tags"])
        for kind, words in KINDS.items():
            vocab = words.split()
            for i in range(PER_KIND + 1):  # the last one of each kind stays cold
                picked = " ".join(rng.choice(vocab, size=3, replace=False))
                w.writerow([f"{kind}{i}", f"{kind} {picked} {i}", words])
    # each user has most items of its kind; a few stay unseen (warm competitors)
    write_group_interactions(root, KINDS, USERS_PER_KIND, PER_KIND, rng)
    return root


@pytest.fixture(scope="module")
def toy_bundle(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> Path:
    from recengine.export import ExportConfig, run_export

    data = _toy(tmp_path_factory.mktemp("toy") / "data")
    cfg = ExportConfig.from_profile("quick").override({"encoder.path": str(tiny_encoder_dir), "quiet": True,
                                                       "ablations": "", "encoder.epochs": 4})
    return run_export(data, tmp_path_factory.mktemp("toy_bundle") / "bundle", cfg)


def _rank_of(engine, user: str, item: str) -> int:
    ids = [r.item_id for r in engine.recommend(user_id=user, k=engine.n_items)]
    return ids.index(item) if item in ids else len(ids)


def test_cold_item_reaches_the_users_its_text_matches(toy_bundle: Path):
    from recengine import Engine

    engine = Engine.open(toy_bundle, device="cpu", variant="fp32", retrieval="exact")
    for kind, other in (("a", "b"), ("b", "a")):
        cold = f"{kind}{PER_KIND}"
        own = [_rank_of(engine, f"{kind}-user{u}", cold) for u in range(USERS_PER_KIND)]
        theirs = [_rank_of(engine, f"{other}-user{u}", cold) for u in range(USERS_PER_KIND)]
        assert np.mean(np.array(own) < K) >= 0.75, own
        assert np.mean(np.array(theirs) < K) <= 0.25, theirs
        assert np.median(own) < np.median(theirs)


def test_an_item_added_live_behaves_like_a_catalogue_cold_item(toy_bundle: Path):
    from recengine import Engine

    engine = Engine.open(toy_bundle, device="cpu", variant="fp32", retrieval="exact")
    engine.add_items([{"item_id": "new-a", "title": "a space robots galaxy 99", "tags": KINDS["a"]}])
    own = [_rank_of(engine, f"a-user{u}", "new-a") for u in range(USERS_PER_KIND)]
    theirs = [_rank_of(engine, f"b-user{u}", "new-a") for u in range(USERS_PER_KIND)]
    assert np.mean(np.array(own) < K) >= 0.75, own
    assert np.median(own) < np.median(theirs)


def test_generator_recovers_a_linear_map_and_aligns_the_spread():
    rng = np.random.default_rng(1)
    e = rng.normal(size=(400, 12))
    true_w, true_b = rng.normal(size=(6, 12)), rng.normal(size=6)
    v = e @ true_w.T + true_b
    W, b = fit_generator(e, v, np.arange(400), ridge=1e-6)
    np.testing.assert_allclose(generate(e, W, b), v, atol=1e-3)
    # noisy targets: the ridge fit shrinks the spread of scores; alignment restores it over the given users
    noisy = v + rng.normal(scale=3.0, size=v.shape)
    users = rng.normal(size=(50, 6))
    plain = ColdGenerator.fit(e, noisy, np.arange(400), 0.1)
    aligned = ColdGenerator.fit(e, noisy, np.arange(400), 0.1, users)
    def spread(scores: np.ndarray) -> float:  # per-user centred, as ranking sees them
        return float((scores - scores.mean(axis=1, keepdims=True)).std())

    real = spread(users @ noisy.T)
    assert spread(users @ plain.vectors(e).T) < 0.9 * real
    assert aligned.spread > 1.0
    assert spread(users @ aligned.vectors(e).T) == pytest.approx(real, rel=1e-4)
