"""Defaults that travel (`recengine.export.adapt`): the rules on data sets of several sizes and shapes,
explicit keys never overridden, and the decision record in an exported bundle's manifest."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from recengine.errors import ExportError
from recengine.export.adapt import (
    ABLATION_MAX_INTERACTIONS,
    FULL_SOFTMAX_MAX_ITEMS,
    GRAPH_MAX_STEPS,
    REFERENCE_INTERACTIONS,
    USER_EPOCH_FLOOR,
    DataStats,
    adapt,
)
from recengine.export.config import ExportConfig


def stats(n_users: int, n_items: int, n_train: int, hist_p90: float = 400.0, tokens_p99: float | None = 43.0,
          **kw) -> DataStats:
    """A synthetic DataStats (only what the rules read needs to be realistic)."""
    base = dict(
        n_users=n_users, n_items=n_items, n_interactions=int(n_train + 2 * n_users), n_train=n_train,
        n_eval_users=n_users, n_items_with_train=n_items, density=n_train / (n_users * n_items),
        history={"p10": 5.0, "p50": hist_p90 / 3, "p90": hist_p90, "p99": hist_p90 * 2, "max": hist_p90 * 4},
        text_share=1.0,
        tokens=None if tokens_p99 is None else {"p50": tokens_p99 / 2, "p90": tokens_p99 * 0.8, "p99": tokens_p99,
                                                "max": tokens_p99 * 1.5},
        token_sample=min(n_items, 20_000), has_timestamps=True, has_context=False, has_profiles=False,
        has_media=False)
    base.update(kw)
    return DataStats(**base)


TINY = stats(80, 400, 5_034, hist_p90=74, tokens_p99=119)
MOVIELENS = stats(610, 9_742, 99_616, hist_p90=398.3, tokens_p99=43)
ONE_M = stats(6_040, 3_706, 1_000_000, hist_p90=600)
ONE_M_WIDE = stats(50_000, 200_000, 1_000_000, hist_p90=40)
TEN_M = stats(200_000, 500_000, 10_000_000, hist_p90=120)
SIZES = {"tiny": TINY, "movielens": MOVIELENS, "1m": ONE_M, "1m_wide": ONE_M_WIDE, "10m": TEN_M}


def changed(cfg: ExportConfig, st: DataStats, explicit=None) -> dict:
    _, decisions = adapt(cfg, st, explicit)
    return {d.key: d.value for d in decisions if d.applied}


def std() -> ExportConfig:
    return ExportConfig.from_profile("standard")


# ------------------------------------------------------------------------------------------ per size
def test_movielens_standard_keeps_its_tuned_values():
    # the profiles were tuned here; the token cap would move only 64 -> 48 (p99 43), which changed the trained
    # model for a 4 % shorter batch (rule_max_length's docstring), so it stays
    assert changed(std(), MOVIELENS) == {}


def test_tiny_catalogue_gets_the_full_softmax():
    got = changed(std(), TINY)
    assert got["user.loss"] == "full"
    assert got["user.n_negatives"] == 399
    assert "user.epochs" not in got and "graph.batch_size" not in got and "ablations" not in got
    assert "user.max_history" not in got  # p90 74 >= 50


@pytest.mark.parametrize("name", list(SIZES))
def test_capacity_and_epoch_rule_keeps_each_stage_linear(name: str):
    st = SIZES[name]
    cfg, _ = adapt(std(), st)
    profile = std()
    # user tower: epochs x interactions bounded by the reference budget, or by the floor's linear cost
    assert cfg.user.epochs <= profile.user.epochs
    assert cfg.user.epochs * st.n_train <= max(profile.user.epochs * REFERENCE_INTERACTIONS * 1.01,
                                               USER_EPOCH_FLOOR * st.n_train)
    assert cfg.user.epochs >= min(profile.user.epochs, USER_EPOCH_FLOOR)
    # graph: at most GRAPH_MAX_STEPS full-graph propagations per epoch once past the profile's batch size
    steps = math.ceil(st.n_train / cfg.graph.batch_size)
    assert steps <= max(GRAPH_MAX_STEPS, math.ceil(st.n_train / profile.graph.batch_size))
    assert cfg.graph.batch_size >= profile.graph.batch_size
    assert cfg.graph.epochs == profile.graph.epochs and cfg.graph.lr == profile.graph.lr
    # no rule raises a cost knob above the profile
    assert cfg.encoder.max_length <= profile.encoder.max_length
    assert cfg.user.max_history <= profile.user.max_history
    assert cfg.item_dim == profile.item_dim and cfg.user.dropout == profile.user.dropout


def test_epoch_cap_by_size():
    epochs = {name: adapt(std(), st)[0].user.epochs for name, st in SIZES.items()}
    assert epochs["tiny"] == epochs["movielens"] == 150
    assert epochs["1m"] == epochs["1m_wide"] == epochs["10m"] == USER_EPOCH_FLOOR
    mid = adapt(std(), stats(2_000, 20_000, 250_000, hist_p90=200))[0].user.epochs
    assert mid == math.ceil(150 * REFERENCE_INTERACTIONS / 250_000)  # 60: between the two
    # the quick profile's 8 epochs are already under every cap
    assert all(adapt(ExportConfig.from_profile("quick"), st)[0].user.epochs == 8 for st in SIZES.values())


def test_graph_batch_grows_past_the_reference_size_only():
    assert adapt(std(), MOVIELENS)[0].graph.batch_size == 4096  # 25 steps: as tuned
    assert adapt(std(), ONE_M)[0].graph.batch_size == math.ceil(1_000_000 / GRAPH_MAX_STEPS)
    assert adapt(std(), TEN_M)[0].graph.batch_size == math.ceil(10_000_000 / GRAPH_MAX_STEPS)


def test_full_softmax_threshold():
    assert adapt(std(), ONE_M)[0].user.loss == "full"  # 3,706 items (ML-1M-like)
    assert adapt(std(), ONE_M_WIDE)[0].user.loss == "sampled"
    assert adapt(std(), MOVIELENS)[0].user.loss == "sampled"  # 9,742 > FULL_SOFTMAX_MAX_ITEMS: time budget
    edge = stats(100, FULL_SOFTMAX_MAX_ITEMS, 50_000)
    assert adapt(std(), edge)[0].user.loss == "full"
    assert adapt(std(), dataclasses.replace(edge, n_items=FULL_SOFTMAX_MAX_ITEMS + 1))[0].user.loss == "sampled"


def test_eval_cadence_follows_the_cost_of_a_validation_pass():
    from recengine.export.adapt import GRAPH_EVAL_COST, MAX_EVAL_SHARE, USER_EVAL_COST

    for st in (TINY, MOVIELENS, ONE_M):  # few validation users x items: every epoch (user), every 5th (graph)
        cfg, _ = adapt(std(), st)
        assert (cfg.user.eval_every, cfg.user.patience, cfg.graph.eval_every) == (1, 6, 5)
    from recengine.export.eval_sample import EVAL_USERS

    raised = 0
    for st in (ONE_M_WIDE, TEN_M, stats(10_000, 20_000, 136_617, hist_p90=30), stats(4_000, 60_000, 136_617)):
        cfg, _ = adapt(std(), st)
        scores = min(st.n_eval_users, EVAL_USERS) * st.n_items  # a pass scores at most EVAL_USERS users
        every_epoch = USER_EVAL_COST * scores / st.n_train
        if every_epoch <= MAX_EVAL_SHARE:  # e.g. 10,000 users, of which 5,000 are scored: cheap enough
            assert cfg.user.eval_every == 1
            continue
        raised += 1
        user_share = every_epoch / cfg.user.eval_every
        assert cfg.user.eval_every > 1 and user_share <= MAX_EVAL_SHARE
        assert cfg.user.patience * cfg.user.eval_every >= 2 * cfg.user.eval_every  # still stops early
        assert cfg.user.patience * cfg.user.eval_every <= std().user.patience * 2 * cfg.user.eval_every
        steps = math.ceil(st.n_train / cfg.graph.batch_size)
        graph_share = GRAPH_EVAL_COST * scores / (steps * st.n_train) / cfg.graph.eval_every
        assert graph_share <= MAX_EVAL_SHARE or cfg.graph.eval_every == cfg.graph.epochs
    assert raised >= 1
    # the sample cap: 10,000 validation users cost what 5,000 do (unsampled, this data set would be raised)
    assert USER_EVAL_COST * 10_000 * 20_000 / 136_617 > MAX_EVAL_SHARE


def test_retraining_ablations_are_skipped_on_large_data_only():
    assert adapt(std(), MOVIELENS)[0].ablations == std().ablations
    assert adapt(std(), stats(5_000, 20_000, ABLATION_MAX_INTERACTIONS))[0].ablations == std().ablations
    mid = adapt(std(), stats(13_514, 19_658, 436_573))[0].ablations  # a Book-Crossing 5-core
    assert "frozen_text" not in mid and mid
    big = adapt(std(), ONE_M)[0].ablations
    assert "frozen_text" not in big and set(big) <= {"graph_only", "no_fusion"} and big


def test_short_titles_and_long_descriptions():
    short = adapt(std(), stats(1_000, 5_000, 50_000, tokens_p99=11))[0]
    assert short.encoder.max_length == 16  # never below 16
    titles = adapt(std(), stats(1_000, 5_000, 50_000, tokens_p99=21))[0]
    assert titles.encoder.max_length == 24
    near = adapt(std(), stats(1_000, 5_000, 50_000, tokens_p99=40))[0]  # 40 -> 40 > 64 / 2: not worth a change
    assert near.encoder.max_length == std().encoder.max_length
    long = adapt(std(), stats(1_000, 5_000, 50_000, tokens_p99=300))[0]
    assert long.encoder.max_length == std().encoder.max_length  # capped by the profile, never raised
    assert adapt(ExportConfig.from_profile("quick"), stats(1_000, 5_000, 50_000, tokens_p99=300))[0] \
        .encoder.max_length == 32
    unknown = adapt(std(), stats(1_000, 5_000, 50_000, tokens_p99=None))[0]  # no tokenizer: left alone
    assert unknown.encoder.max_length == std().encoder.max_length


def test_short_histories_get_short_windows_and_more_of_them():
    st = stats(20_000, 5_000, 120_000, hist_p90=7, has_timestamps=False)  # purchases, no timestamps
    cfg, _ = adapt(std(), st)
    assert cfg.user.max_history == 8
    assert cfg.user.windows_per_user * cfg.user.max_history >= std().user.windows_per_user * std().user.max_history
    mid = adapt(std(), stats(2_000, 5_000, 60_000, hist_p90=21))[0]
    assert mid.user.max_history == 24
    assert adapt(ExportConfig.from_profile("quick"), st)[0].user.max_history == 8


def test_data_without_timestamps_reshuffles_the_tower_windows():
    assert changed(std(), stats(20_000, 5_000, 120_000, has_timestamps=False))["user.reshuffle"] is True
    assert "user.reshuffle" not in changed(std(), stats(20_000, 5_000, 120_000))  # ordered data keeps its order
    assert not adapt(std(), MOVIELENS)[0].user.reshuffle


def test_data_without_timestamps_blends_co_occurrence_order_blind():
    """No timestamps: the recency decays below 1 would weigh the split's random order; only 1.0 is tried."""
    cfg, decisions = adapt(std(), stats(20_000, 5_000, 120_000, has_timestamps=False))
    assert cfg.cooccur.decays == (1.0,)
    assert any(d.key == "cooccur.decays" and "no timestamps" in d.line() and "1.0,0.7,0.4 -> 1.0" in d.line()
               for d in decisions)
    assert adapt(std(), stats(20_000, 5_000, 120_000))[0].cooccur.decays == std().cooccur.decays
    kept = adapt(std().override({"cooccur.decays": [0.5, 1.0]}), stats(20_000, 5_000, 120_000, has_timestamps=False))
    assert kept[0].cooccur.decays == (0.5, 1.0)  # set explicitly: kept, and the record says what the data would give


# ------------------------------------------------------------------------------------------ explicit keys
@pytest.mark.parametrize("name", [n for n in SIZES if n != "movielens"] + ["short"])  # movielens: nothing to adapt
def test_explicit_keys_are_never_overridden(name: str):
    st = SIZES.get(name) or stats(20_000, 5_000, 120_000, hist_p90=7, tokens_p99=11)
    would = changed(std(), st)
    assert would, "every case here has something to adapt"
    for key in would:
        # values the rule would still change (caps above the data's value, a batch below the rule's, ...)
        mine = {"encoder.max_length": 100, "user.max_history": 100, "user.windows_per_user": 3, "user.loss": "sampled",
                "user.n_negatives": 5000, "graph.batch_size": 1024, "user.epochs": 300,
                "ablations": "frozen_text", "user.eval_every": 1, "graph.eval_every": 1, "user.patience": 50,
                "graph.patience": 50}[key]
        cfg = std().override({key: mine})
        assert key in cfg.explicit
        out, decisions = adapt(cfg, st)
        got = out
        for part in key.split("."):
            got = getattr(got, part)
        assert got == (tuple(mine.split(",")) if key == "ablations" else mine)
        kept = [d for d in decisions if d.key == key]
        assert kept and not kept[0].applied and kept[0].value == got and kept[0].proposed != got


def test_explicit_max_history_leaves_windows_alone():
    st = stats(20_000, 5_000, 120_000, hist_p90=7)
    cfg, _ = adapt(std().override({"user.max_history": 50}), st)
    assert (cfg.user.max_history, cfg.user.windows_per_user) == (50, 8)


def test_explicit_keys_come_from_the_cli_and_toml(tmp_path: Path, monkeypatch):
    from click.testing import CliRunner

    import recengine.export.pipeline as pipeline
    from recengine.cli import cli

    seen = {}
    monkeypatch.setattr(pipeline, "run_export", lambda data, out, cfg, force=False: seen.setdefault("cfg", cfg))
    toml = tmp_path / "e.toml"
    toml.write_text("[graph]\nbatch_size = 2048\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["export", "--out", str(tmp_path / "b"), "--config", str(toml), "--epochs", "60",
                                      "--set", "user.loss=sampled", "--quiet"], prog_name="recengine")
    assert result.exit_code == 0, result.output
    cfg = seen["cfg"]
    assert {"graph.batch_size", "user.epochs", "user.loss", "quiet"} <= set(cfg.explicit)
    assert "user.max_history" not in cfg.explicit and "encoder.max_length" not in cfg.explicit
    out, _ = adapt(cfg, TEN_M)
    assert (out.graph.batch_size, out.user.epochs, out.user.loss) == (2048, 60, "sampled")
    assert out.ablations != cfg.ablations  # what the user did not set still adapts
    assert "explicit" in cfg.to_dict()


def test_adapt_does_not_mark_its_own_keys_explicit_and_explicit_cannot_be_set():
    cfg, _ = adapt(std(), ONE_M)
    assert cfg.explicit == ()
    with pytest.raises(ExportError, match="explicit"):
        std().override({"explicit": "user.epochs"})


def test_adapt_off(ml_tiny_dataset):
    from recengine.export.adapt import adapt_to_data
    from recengine.split import leave_last_out

    d = ml_tiny_dataset
    split = leave_last_out(d.interactions, d.n_users, d.n_items, seed=0)
    cfg = std().override({"adapt": False})
    out, result = adapt_to_data(cfg, d, split)
    assert out is cfg and result.decisions == [] and result.to_manifest()["enabled"] is False
    on, result = adapt_to_data(std(), d, split)
    assert on.user.loss == "full" and result.to_manifest()["decisions"]


# ------------------------------------------------------------------------------------------ statistics
def test_data_stats_of_a_real_split(ml_tiny_dataset, tiny_encoder_dir: Path):
    from recengine.export.encoder import load_tokenizer, resolve_encoder
    from recengine.split import leave_last_out

    d = ml_tiny_dataset
    split = leave_last_out(d.interactions, d.n_users, d.n_items, seed=0)
    plain = DataStats.of(d, split)
    assert (plain.n_users, plain.n_items, plain.n_interactions) == (80, 400, 5_194)
    assert plain.n_train == len(split.train) and plain.n_eval_users == len(split.valid)
    assert plain.tokens is None and plain.has_timestamps and plain.has_context and not plain.has_profiles
    per_user = np.bincount(split.train.user, minlength=d.n_users)
    assert plain.history["p90"] == pytest.approx(np.percentile(per_user[per_user > 0], 90))
    assert plain.history["p10"] <= plain.history["p50"] <= plain.history["p90"] <= plain.history["max"]
    tok, _ = load_tokenizer(resolve_encoder(tiny_encoder_dir), max_length=512)
    with_tokens = DataStats.of(d, split, tok)
    lengths = [len(tok.encode(t).ids) for t in d.items.texts]
    assert with_tokens.tokens["max"] == max(lengths)
    assert with_tokens.tokens["p99"] == pytest.approx(np.percentile(lengths, 99))
    sampled = DataStats.of(d, split, tok, sample=50)
    assert sampled.token_sample == 50 and sampled.tokens["max"] <= with_tokens.tokens["max"]


def test_data_stats_without_timestamps(ml_tiny_dataset):
    from recengine.data.schema import Dataset
    from recengine.split import leave_last_out

    d = ml_tiny_dataset
    bare = Dataset(name="bare", items=d.items, user_ids=d.user_ids,
                   interactions=dataclasses.replace(d.interactions, timestamp=None, context={}))
    split = leave_last_out(bare.interactions, bare.n_users, bare.n_items, seed=0)
    st = DataStats.of(bare, split)
    assert not st.has_timestamps and not st.has_context
    assert st.n_train == len(split.train)


# ------------------------------------------------------------------------------------------ in a bundle
def test_decisions_are_recorded_in_the_manifest(tiny_bundle: Path):
    from recengine.bundle import open_bundle

    m = open_bundle(tiny_bundle).manifest
    record = m["adapt"]
    assert record["enabled"] is True and record["stats"]["n_items"] == 400
    by_key = {d["key"]: d for d in record["decisions"]}
    assert by_key["user.loss"]["value"] == "full" and by_key["user.loss"]["default"] == "sampled"
    assert by_key["user.loss"]["rule"] == "rule_loss" and by_key["user.loss"]["reason"]
    assert m["config"]["user"]["loss"] == "full"  # the effective config
    assert {"encoder.path", "quiet"} <= set(m["config"]["explicit"])
