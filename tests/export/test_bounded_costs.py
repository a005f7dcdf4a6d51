"""What keeps the export's cost linear in the data: every early-stopping, selection and reporting evaluation
scores the same seeded sample of at most `EVAL_USERS` users, and the fusion head's hard negatives are mined
for at most `TRAIN_USERS` users. Below the caps (the embedded MovieLens) nothing changes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from recengine.data import load_dataset  # noqa: E402
from recengine.evaluation import csr_rows, engine_row_scorer, evaluate_queries, histories, make_queries  # noqa: E402
from recengine.export import eval_sample  # noqa: E402
from recengine.export.config import FusionConfig  # noqa: E402
from recengine.export.fusion import TRAIN_USERS, fusion_train_data, training_users  # noqa: E402
from recengine.metrics import ndcg  # noqa: E402
from recengine.split import leave_last_out  # noqa: E402


def _split(data):
    return leave_last_out(data.interactions, data.n_users, data.n_items, seed=0)


def test_fit_early_stops_and_selects_on_the_sampled_validation_users(ml_tiny_dir: Path, tiny_encoder_dir: Path,
                                                                      monkeypatch):
    import recengine.export.fit as fit_mod
    from recengine.export import ExportConfig

    seen: dict[str, list[int]] = {}

    def spy(name, fn, arg):
        def wrapped(*args, **kwargs):
            q = args[arg]
            seen.setdefault(name, []).append(len(q.users))
            return fn(*args, **kwargs)
        return wrapped

    real = eval_sample.sample_queries
    # a cap of 15 users instead of EVAL_USERS (max_users=0 still means every user)
    monkeypatch.setattr(fit_mod, "sample_queries",
                        lambda q, max_users=eval_sample.EVAL_USERS: real(q, min(max_users, 15) if max_users else 0))
    monkeypatch.setattr(fit_mod, "train_lightgcn", spy("graph", fit_mod.train_lightgcn, 3))
    monkeypatch.setattr(fit_mod, "train_user_tower", spy("user", fit_mod.train_user_tower, 5))
    monkeypatch.setattr(fit_mod, "train_fusion", spy("fusion", fit_mod.train_fusion, 4))
    data = load_dataset(ml_tiny_dir)
    split = _split(data)
    cfg = ExportConfig.from_profile("quick").override({"encoder.path": str(tiny_encoder_dir), "quiet": True,
                                                       "user.epochs": 2, "graph.epochs": 2, "encoder.epochs": 1,
                                                       "fusion.epochs": 1})
    fitted = fit_mod.fit(data, split, cfg)
    assert len(split.valid) > 15
    assert seen == {"graph": [15], "user": [15], "fusion": [15]}
    assert fitted.evaluate("valid")["n_queries"] == 15  # the ablations' evaluations: the same users
    assert fitted.evaluate("valid", max_users=0)["n_queries"] == len(split.valid)
    assert fit_mod.graph_only_metrics(fitted.graph, split, "valid")["n_queries"] == 15


def test_bundle_validation_samples_the_same_users_and_is_unchanged_below_the_cap(tiny_bundle: Path, ml_tiny_dir):
    from recengine.export.validation import evaluate_bundle, open_variant

    data = load_dataset(ml_tiny_dir)
    split = _split(data)
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    # the export's number, every user (the test split's: `metrics.validation` was measured before the
    # co-occurrence lists were rebuilt with the validation events)
    whole = evaluate_bundle(tiny_bundle, data, split, "fp32", "test", max_users=0)
    assert len(split.test) < eval_sample.EVAL_USERS
    assert whole.pop("n_queries") == len(split.test)
    assert whole == pytest.approx(manifest["metrics"]["test"]["fp32"])
    part = evaluate_bundle(tiny_bundle, data, split, "fp32", "valid", max_users=12)
    assert part["n_queries"] == 12
    # the sampled metrics are the full ranking's, restricted to the sampled users
    engine = open_variant(tiny_bundle, "fp32")
    q = make_queries(split, "valid")
    indptr, indices = histories(split, "valid")
    scenes = engine.encode_scenes(split.valid.context, len(split.valid))[q.scene_rows]
    scorer = engine_row_scorer(engine, csr_rows(indptr, indices, q.users), scenes, engine.user_profiles(q.users),
                               [q.excluded(i) for i in range(len(q.users))])
    ranks = evaluate_queries(scorer, q).ranks
    rows = eval_sample.sample_rows(len(q.users), 12)
    assert part["ndcg@10"] == pytest.approx(ndcg(ranks[rows], 10))


def _fusion_data(split, max_users, samples=2):
    rng = np.random.default_rng(0)
    items = rng.normal(size=(split.n_items, 8)).astype(np.float32)
    scene = np.zeros((len(split.train), 1), np.int64)
    profiles = np.zeros((split.n_users, 1), np.int64)

    def user_vectors(hist, _scene, _profile):  # mean of the history's item vectors
        mask = (hist >= 0)[..., None]
        return (items[hist.clip(0)] * mask).sum(1) / np.maximum(mask.sum(1), 1)

    cfg = FusionConfig(n_candidates=10, samples_per_user=samples)
    return fusion_train_data(split, scene, profiles, user_vectors, items, cfg, 10, 0, max_users=max_users)


def test_fusion_training_queries_come_from_at_most_train_users(ml_tiny_dataset):
    split = _split(ml_tiny_dataset)
    eligible = training_users(split, 0)
    assert len(eligible) < TRAIN_USERS and np.array_equal(training_users(split), eligible)
    whole, again = _fusion_data(split, 0), _fusion_data(split, TRAIN_USERS)
    assert np.array_equal(whole.cands, again.cands) and np.allclose(whole.user, again.user)  # unchanged below
    few = training_users(split, 9)
    assert len(few) == 9 and np.all(np.isin(few, eligible)) and np.array_equal(few, training_users(split, 9))
    part = _fusion_data(split, 9)
    assert 0 < len(part.cands) <= 9 * 2
    # every query's target (column 0) is a train item of a sampled user
    known = set(split.train.item[np.isin(split.train.user, few)].tolist())
    assert set(part.cands[:, 0].tolist()) <= known
