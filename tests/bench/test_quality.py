"""`recengine bench quality` end to end on the tiny MovieLens sample (quick profile, tiny encoder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from recengine.bench.quality import QualityConfig, run_quality
from recengine.bench.report import write_report_dir
from recengine.cli import cli

METRICS = ("hr@10", "ndcg@10", "hr@20", "ndcg@20", "mrr", "coverage@10", "tail_share@10", "cold_recall@20")
ALL = ("popularity", "itemknn", "als", "bpr", "lightgcn", "sasrec", "frozen_text", "recengine_fp32",
       "recengine_int8", "recengine_fp16")


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
        assert sum(v["popularity"]["n_queries"] for v in values.values()) == quality_report["protocol"]["n_test_queries"]


def test_onnx_fp32_matches_the_torch_model(quality_report: dict) -> None:
    m = quality_report["models"]
    assert m["recengine_fp32"]["ndcg@10"] == pytest.approx(m["recengine_torch"]["ndcg@10"], abs=1e-3)


def test_report_files(quality_report: dict, tmp_path: Path) -> None:
    files = write_report_dir(quality_report, tmp_path)
    data = json.loads(files["json"].read_text())
    assert data["models"].keys() == quality_report["models"].keys()
    md = files["markdown"].read_text()
    assert "| recengine_int8 |" in md and "NDCG@10 / best baseline" in md
    assert files["quality_bars"].stat().st_size > 1000


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
