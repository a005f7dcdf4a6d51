"""`recengine bench quality` end to end on the tiny MovieLens sample (quick profile, tiny encoder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from recengine.bench.quality import QualityConfig, run_quality
from recengine.bench.report import write_report_dir
from recengine.cli import cli

METRICS = ("hr@10", "ndcg@10", "hr@20", "ndcg@20", "mrr", "coverage@10", "tail_share@10", "cold_recall@20",
           "cold_ndcg@20", "coldonly_recall@20", "coldonly_ndcg@20")
ALL = ("popularity", "itemknn", "ease", "als", "bpr", "lightgcn", "sasrec", "frozen_text", "recengine_fp32",
       "recengine_int8", "recengine_int8_int8items", "recengine_fp16")


@pytest.fixture(scope="module")
def quality_report(ml_tiny_dir: Path, tiny_encoder_dir: Path) -> dict:
    cfg = QualityConfig(data=str(ml_tiny_dir), profile="quick", encoder=str(tiny_encoder_dir), threads=1, quiet=True,
                        jobs=2)  # recengine trains in a worker process, as in the committed runs
    return run_quality(cfg)


def test_every_model_is_reported_with_every_metric(quality_report: dict) -> None:
    models = quality_report["models"]
    for name in ALL:
        assert name in models, f"{name} missing; notes: {quality_report['notes']}"
        for metric in METRICS:
            value = models[name][metric]
            assert isinstance(value, float) and 0.0 <= value <= 1.0
        assert models[name]["n_queries"] == quality_report["protocol"]["n_test_queries"]
    assert quality_report["schema"] == "recengine-bench-quality/1"
    p = quality_report["protocol"]
    assert p["split"].startswith("leave_last_out") and p["cold"]["n_cold_items"] > 0


def test_ratios_are_relative_to_the_best_baseline(quality_report: dict) -> None:
    best = quality_report["best_baseline"]["name"]
    models = quality_report["models"]
    baselines = [n for n, m in models.items() if m["kind"] == "baseline"]
    assert best == max(baselines, key=lambda n: models[n]["ndcg@10"])
    for name in models:
        assert quality_report["ratios"][name]["ndcg@10"] == pytest.approx(
            models[name]["ndcg@10"] / models[best]["ndcg@10"])
    assert quality_report["ratios"][best]["ndcg@10"] == pytest.approx(1.0)
    t = quality_report["target"]
    assert t["met"] == (t["recengine_fp32_ratio"] >= 1.10)


def test_standard_errors_and_the_ratio_interval(quality_report: dict) -> None:
    models = quality_report["models"]
    for name in ALL:
        assert models[name]["ndcg@10_se"] >= 0.0
    t = quality_report["target"]
    if models[quality_report["best_baseline"]["name"]]["ndcg@10"] > 0:
        lo, hi = t["ratio_ci95"]
        assert lo <= hi


def test_paired_bootstrap_ratio_on_known_cases() -> None:
    import numpy as np

    from recengine.bench.quality import paired_bootstrap_ratio, query_ndcg

    np.testing.assert_allclose(query_ndcg(np.array([1, 3, 10, 11])), [1.0, 0.5, 1 / np.log2(11), 0.0])
    a = np.random.default_rng(1).random(500)
    lo, hi = paired_bootstrap_ratio(2 * a, a)  # perfectly paired: the ratio is exactly 2 in every resample
    assert lo == pytest.approx(2.0) and hi == pytest.approx(2.0)
    b = np.random.default_rng(2).random(500)
    lo, hi = paired_bootstrap_ratio(a, b)
    assert lo < a.mean() / b.mean() < hi and hi - lo > 0.05  # independent noise: a real interval


def test_tuning_and_scenes_are_recorded(quality_report: dict) -> None:
    for name in ("itemknn", "frozen_text"):
        trials = quality_report["tuning"][name]
        assert len(trials) >= 2
        assert quality_report["models"][name]["valid_ndcg@10"] == max(t["valid_ndcg@10"] for t in trials)
    scenes = quality_report["scenes"]
    assert set(scenes) == {"ctx_daypart", "ctx_weekday"}
    for values in scenes.values():
        n = quality_report["protocol"]["n_test_queries"]
        assert sum(v["popularity"]["n_queries"] for v in values.values()) == n


def test_onnx_fp32_matches_the_torch_model(quality_report: dict) -> None:
    """The torch model is the user tower alone: the served fp32 bundle with the co-occurrence blend off
    (`recengine_fp32_tower`, present when the export kept the lists) must match it."""
    m = quality_report["models"]
    tower = m.get("recengine_fp32_tower", m["recengine_fp32"])
    assert tower["ndcg@10"] == pytest.approx(m["recengine_torch"]["ndcg@10"], abs=1e-3)


def test_report_files(quality_report: dict, tmp_path: Path) -> None:
    files = write_report_dir(quality_report, tmp_path)
    data = json.loads(files["json"].read_text())
    assert data["models"].keys() == quality_report["models"].keys()
    md = files["markdown"].read_text()
    assert "| recengine_int8 |" in md and "NDCG@10 / best baseline" in md
    # NDCG@10 ± se with coverage@10 and tail share@10 right next to it, for every model
    assert "| model | ndcg@10 ± se | coverage@10 | tail_share@10 |" in md
    ease = data["models"]["ease"]
    assert f"| ease | {ease['ndcg@10']:.4f} ± {ease['ndcg@10_se']:.4f} | {ease['coverage@10']:.4f} | " \
           f"{ease['tail_share@10']:.4f} |" in md
    # both cold protocols stated, next to the warm test NDCG@10 of the same model
    assert "hybrid: all items ranked" in md and "cold-only: only the cold items ranked" in md
    ft = data["models"]["frozen_text"]
    assert (f"| frozen_text | {ft['ndcg@10']:.4f} | {ft['cold_recall@20']:.4f} | {ft['cold_ndcg@20']:.4f} | "
            f"{ft['coldonly_recall@20']:.4f} | {ft['coldonly_ndcg@20']:.4f} |") in md
    assert set(data["protocol"]["cold"]["protocols"]) == {"hybrid", "cold_only"}
    assert files["quality_bars"].stat().st_size > 1000


def test_cold_protocols_are_consistent(quality_report: dict) -> None:
    models = quality_report["models"]
    for name in ALL:
        m = models[name]
        # ranking fewer items can only lift a cold item: cold-only recall >= hybrid recall, model by model
        assert m["coldonly_recall@20"] >= m["cold_recall@20"] - 1e-12, name
    # an ID-only model scores every cold item alike (it never saw them): pessimistic ties give it nothing, even
    # in the cold-only protocol (the quick toy set has more cold items than 20)
    assert quality_report["protocol"]["cold"]["n_cold_items"] > 20
    for name in ("popularity", "ease", "itemknn", "als"):
        assert models[name]["cold_recall@20"] == 0.0 and models[name]["coldonly_recall@20"] == 0.0, name
    assert models["frozen_text"]["coldonly_recall@20"] > 0.0  # text reaches cold items


def test_best_baseline_includes_the_new_baselines(quality_report: dict) -> None:
    models = quality_report["models"]
    assert models["ease"]["kind"] == "baseline"
    assert quality_report["ratios"]["ease"]["ndcg@10"] == pytest.approx(
        models["ease"]["ndcg@10"] / quality_report["best_baseline"]["ndcg@10"])
    assert all(quality_report["ratios"][n]["ndcg@10"] <= 1.0 + 1e-12 for n in models if models[n]["kind"] == "baseline")
    assert models["ease"]["grid_points"] == {"tried": 2, "in_grid": 2}


def _poisoned(protocol, seed: int = 7):
    """The same protocol with every test answer (and the split's test events) replaced by another item."""
    import dataclasses

    import numpy as np

    rng = np.random.default_rng(seed)
    n_items = protocol.dataset.n_items
    targets = (protocol.test.targets + rng.integers(1, n_items, len(protocol.test.targets))) % n_items
    split_test = dataclasses.replace(protocol.split.test, item=targets.astype(protocol.split.test.item.dtype))
    return dataclasses.replace(protocol, test=dataclasses.replace(protocol.test, targets=targets),
                               split=dataclasses.replace(protocol.split, test=split_test))


TUNED = ("itemknn", "ease", "als", "bpr", "sasrec")


def test_tuning_never_reads_the_test_split(ml_tiny_dir: Path) -> None:
    from recengine.bench.quality import QualityRun

    cfg = QualityConfig(data=str(ml_tiny_dir), profile="quick", models=TUNED, cold=False, threads=1, quiet=True)
    clean_run, poisoned_run = QualityRun(cfg), QualityRun(cfg)
    _, protocol, _ = clean_run.prepare()
    poisoned = _poisoned(protocol)
    assert (poisoned.test.targets != protocol.test.targets).all()
    for name in TUNED:
        clean_run.run_baseline(name, protocol, None, None)
        poisoned_run.run_baseline(name, poisoned, None, None)
    changed = 0
    for name in TUNED:
        a, b = clean_run.outcomes[name], poisoned_run.outcomes[name]
        assert len(a.trials) >= 1
        strip = [{k: t[k] for k in ("params", "valid_ndcg@10", "best_epoch", "epochs_run")} for t in a.trials]
        assert strip == [{k: t[k] for k in ("params", "valid_ndcg@10", "best_epoch", "epochs_run")}
                         for t in b.trials], f"{name}: tuning moved when the test split changed"
        assert a.params == b.params and a.valid_ndcg == b.valid_ndcg
        changed += a.metrics["ndcg@10"] != b.metrics["ndcg@10"]
    assert changed >= 3  # the poison reached the test metrics, so the check above was not vacuous


def test_tuning_budget_cuts_the_grid_and_says_so(ml_tiny_dir: Path) -> None:
    from recengine.bench.quality import QualityRun

    cfg = QualityConfig(data=str(ml_tiny_dir), profile="quick", models=("itemknn",), cold=False, quiet=True,
                        tune_budget_s=1e-9)
    run = QualityRun(cfg)
    _, protocol, _ = run.prepare()
    run.run_baseline("itemknn", protocol, None, None)
    entry = run.outcomes["itemknn"].entry()
    assert entry["grid_points"] == {"tried": 1, "in_grid": 3}
    assert any("budget" in n and "1 of 3" in n for n in run.notes)
    with pytest.raises(Exception, match="tune-budget"):
        QualityConfig(models=("itemknn",), tune_budget_s=-1.0).validate()


def test_cli_quality_subset(ml_tiny_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "q.json"
    result = CliRunner().invoke(cli, ["bench", "quality", str(ml_tiny_dir), "--profile", "quick", "--models",
                                      "popularity,itemknn", "--no-cold", "--json", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert set(data["models"]) == {"popularity", "itemknn"} and data["target"] is None
    assert "cold_recall@20" not in data["models"]["popularity"]


def test_cli_quality_bad_input(ml_tiny_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["bench", "quality", str(ml_tiny_dir), "--models", "popularity,magic"])
    assert result.exit_code == 2 and "unknown model(s) magic" in result.output
    result = runner.invoke(cli, ["bench", "quality", str(tmp_path / "missing"), "--models", "popularity"])
    assert result.exit_code == 2 and "no such data directory" in result.output
    result = runner.invoke(cli, ["bench", "quality", str(ml_tiny_dir), "--set", "user.epochs"])
    assert result.exit_code == 2 and "KEY=VALUE" in result.output


def test_recengine_is_trained_with_the_exports_data_defaults(quality_report: dict, ml_tiny_dir: Path,
                                                            tiny_encoder_dir: Path) -> None:
    """The bench scores what `recengine export` ships: the same `adapt` decisions on the bench's split."""
    from recengine.bench.protocol import Protocol
    from recengine.bench.quality import _export_config
    from recengine.data import load_dataset
    from recengine.export.adapt import adapt_to_data
    from recengine.export.align import resolve_source

    cfg = QualityConfig(data=str(ml_tiny_dir), profile="quick", encoder=str(tiny_encoder_dir), threads=1, quiet=True)
    dataset = load_dataset(ml_tiny_dir)
    ecfg = _export_config(cfg)
    split = Protocol.build(dataset, cfg.seed).split
    _, adapted = adapt_to_data(ecfg, dataset, split, resolve_source(ecfg.encoder, Path("."), ecfg.seed))
    expected = [{"key": d["key"], "value": d["value"]} for d in adapted.to_manifest()["decisions"]]
    assert expected, "the tiny data set should trigger at least one decision (short histories)"
    for name in ("recengine_fp32", "recengine_int8"):
        assert quality_report["models"][name]["params"]["adapt"] == expected


def test_a_variant_dropped_at_export_is_served_in_fp32_and_said(ml_tiny_dir: Path, tiny_encoder_dir: Path) -> None:
    """Where int8 fails parity (texts that quantise badly), the bench's recengine_int8 row is what a host
    asking for int8 gets: fp32 for the dropped models. The report says so instead of failing the run."""
    cfg = QualityConfig(data=str(ml_tiny_dir), profile="quick", encoder=str(tiny_encoder_dir), threads=1, quiet=True,
                        models=("popularity", "recengine"), variants=("fp32", "int8"), cold=False,
                        export_overrides={"parity.int8_mean_cos": 1.0 + 1e-9})  # int8 is never exact
    report = run_quality(cfg)
    fp32, int8 = report["models"]["recengine_fp32"], report["models"]["recengine_int8"]
    assert int8["ndcg@10"] == pytest.approx(fp32["ndcg@10"])  # every model fell back to fp32
    dropped = [n for n in report["notes"] if "failed its parity check and was dropped" in n]
    assert {n.split(" failed")[0].split("the int8 ")[1] for n in dropped} == {"encoder", "item_head", "user_tower",
                                                                           "fusion"}
