"""`recengine bench latency` on the tiny bundle with few requests: schema, baselines, errors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from recengine.bench.timing import Budget, measure
from recengine.cli import cli

STAGES = {"tokenize", "encode", "user_tower", "retrieve", "score", "recommend"}
ROW_KEYS = {"stage", "variant", "batch", "p50_ms", "p95_ms", "p99_ms", "throughput_per_s", "mode", "threads"}


@pytest.fixture(scope="module")
def latency_run(tiny_bundle: Path, tiny_encoder_dir: Path,
                tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("latency")
    result = CliRunner().invoke(cli, [
        "bench", "latency", str(tiny_bundle), "--batch", "1,4", "--requests", "20", "--duration", "1",
        "--warmup", "2", "--ef", "16,64", "--torch-encoder", str(tiny_encoder_dir), "--json", str(out / "l.json"),
        "--report", str(out / "report"), "--quiet"])
    assert result.exit_code == 0, result.output
    return json.loads((out / "l.json").read_text()), out / "report"


def test_latency_schema(latency_run: tuple[dict, Path]) -> None:
    report, _ = latency_run
    assert report["schema"] == "recengine-bench-latency/1"
    assert report["device"] == "cpu" and report["provider"] == "CPUExecutionProvider"
    assert report["machine"]["cpu_count"] >= 1
    assert {r["stage"] for r in report["results"]} == STAGES
    for row in report["results"]:
        assert ROW_KEYS <= set(row)
        assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]
        assert row["throughput_per_s"] > 0 and 1 <= row["n_requests"] <= 20
        assert row["mode"] == ("single" if row["batch"] == 1 else "batched")
    variants = {(r["stage"], r["variant"]) for r in report["results"]}
    for v in ("fp32", "int8", "fp16", "torch_eager"):
        assert ("encode", v) in variants and ("user_tower", v) in variants and ("score", v) in variants
    assert ("recommend", "int8/stored") in variants and ("recommend", "int8/history") in variants
    assert ("retrieve", "exact_numpy") in variants
    assert any(v.startswith("hnsw_") and v.endswith("_ef16") for s, v in variants if s == "retrieve")


def test_speedups_and_recall_curve(latency_run: tuple[dict, Path]) -> None:
    report, _ = latency_run
    rows = {(r["stage"], r["variant"], r["batch"]): r for r in report["results"]}
    for s in report["speedups"]:
        base, mine = rows[(s["stage"], "torch_eager", s["batch"])], rows[(s["stage"], s["variant"], s["batch"])]
        assert s["speedup_p50"] == pytest.approx(base["p50_ms"] / mine["p50_ms"], rel=0.02)
    assert {(s["stage"], s["batch"]) for s in report["speedups"]} >= {("encode", 1), ("encode", 4)}
    curve = report["recall_curve"]
    forms = {c["index"] for c in curve}
    assert "mips_augment" in forms  # the form the runtime serves on ML-like vectors (stored or rebuilt)
    for form in forms:
        points = [c for c in curve if c["index"] == form]
        assert [c["ef"] for c in points] == [16, 64]
        assert all(0.0 < c["recall@10"] <= 1.0 for c in points)
        assert points[1]["recall@10"] >= points[0]["recall@10"]
    assert set(report["targets"]) == {"int8_encoder_speedup_batch1", "recommend_p99_ms_batch1"}


def test_latency_report_files(latency_run: tuple[dict, Path]) -> None:
    _, directory = latency_run
    names = {p.name for p in directory.iterdir()}
    assert {"latency.json", "latency.md", "latency_cdf.png", "recall_vs_ef.png"} <= names
    md = (directory / "latency.md").read_text()
    assert "Single request, one thread" in md and "Batched" in md and "Speed-up over torch eager" in md


def test_synthetic_items_pad_the_retrieval_stage(tiny_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    result = CliRunner().invoke(cli, [
        "bench", "latency", str(tiny_bundle), "--stages", "retrieve", "--synthetic-items", "3000", "--batch", "1",
        "--requests", "5", "--duration", "0.5", "--ef", "16", "--no-torch", "--json", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert {r["n_items"] for r in report["results"]} == {400 + 3000}


def test_cuda_fails_clearly_without_a_gpu(tiny_bundle: Path) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("a CUDA provider is available here")
    result = CliRunner().invoke(cli, ["bench", "latency", str(tiny_bundle), "--device", "cuda", "--requests", "2"])
    assert result.exit_code == 2
    assert result.output.startswith("error:") and "cuda" in result.output.lower()


def test_bad_options(tiny_bundle: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["bench", "latency", str(tiny_bundle), "--batch", "1,x"])
    assert result.exit_code == 2 and "comma-separated integers" in result.output
    result = runner.invoke(cli, ["bench", "latency", str(tiny_bundle), "--ef", "4"])
    assert result.exit_code == 2 and "--ef" in result.output
    result = runner.invoke(cli, ["bench", "latency", str(tmp_path / "nope")])
    assert result.exit_code == 2 and result.output.startswith("error:")


def test_measure_excludes_warmup_and_respects_the_budget() -> None:
    calls = []
    timing = measure(lambda i: calls.append(i), batch=4, budget=Budget(requests=7, duration=10.0, warmup=3))
    assert calls == list(range(10)) and timing.n == 7
    summary = timing.summary()
    assert summary["n_requests"] == 7 and summary["p50_ms"] <= summary["p99_ms"]
    slow = measure(lambda i: __import__("time").sleep(0.02), 1, Budget(requests=1000, duration=0.05, warmup=0,
                                                                         min_requests=2))
    assert 2 <= slow.n < 10
    assert np.all(slow.samples_ms >= 15)


def test_measure_interleaved_alternates_engines_and_keeps_their_own_times() -> None:
    from recengine.bench.timing import measure_interleaved

    order: list[str] = []
    fns = {"fast": lambda i: order.append("fast"), "slow": lambda i: (order.append("slow"), time.sleep(0.004))}
    timings = measure_interleaved(fns, 1, Budget(requests=6, duration=10.0, warmup=2))
    assert timings["fast"].n == timings["slow"].n == 6
    timed = order[4:]  # after 2 warm-up calls each
    assert all({timed[k], timed[k + 1]} == {"fast", "slow"} for k in range(0, len(timed), 2))  # one call each per round
    assert timed[0] != timed[2]  # the first engine rotates
    assert np.median(timings["slow"].samples_ms) > 3 > np.median(timings["fast"].samples_ms)


def test_a_variant_dropped_at_export_is_named_in_the_notes(tiny_bundle: Path, tmp_path: Path) -> None:
    """A bundle whose int8 encoder was dropped for failing parity still benches `--variants int8`: the
    encoder runs fp32 there (as a host asking for int8 gets it), and the report says so."""
    from tests.fixtures.hostile_bundles import copy_bundle, edit_manifest

    bundle = copy_bundle(tiny_bundle, tmp_path / "b")

    def drop(m: dict) -> None:
        m["models"]["encoder"]["variants"].pop("int8")
        m["metrics"]["parity"]["encoder"]["dropped"] = {"int8": "mean cosine vs fp32 = 0.68"}

    edit_manifest(bundle, drop)
    out = tmp_path / "l.json"
    result = CliRunner().invoke(cli, [
        "bench", "latency", str(bundle), "--variants", "int8", "--stages", "encode", "--batch", "1",
        "--requests", "5", "--duration", "1", "--warmup", "1", "--no-torch", "--no-reference", "--json", str(out),
        "--quiet"])
    assert result.exit_code == 0, result.output
    notes = json.loads(out.read_text())["notes"]
    assert any(n.startswith("int8 rows: the encoder runs fp32 (requested int8: dropped at export") for n in notes)
