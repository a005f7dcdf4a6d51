"""`recengine export --target cpu|gpu|all`: the committed bundle holds only the variant its host needs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from recengine.cli import cli

pytest.importorskip("torch", reason="the export needs torch (the export extra)")


def _export(ml_tiny_dir: Path, tiny_encoder_dir: Path, out: Path, target: str, **overrides) -> Path:
    from recengine.export import ExportConfig, run_export

    cfg = ExportConfig.from_profile("quick").override({"encoder.path": str(tiny_encoder_dir), "quiet": True,
                                                      "target": target, **overrides})
    return run_export(ml_tiny_dir, out, cfg)


def _model_files(bundle: Path) -> list[str]:
    return sorted(p.name for p in (bundle / "models").glob("*.onnx"))


def _serves(engine) -> None:
    user = json.loads((engine.bundle_path / "users/ids.json").read_text())[0]
    recs = engine.recommend(user_id=user, k=5)
    assert len(recs) == 5
    assert len(engine.search("love story", k=3)) == 3


@pytest.fixture(scope="module")
def cpu_bundle(tmp_path_factory: pytest.TempPathFactory, ml_tiny_dir: Path, tiny_encoder_dir: Path) -> Path:
    return _export(ml_tiny_dir, tiny_encoder_dir, tmp_path_factory.mktemp("target_cpu") / "bundle", "cpu")


def test_cpu_target_keeps_only_int8(cpu_bundle: Path, tmp_path: Path) -> None:
    from recengine import Engine

    assert _model_files(cpu_bundle) == ["encoder.int8.onnx", "fusion.int8.onnx", "item_head.int8.onnx",
                                       "user_tower.int8.onnx"]
    manifest = json.loads((cpu_bundle / "manifest.json").read_text())
    assert {name: sorted(spec["variants"]) for name, spec in manifest["models"].items()} == {
        "encoder": ["int8"], "item_head": ["int8"], "user_tower": ["int8"], "fusion": ["int8"]}
    assert not [rel for rel in manifest["files"] if rel.endswith((".fp32.onnx", ".fp16.onnx"))]
    # fp32 was built and measured during the export: its validation metrics and the parity ratios stay
    assert "fp32" in manifest["metrics"]["validation"] and "int8" in manifest["metrics"]["validation"]
    assert manifest["config"]["target"] == "cpu"

    engine = Engine.open(cpu_bundle, device="cpu", threads=1)
    assert set(engine.variants.values()) == {"int8"}
    _serves(engine)
    with pytest.raises(Exception, match="no fp32 variant"):
        Engine.open(cpu_bundle, device="cpu", threads=1, variant="fp32")

    saved = engine.save(tmp_path / "saved")  # Engine.save keeps what the bundle has
    assert _model_files(saved) == _model_files(cpu_bundle)
    assert set(Engine.open(saved, device="cpu", threads=1).variants.values()) == {"int8"}


def test_gpu_target_keeps_only_fp16_and_opens_on_cpu(tmp_path: Path, ml_tiny_dir: Path,
                                                     tiny_encoder_dir: Path) -> None:
    from recengine import Engine

    bundle = _export(ml_tiny_dir, tiny_encoder_dir, tmp_path / "bundle", "gpu")
    assert _model_files(bundle) == ["encoder.fp16.onnx", "fusion.fp16.onnx", "item_head.fp16.onnx",
                                       "user_tower.fp16.onnx"]
    engine = Engine.open(bundle, device="cpu", threads=1)  # no int8/fp32: the CPU falls back to fp16
    assert set(engine.variants.values()) == {"fp16"}
    _serves(engine)


def test_int8_failing_parity_is_dropped_and_the_cpu_target_keeps_fp32(tmp_path: Path, ml_tiny_dir: Path,
                                                                      tiny_encoder_dir: Path) -> None:
    """Texts that quantise badly must not stop the export: the int8 models that fail are dropped, recorded,
    and a CPU-target bundle keeps the fp32 models instead of shipping nothing."""
    from recengine import Engine
    from recengine.cli.info import summarize

    bundle = _export(ml_tiny_dir, tiny_encoder_dir, tmp_path / "bundle", "cpu",
                     **{"parity.int8_mean_cos": 1.0 + 1e-9})  # int8 is never exact: every int8 model fails
    assert _model_files(bundle) == ["encoder.fp32.onnx", "fusion.fp32.onnx", "item_head.fp32.onnx",
                                       "user_tower.fp32.onnx"]
    manifest = json.loads((bundle / "manifest.json").read_text())
    for name in ("encoder", "item_head", "user_tower", "fusion"):
        assert list(manifest["models"][name]["variants"]) == ["fp32"]
        reason = manifest["metrics"]["parity"][name]["dropped"]["int8"]
        assert f"model '{name}', variant 'int8': mean cosine vs fp32" in reason
    # the int8 pipeline was measured as a host asking for int8 gets it: fp32 wherever int8 was dropped
    assert manifest["metrics"]["validation"]["int8"] == manifest["metrics"]["validation"]["fp32"]
    assert any("int8 dropped: failed parity, serves fp32" in line for line in summarize(manifest))
    engine = Engine.open(bundle, device="cpu", threads=1)
    assert set(engine.variants.values()) == {"fp32"}
    _serves(engine)
    asked = Engine.open(bundle, device="cpu", threads=1, variant="int8")  # what the export measured as int8
    assert set(asked.variants.values()) == {"fp32"}
    assert "dropped at export" in asked.variant_reasons["encoder"]
    with pytest.raises(Exception, match="no fp16 variant"):  # never built for this target: still an error
        Engine.open(bundle, device="cpu", threads=1, variant="fp16")


@pytest.mark.parametrize("args,fragment", [
    (["--target", "tpu"], "target must be cpu, gpu or all"),
    (["--target", "gpu", "--set", "variants=fp32,int8"], "target 'gpu' keeps (fp16)"),
])
def test_bad_target_is_one_line_exit_2(tmp_path: Path, args: list[str], fragment: str) -> None:
    result = CliRunner().invoke(cli, ["export", "--out", str(tmp_path / "b"), "--profile", "quick", *args],
                                prog_name="recengine")
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.output
    assert list(tmp_path.iterdir()) == []


def test_target_all_is_the_default() -> None:
    from recengine.export import ExportConfig

    assert ExportConfig.from_profile("quick").target == "all"
    assert ExportConfig.from_profile("standard").target == "all"


def test_a_split_encoders_two_models_keep_the_same_variant(tmp_path: Path) -> None:
    """Where the encoder's int8 failed parity but the item head's passed, `--target cpu` keeps fp32 of both:
    the runtime serves the head in the encoder's variant, and a head without it would be a mixed pair."""
    from recengine.export import ExportConfig
    from recengine.export.pipeline import drop_untargeted_variants

    models = {}
    for name, variants in (("encoder", ("fp32",)), ("item_head", ("fp32", "int8")), ("fusion", ("fp32", "int8"))):
        models[name] = {"variants": {}}
        for v in variants:
            rel = f"models/{name}.{v}.onnx"
            (tmp_path / "models").mkdir(exist_ok=True)
            (tmp_path / rel).write_bytes(b"x")
            models[name]["variants"][v] = {"path": rel}
    cfg = ExportConfig.from_profile("quick").override({"target": "cpu"})
    removed = drop_untargeted_variants(tmp_path, {"models": models}, cfg)
    assert {n: sorted(m["variants"]) for n, m in models.items()} == {
        "encoder": ["fp32"], "item_head": ["fp32"], "fusion": ["int8"]}
    assert sorted(removed) == ["models/fusion.fp32.onnx", "models/item_head.int8.onnx"]
    assert not (tmp_path / "models/item_head.int8.onnx").exists()
