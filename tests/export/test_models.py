"""Unit tests of the export models and helpers (no bundle, no encoder): small, exact properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recengine.errors import ExportError, ParityError
from recengine.export.config import ExportConfig
from recengine.export.features import build_vocab, pop_bucket_edges, pop_buckets
from recengine.export.fusion import FusionHead, item_features, rerank_scores
from recengine.export.graph import normalized_adjacency
from recengine.export.item_vectors import ItemVectors
from recengine.export.pipeline import check_pipeline_parity
from recengine.export.user_tower import UserTower


def _tower(dim: int = 16, max_history: int = 6) -> UserTower:
    torch.manual_seed(0)
    tower = UserTower(dim, max_history, layers=2, heads=2, dropout=0.0, scene_sizes=[3, 4], profile_sizes=[1])
    for emb in list(tower.scene):  # non-zero context so it takes part in the checks
        torch.nn.init.normal_(emb.weight)
    return tower.eval()


def test_user_tower_left_padding_does_not_change_the_output():
    tower = _tower()
    hist = torch.randn(1, 3, 16)
    scene, profile = torch.tensor([[1, 2]]), torch.tensor([[0]])
    short = tower(hist, torch.ones(1, 3), scene, profile)
    padded_hist = torch.cat([torch.zeros(1, 3, 16), hist], dim=1)
    padded = tower(padded_hist, torch.tensor([[0.0, 0, 0, 1, 1, 1]]), scene, profile)
    torch.testing.assert_close(short, padded, atol=1e-5, rtol=1e-5)


def test_user_tower_is_causal_and_order_sensitive():
    tower = _tower()
    hist = torch.randn(1, 5, 16)
    mask = torch.ones(1, 5)
    seq = tower.sequence(hist, mask)
    changed = hist.clone()
    changed[0, 4] += 1.0  # the most recent item: earlier positions must not see it
    seq2 = tower.sequence(changed, mask)
    torch.testing.assert_close(seq[:, :4], seq2[:, :4])
    assert not torch.allclose(seq[:, 4], seq2[:, 4])
    swapped = hist[:, [1, 0, 2, 3, 4]]
    s, p = torch.tensor([[0, 0]]), torch.tensor([[0]])
    assert not torch.allclose(tower(hist, mask, s, p), tower(swapped, mask, s, p))


def test_user_tower_scene_changes_the_vector():
    tower = _tower()
    hist, mask, p = torch.randn(1, 4, 16), torch.ones(1, 4), torch.tensor([[0]])
    a, b = tower(hist, mask, torch.tensor([[0, 0]]), p), tower(hist, mask, torch.tensor([[2, 3]]), p)
    assert not torch.allclose(a, b)


def test_item_vectors_cold_items_are_text_only():
    rng = np.random.default_rng(0)
    text = rng.normal(size=(5, 8)).astype(np.float32)
    graph = rng.normal(size=(5, 8)).astype(np.float32)
    pop = np.array([10, 0, 3, 0, 1])
    items = ItemVectors(text, graph, pop)
    vectors, graph_part, gate = items.export_arrays()
    np.testing.assert_array_equal(vectors[[1, 3]], text[[1, 3]])
    assert np.all(gate[[1, 3]] == 0) and np.all(gate[[0, 2, 4]] > 0)
    assert not np.allclose(vectors[0], text[0])
    # with item dropout some warm items fall back to their text vector
    dropped = items(item_dropout=0.999, generator=torch.Generator().manual_seed(0)).detach().numpy()
    np.testing.assert_allclose(dropped, text, atol=1e-6)
    feats = item_features(text, graph_part, gate)
    assert feats.shape == (5, 3) and np.all(feats[[1, 3], 1] == 1) and np.all(feats[[0, 2, 4], 1] == 0)


def test_fusion_head_starts_as_the_retrieval_score():
    torch.manual_seed(0)
    head = FusionHead(8, 3, 5, [3], [2], hidden=16, dropout=0.0).eval()
    user, items = torch.randn(2, 8), torch.randn(2, 4, 8)
    scores = head(user, items, torch.randn(2, 4, 3), torch.randint(0, 5, (2, 4)), torch.tensor([[1], [2]]),
                  torch.tensor([[0], [1]]))
    torch.testing.assert_close(scores, (user.unsqueeze(1) * items).sum(-1))


def test_rerank_puts_candidates_first_in_fused_order():
    base = np.array([[5.0, 1.0, 3.0, 4.0]])
    out = rerank_scores(base, np.array([[0, 3]]), np.array([[0.1, 0.9]]))
    assert list(np.argsort(-out[0])[:2]) == [3, 0]


def test_pop_buckets_follow_the_bundle_spec():
    pop = np.array([0, 1, 2, 3, 10, 100, 0])
    edges = pop_bucket_edges(pop, 4)
    buckets = pop_buckets(pop, edges)
    assert buckets[0] == 0 and buckets[-1] == 0
    assert np.all(buckets[1:-1] >= 1)
    np.testing.assert_array_equal(buckets[1:-1], 1 + np.searchsorted(edges, pop[1:-1], side="right"))
    assert np.all(np.diff(buckets[1:-1]) >= 0)


def test_vocab_encodes_unknown_and_missing_as_zero():
    vocab = build_vocab({"ctx_daypart": np.array(["night", "morning", "night", ""], dtype=object)})
    assert vocab.values["ctx_daypart"][0] == "<unk>"
    codes = vocab.encode({"ctx_daypart": np.array(["night", "noon", ""], dtype=object)}, 3)
    assert codes[0, 0] == vocab.values["ctx_daypart"].index("night")
    assert codes[1, 0] == 0 and codes[2, 0] == 0
    empty = build_vocab({})
    assert empty.slots == 1 and empty.encode({}, 2).tolist() == [[0], [0]]
    numeric = build_vocab({"attr_age": np.array([18.0, 30.0, np.nan, 50.0])})
    enc = numeric.encode({"attr_age": np.array([np.nan, 18.0, 99.0])}, 3)
    assert enc[0, 0] == 0 and enc[1, 0] >= 1 and enc[2, 0] > enc[1, 0]


def test_normalized_adjacency_is_symmetric_and_scaled():
    adj = normalized_adjacency(np.array([0, 0, 1]), np.array([0, 1, 1]), 2, 2).to_dense().numpy()
    np.testing.assert_allclose(adj, adj.T)
    # user 0 (degree 2) - item 0 (degree 1): 1/sqrt(2*1)
    assert adj[0, 2] == pytest.approx(1 / np.sqrt(2))


def test_config_profiles_toml_and_overrides(tmp_path):
    quick = ExportConfig.from_profile("quick")
    assert quick.encoder.tiny and quick.user.epochs < ExportConfig.from_profile("standard").user.epochs
    cfg = quick.override({"user.epochs": "7", "encoder.finetune": "none", "ablations": "graph_only"})
    assert cfg.user.epochs == 7 and cfg.encoder.finetune == "none" and cfg.ablations == ("graph_only",)
    assert quick.user.epochs != 7  # override returns a copy
    toml = tmp_path / "export.toml"
    toml.write_text('profile = "quick"\nseed = 3\n[user]\nmax_history = 12\n[fusion]\nn_candidates = 30\n')
    loaded = ExportConfig.from_toml(toml)
    assert (loaded.profile, loaded.seed, loaded.user.max_history, loaded.fusion.n_candidates) == ("quick", 3, 12, 30)
    for bad in ({"user.epoch": 3}, {"nosuch.key": 1}, {"user.epochs": "many"}, {"encoder.finetune": "half"}):
        with pytest.raises(ExportError):
            quick.override(bad)
    (tmp_path / "bad.toml").write_text("[user]\ndropout = 'x'\n")
    with pytest.raises(ExportError, match="user.dropout"):
        ExportConfig.from_toml(tmp_path / "bad.toml")
    with pytest.raises(ExportError, match="not found"):
        ExportConfig.from_toml(tmp_path / "missing.toml")
    with pytest.raises(ExportError, match="profile"):
        ExportConfig.from_profile("fast")
    assert quick.override({"cooccur.standin_strengths": "1,3"}).cooccur.standin_strengths == (1.0, 3.0)
    for bad in ("", "0", "1,-2", "1,inf", "1,nan"):
        with pytest.raises(ExportError, match="cooccur.standin_strengths"):
            quick.override({"cooccur.standin_strengths": bad})


def test_pipeline_parity_floor_raises_when_dropping_is_off():
    cfg = ExportConfig.from_profile("standard").override({"parity.drop_failed_variants": False})
    parity: dict = {}
    assert check_pipeline_parity({"fp32": {"ndcg@10": 0.1}, "int8": {"ndcg@10": 0.099}}, cfg, parity) == {}
    assert parity["pipeline"]["int8_ndcg_ratio"] == pytest.approx(0.99)
    with pytest.raises(ParityError, match="int8"):
        check_pipeline_parity({"fp32": {"ndcg@10": 0.1}, "int8": {"ndcg@10": 0.05}}, cfg, {})
    # re-encoded: its own floor (0.75 by default), still far above a broken encoder
    served = {"fp32": {"ndcg@10": 0.1}, "int8": {"ndcg@10": 0.1}}
    parity = {}
    check_pipeline_parity(served, cfg, parity, {"int8": {"ndcg@10": 0.086}})
    assert parity["pipeline"]["int8_reencoded_ndcg_ratio"] == pytest.approx(0.86)
    with pytest.raises(ParityError, match="re-encoded"):
        check_pipeline_parity(served, cfg, {}, {"int8": {"ndcg@10": 0.07}})


def test_pipeline_parity_failure_is_returned_for_dropping_by_default():
    cfg = ExportConfig.from_profile("standard")
    parity: dict = {}
    failed = check_pipeline_parity({"fp32": {"ndcg@10": 0.1}, "int8": {"ndcg@10": 0.05},
                                    "fp16": {"ndcg@10": 0.1}}, cfg, parity, {"int8": {"ndcg@10": 0.01}})
    assert list(failed) == ["int8"] and "0.500x fp32" in failed["int8"]  # the first failure names it
    assert parity["pipeline"]["dropped"] == failed
    assert parity["pipeline"]["int8_ndcg_ratio"] == pytest.approx(0.5)
    assert parity["pipeline"]["fp16_ndcg_ratio"] == pytest.approx(1.0)
    lenient = ExportConfig.from_profile("standard").override({"parity.raise_on_failure": False})
    assert check_pipeline_parity({"fp32": {"ndcg@10": 0.1}, "int8": {"ndcg@10": 0.05}}, lenient, {}) == {}
