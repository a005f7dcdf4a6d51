"""Generic ONNX machinery (specs, export, int8/fp16 variants, parity checks, sessions) on a small
fusion-head-like model with embeddings, LayerNorm and Softmax."""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from recengine.errors import BundleError, DeviceError, ExportError, ParityError  # noqa: E402
from recengine.export.onnx_tools import (  # noqa: E402
    OnnxModelSpec,
    ParityConfig,
    TensorSpec,
    check_parity,
    compare_onnx,
    export_torch_to_onnx,
    export_variants,
    make_session,
    row_cosines,
    run_session,
)

D = 16


class TinyScorer(torch.nn.Module):
    """Scores C candidates per user with attention over candidates, a LayerNorm and a bucket embedding:
    the operator mix of the fusion head (MatMul, Softmax, LayerNormalization, Gather)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.bucket = torch.nn.Embedding(4, D)
        self.mix = torch.nn.Linear(D, D)
        self.norm = torch.nn.LayerNorm(D)
        self.out = torch.nn.Linear(D, 1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, user: torch.Tensor, items: torch.Tensor, pop_bucket: torch.Tensor) -> torch.Tensor:
        x = items + self.bucket(pop_bucket)
        attn = torch.softmax(torch.einsum("bcd,bd->bc", self.mix(x), user), dim=-1)
        h = self.norm(x * attn.unsqueeze(-1) + user.unsqueeze(1))
        return self.out(torch.relu(h)).squeeze(-1)


def _examples(sizes: Mapping[str, int], seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    b, c = sizes["B"], sizes["C"]
    return {
        "user": torch.randn(b, D, generator=g),
        "items": torch.randn(b, c, D, generator=g),
        "pop_bucket": torch.randint(0, 4, (b, c), generator=g),
    }


def _spec(**overrides) -> OnnxModelSpec:
    kwargs = dict(
        name="scorer",
        inputs=(
            TensorSpec("user", "float32", ("B", D)),
            TensorSpec("items", "float32", ("B", "C", D)),
            TensorSpec("pop_bucket", "int64", ("B", "C")),
        ),
        outputs=(TensorSpec("scores", "float32", ("B", "C")),),
        example_inputs=_examples,
        trace_sizes={"B": 2, "C": 5},
        parity_sizes=({"B": 1, "C": 3}, {"B": 6, "C": 40}),
    )
    kwargs.update(overrides)
    return OnnxModelSpec(**kwargs)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    module = TinyScorer()
    return module, export_variants(_spec(), module, out / "models"), out


def test_spec_derives_dynamic_axes_and_manifest() -> None:
    spec = _spec()
    assert spec.dynamic_axes() == {
        "user": {0: "B"},
        "items": {0: "B", 1: "C"},
        "pop_bucket": {0: "B", 1: "C"},
        "scores": {0: "B", 1: "C"},
    }
    assert spec.manifest()["inputs"][1] == {"name": "items", "dtype": "float32", "shape": ["B", "C", D]}
    assert [b["items"].shape[1] for b in spec.parity_inputs()] == [3, 40]


def test_spec_is_validated() -> None:
    with pytest.raises(ExportError, match="lacks symbolic axes"):
        _spec(trace_sizes={"B": 2})
    with pytest.raises(BundleError, match="dtype"):  # the bundle format's rule (recengine.bundle.format)
        TensorSpec("x", "float64", ("B",))
    with pytest.raises(ExportError, match="variants"):
        _spec(variants=("int8",))
    with pytest.raises(ExportError, match="unique"):
        _spec(outputs=(TensorSpec("user", "float32", ("B", D)),))


def test_export_variants_writes_checked_fp32_int8_fp16(exported) -> None:
    module, report, root = exported
    assert {v: p.name for v, p in report.paths.items()} == {
        "fp32": "scorer.fp32.onnx",
        "int8": "scorer.int8.onnx",
        "fp16": "scorer.fp16.onnx",
    }
    assert report.parity["fp32_max_abs"] <= 1e-4
    assert report.parity["int8_mean_cos"] >= 0.98 and report.parity["fp16_mean_cos"] >= 0.999
    assert set(report.timings) >= {"export_s", "int8_s", "fp16_s", "parity_s"}
    entry = report.manifest_entry(root)
    assert entry["variants"]["int8"]["path"] == "models/scorer.int8.onnx"
    assert entry["variants"]["int8"]["bytes"] == report.paths["int8"].stat().st_size
    json.dumps(entry)
    json.dumps(report.parity)


@pytest.mark.parametrize("variant", ["fp32", "int8", "fp16"])
def test_every_variant_runs_on_cpu_with_new_shapes(exported, variant) -> None:
    module, report, _ = exported
    session = make_session(report.paths[variant], threads=1)
    inputs = _examples({"B": 3, "C": 17}, seed=42)
    (scores,) = run_session(session, inputs)
    assert scores.dtype == np.float32 and scores.shape == (3, 17)  # fp16 keeps fp32 I/O
    with torch.no_grad():
        expected = module(*inputs.values()).numpy()
    tol = 1e-4 if variant == "fp32" else 0.1
    assert np.abs(scores - expected).max() <= tol * max(1.0, np.abs(expected).max())


def test_check_parity_raises_naming_model_variant_metric_and_tolerance(exported) -> None:
    module, report, _ = exported
    batches = _spec().parity_inputs()

    def off_by_a_bit(*args):
        return module(*args) + 1e-3

    with pytest.raises(ParityError) as err:
        check_parity(off_by_a_bit, report.paths["fp32"], batches, 1e-4, model="scorer")
    message = str(err.value)
    assert "scorer" in message and "fp32" in message and "max abs difference" in message and "0.0001" in message
    lenient = check_parity(off_by_a_bit, report.paths["fp32"], batches, 1e-4, raise_on_failure=False)
    assert lenient["fp32_max_abs"] == pytest.approx(1e-3, rel=0.05)
    assert check_parity(module, report.paths["fp32"], batches, 1e-4)["fp32_max_abs"] <= 1e-4
    assert check_parity(module, report.paths["fp32"], batches[0], 1e-4)["fp32_max_abs"] <= 1e-4  # one dict


def test_compare_onnx_thresholds_are_configurable(exported) -> None:
    _, report, _ = exported
    batches = _spec().parity_inputs()
    strict = ParityConfig(int8_mean_cos=1.0 + 1e-9)  # unreachable: int8 is never exact
    with pytest.raises(ParityError, match="variant 'int8': mean cosine vs fp32"):
        compare_onnx(report.paths["fp32"], report.paths["int8"], batches, "int8", strict, model="scorer")
    rep = compare_onnx(report.paths["fp32"], report.paths["fp16"], batches, "fp16")
    assert 0.999 <= rep["fp16_mean_cos"] <= 1.0 + 1e-9 and rep["fp16_min_cos"] <= rep["fp16_mean_cos"]
    assert set(rep["per_output"]) == {"scores"}


def test_a_failing_reduced_precision_variant_is_dropped_not_fatal(tmp_path) -> None:
    strict = ParityConfig(int8_mean_cos=1.0 + 1e-9)  # unreachable for int8; fp16 keeps its defaults
    report = export_variants(_spec(parity=strict), TinyScorer(), tmp_path / "drop")
    assert set(report.paths) == {"fp32", "fp16"} and list(report.dropped) == ["int8"]
    assert "variant 'int8': mean cosine vs fp32" in report.dropped["int8"]
    assert not (tmp_path / "drop" / "scorer.int8.onnx").exists()  # nothing half-kept
    assert report.parity["int8_mean_cos"] < 1.0  # what it measured stays on record
    assert set(report.manifest_entry(tmp_path)["variants"]) == {"fp32", "fp16"}

    stop = ParityConfig(int8_mean_cos=1.0 + 1e-9, drop_failed_variants=False)
    with pytest.raises(ParityError, match="variant 'int8': mean cosine vs fp32"):
        export_variants(_spec(parity=stop), TinyScorer(), tmp_path / "stop")
    keep = ParityConfig(int8_mean_cos=1.0 + 1e-9, raise_on_failure=False)  # diagnostics: keeps every variant
    assert set(export_variants(_spec(parity=keep), TinyScorer(), tmp_path / "keep").paths) == {"fp32", "int8", "fp16"}


def test_export_variants_raises_parity_error_for_a_bad_fp32_tolerance(tmp_path) -> None:
    # A tolerance of -1 can never be met: the check must fail loudly rather than pass silently.
    spec = _spec(parity=ParityConfig(fp32_atol=-1.0), variants=("fp32",))
    with pytest.raises(ParityError, match="model 'scorer', variant 'fp32'"):
        export_variants(spec, TinyScorer(), tmp_path)


def test_export_errors_are_export_errors(tmp_path) -> None:
    class Broken(torch.nn.Module):
        def forward(self, user, items, pop_bucket):
            raise RuntimeError("boom")

    with pytest.raises(ExportError, match="boom"):
        export_torch_to_onnx(Broken(), _examples({"B": 2, "C": 3}, 0), ["scores"], {}, tmp_path / "b.onnx")

    def wrong_order(sizes, seed):
        ex = _examples(sizes, seed)
        return {"items": ex["items"], "user": ex["user"], "pop_bucket": ex["pop_bucket"]}

    with pytest.raises(ExportError, match="example_inputs returned"):
        export_variants(_spec(example_inputs=wrong_order), TinyScorer(), tmp_path)


def test_make_session_errors(tmp_path, exported) -> None:
    _, report, _ = exported
    with pytest.raises(ExportError, match="does not exist"):
        make_session(tmp_path / "missing.onnx")
    with pytest.raises(DeviceError, match="unsupported device"):
        make_session(report.paths["fp32"], device="tpu")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    with pytest.raises(ExportError, match="cannot load"):
        make_session(bad)


def test_cuda_session_is_verified_not_assumed(exported) -> None:
    import onnxruntime as ort

    _, report, _ = exported
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("checks the CPU-only onnxruntime error path")
    with pytest.raises(DeviceError, match="CUDAExecutionProvider"):
        make_session(report.paths["fp32"], device="cuda")


def test_row_cosines() -> None:
    a = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    b = np.array([[2.0, 0.0], [0.0, 0.0], [-1.0, -1.0]])
    np.testing.assert_allclose(row_cosines(a, b), [1.0, 1.0, -1.0])
    np.testing.assert_allclose(row_cosines(np.ones(3), np.ones(3)), [1.0])
    assert row_cosines(np.ones((2, 3, 4)), np.ones((2, 3, 4))).shape == (6,)
