"""The learned text scale (folded into the encoder), the train+valid split and the refit the bench scores."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from recengine.bundle import open_bundle
from recengine.export.fit import fold_text_scale, train_valid_split
from recengine.export.item_vectors import ItemVectors
from recengine.split import leave_last_out


@dataclass
class _Text:
    tower: torch.nn.Module
    text_vectors: np.ndarray


class _Tower(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.projection = torch.nn.Linear(4, 3, bias=False)


def test_fold_text_scale_keeps_every_vector_and_moves_the_scale_into_the_projection():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(5, 4)).astype(np.float32)
    tower = _Tower()
    with torch.no_grad():
        text_vectors = tower.projection(torch.from_numpy(emb)).numpy()
    items = ItemVectors(text_vectors, rng.normal(size=(5, 3)).astype(np.float32), np.array([4, 0, 2, 0, 1]))
    with torch.no_grad():
        items.log_text_scale.fill_(np.log(1.7))
    before, _, _ = items.export_arrays()
    np.testing.assert_allclose(before[[1, 3]], 1.7 * text_vectors[[1, 3]], rtol=1e-6)  # cold: scaled text only
    original = text_vectors.copy()
    folded = fold_text_scale(_Text(tower, text_vectors), items)  # type: ignore[arg-type]
    after, _, _ = items.export_arrays()
    np.testing.assert_allclose(after, before, rtol=1e-6, atol=1e-7)
    assert items.text_scale() == pytest.approx(1.0)
    np.testing.assert_array_equal(text_vectors, original)  # the caller's arrays are not written through
    np.testing.assert_allclose(folded.text_vectors, 1.7 * original, rtol=1e-6)
    with torch.no_grad():  # the folded encoder produces exactly the vectors the user tower was trained with
        projected = folded.tower.projection(torch.from_numpy(emb)).numpy()
    np.testing.assert_allclose(projected, 1.7 * original, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(projected[[1, 3]], after[[1, 3]], rtol=1e-5, atol=1e-6)
    assert tower.projection.weight is not folded.tower.projection.weight  # the original tower is untouched


def test_train_valid_split_appends_each_users_validation_event_in_time_order(ml_tiny_dataset):
    d = ml_tiny_dataset
    split = leave_last_out(d.interactions, d.n_users, d.n_items, seed=0)
    merged = train_valid_split(split)
    assert len(merged.train) == len(split.train) + len(split.valid) and len(merged.valid) == 0
    assert merged.test is split.test
    indptr, items = merged.train_csr()
    last = {int(u): int(i) for u, i in zip(split.valid.user, split.valid.item)}
    for u, item in last.items():
        assert items[indptr[u + 1] - 1] == item  # the validation event is now each user's latest train event
    assert np.all(np.diff(merged.train.user) >= 0)
    everything = train_valid_split(split, include_test=True)
    assert len(everything.train) == len(split.train) + len(split.valid) + len(split.test)
    assert len(everything.test) == 0
    if merged.train.timestamp is not None:
        for u in range(d.n_users):
            ts = merged.train.timestamp[merged.train.user == u]
            assert np.all(np.diff(ts) >= 0)


def test_refit_trains_on_train_plus_valid_for_the_early_stopped_epochs(ml_tiny_dir: Path, tiny_encoder_dir: Path):
    from recengine.data import load_dataset
    from recengine.export import ExportConfig
    from recengine.export.fit import fit, refit

    data = load_dataset(ml_tiny_dir)
    split = leave_last_out(data.interactions, data.n_users, data.n_items, seed=0)
    cfg = ExportConfig.from_profile("quick").override({"encoder.path": str(tiny_encoder_dir), "quiet": True,
                                                       "user.epochs": 3, "graph.epochs": 2, "encoder.epochs": 1})
    first = fit(data, split, cfg)
    assert 1 <= first.metrics["user_tower_best_epoch"] <= 3
    again = refit(first)
    assert again.metrics["refit_user_tower_epochs"] == first.metrics["user_tower_best_epoch"]
    assert len(again.split.train) == len(split.train) + len(split.valid)
    assert again.tower is not first.tower
    # the refitted model saw each user's validation event: its test queries exclude it as a known item
    test = again.evaluate("test")
    assert 0.0 <= test["ndcg@10"] <= 1.0
    vec_first, vec_again = first.item_arrays()["vectors"], again.item_arrays()["vectors"]
    assert not np.allclose(vec_first, vec_again)


def test_bundle_records_as_served_and_reencoded_pipeline_metrics(tiny_bundle: Path):
    m = open_bundle(tiny_bundle).manifest
    pipe = m["metrics"]["parity"]["pipeline"]
    assert "int8" in m["metrics"]["validation_reencoded"]
    assert "fp16" not in m["metrics"]["validation_reencoded"]  # not requested by default
    base = m["metrics"]["validation"]["fp32"]["ndcg@10"]
    if base > 0:
        assert pipe["int8_ndcg_ratio"] == pytest.approx(m["metrics"]["validation"]["int8"]["ndcg@10"] / base)
        assert pipe["int8_reencoded_ndcg_ratio"] == pytest.approx(
            m["metrics"]["validation_reencoded"]["int8"]["ndcg@10"] / base)


def _tiny_user_training(ml_tiny_dataset, ema: float, rewindow=None):
    from recengine.evaluation import make_queries
    from recengine.export.config import UserConfig
    from recengine.export.features import encode_profiles, encode_scene, profile_vocab, scene_vocab
    from recengine.export.train_user import make_windows, train_user_tower
    from recengine.export.user_tower import UserTower
    from recengine.progress import Progress

    d = ml_tiny_dataset
    split = leave_last_out(d.interactions, d.n_users, d.n_items, seed=0)
    sv, pv = scene_vocab(d), profile_vocab(d)
    rng = np.random.default_rng(0)
    items = ItemVectors(rng.normal(size=(d.n_items, 8)).astype(np.float32),
                        rng.normal(size=(d.n_items, 8)).astype(np.float32), split.item_popularity())
    torch.manual_seed(0)
    tower = UserTower(8, 10, 1, 1, 0.0, sv.sizes, pv.sizes)
    cfg = UserConfig(max_history=10, layers=1, epochs=2, lr=1e-2, batch_size=32, windows_per_user=1, ema=ema)
    start = [p.detach().clone() for p in tower.parameters()]
    windows = make_windows(split, encode_scene(sv, split.train), 10, 1)
    result = train_user_tower(tower, items, split, windows, encode_profiles(pv, d), make_queries(split, "valid"),
                              encode_scene(sv, split.valid), cfg, 0, torch.device("cpu"), Progress(True),
                              fixed_epochs=2, rewindow=rewindow and (lambda e: rewindow(e, split, sv)))
    moved = max(float((p.detach() - s).abs().max()) for p, s in zip(tower.parameters(), start))
    return result, moved


def test_reshuffled_windows_keep_each_users_events_in_a_new_order(ml_tiny_dataset):
    from recengine.export.config import UserConfig
    from recengine.export.features import encode_scene, scene_vocab
    from recengine.export.fit import user_windows
    from recengine.export.train_user import make_windows

    d = ml_tiny_dataset
    split = leave_last_out(d.interactions, d.n_users, d.n_items, seed=0)
    scene = encode_scene(scene_vocab(d), split.train)
    plain = make_windows(split, scene, 500, 1)  # one window holds a user's whole train sequence

    def per_user(w):
        return {int(u): w.inputs[i][w.inputs[i] >= 0].tolist() + [int(w.targets[i][-1])]
                for i, u in enumerate(w.users)}

    base = per_user(plain)
    first, rewindow = user_windows(split, scene, UserConfig(max_history=500, windows_per_user=1, reshuffle=True), 7)
    later = rewindow(1)
    for w in (first, later):
        got = per_user(w)
        assert got.keys() == base.keys() and all(sorted(got[u]) == sorted(base[u]) for u in base)
    assert per_user(first) != base and per_user(later) != per_user(first)
    assert np.array_equal(rewindow(1).inputs, later.inputs)  # seeded: the same epoch gets the same order
    fixed, none = user_windows(split, scene, UserConfig(max_history=500, windows_per_user=1), 7)
    assert none is None and np.array_equal(fixed.inputs, plain.inputs)


def test_training_takes_new_windows_every_later_epoch(ml_tiny_dataset):
    from recengine.export.features import encode_scene
    from recengine.export.train_user import make_windows

    asked = []

    def rewindow(epoch, split, sv):
        asked.append(epoch)
        return make_windows(split, encode_scene(sv, split.train), 10, 1, shuffle_seed=epoch)

    result, moved = _tiny_user_training(ml_tiny_dataset, ema=0.0, rewindow=rewindow)
    assert asked == [1] and moved > 1e-3 and result.epochs_run == 2  # epoch 0 trains on the windows given


def test_weight_averaging_keeps_the_averaged_weights(ml_tiny_dataset):
    plain, moved_plain = _tiny_user_training(ml_tiny_dataset, ema=0.0)
    slow, moved_slow = _tiny_user_training(ml_tiny_dataset, ema=0.9999)
    assert plain.best_epoch == slow.best_epoch == 2
    assert moved_plain > 1e-3
    # a decay of 0.9999 over a handful of steps keeps the average next to the initial weights
    assert moved_slow < moved_plain / 50
