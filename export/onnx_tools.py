"""ONNX export, optimisation, quantisation and parity checking for every recengine model.

Each model (encoder, user tower, fusion head) is described declaratively by an `OnnxModelSpec`, in the
spirit of optimum's export configs: input/output names, dtypes and symbolic shapes (from which the
dynamic axes follow), an example-input factory, optional BERT graph fusion, and parity tolerances.
`export_variants(spec, module, out_dir)` then writes `<name>.fp32.onnx`, `<name>.int8.onnx` and
`<name>.fp16.onnx` and checks them:

- fp32 against torch: max absolute difference <= `ParityConfig.fp32_atol` (1e-4);
- int8 (dynamic, per-channel, the CPU path) and fp16 (weights fp16, I/O fp32, the GPU path) against the
  fp32 ONNX model: mean and minimum row cosine above configurable thresholds.

A failed check raises `ParityError` naming model, variant, metric, value and tolerance; the returned
`VariantReport.parity` dict is what the bundle records as `metrics.parity.<model>.<check>`.

The low-level steps (`export_torch_to_onnx`, `optimize_bert`, `quantize_int8`, `convert_fp16`,
`check_parity`, `compare_onnx`, `make_session`) are public too.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recengine._deps import require
from recengine.bundle.format import TensorSpec
from recengine.errors import DeviceError, ExportError, ParityError

from .config import ParityConfig

if TYPE_CHECKING:
    import onnxruntime
    import torch

#: ONNX opset of every exported model: opset 18 breaks ONNX Runtime's shape inference for the fused
#: BERT graph, 17 is what docs/bundle.md promises.
OPSET = 17
VARIANTS: tuple[str, ...] = ("fp32", "int8", "fp16")

TensorDict = dict[str, "torch.Tensor"]
ExampleFactory = Callable[[Mapping[str, int], int], TensorDict]


@dataclass(frozen=True)
class Int8Config:
    """Dynamic INT8 quantisation settings.

    per_channel: one scale per output channel (per-tensor costs far more accuracy: MiniLM 0.972 mean cosine
    against 0.993).
    reduce_range: 7-bit weights. On x86 CPUs without VNNI (AVX2 only), ONNX Runtime's u8 x s8 integer
    kernels add pairs of products in saturating int16; full-range int8 weights then overflow and wreck
    accuracy (measured on an AVX2 EPYC: a small scorer drops from 0.9996 to 0.975 mean cosine). 7-bit
    weights cannot overflow and cost nothing in speed: ONNX Runtime picks its kernel from the CPU, not
    from the weights (measured on an AVX-512 VNNI EPYC, calls interleaved in one process: 7-bit 1.00x the
    full-range recipe at 19 and at 32 tokens, bench/results/2026-11-30-encoder-cpu-2core/), so they are
    the portable default and the bundle serves INT8 on every CPU (`recengine.cpu_features`).
    weight_type: "qint8" (signed) or "quint8". quint8 runs ONNX Runtime's u8 x u8 kernel, which has no
    VNNI form: measured 1.5-1.7x slower than qint8 on the VNNI CPU.
    op_types: operator types to quantise (None: ONNX Runtime's default set, incl. the fused Attention and
    EmbedLayerNormalization; leaving Attention in fp32 measured 1.3-1.4x slower; the int8 embedding table
    keeps the file 4x smaller at the same speed).
    """

    per_channel: bool = True
    reduce_range: bool = True
    weight_type: str = "qint8"
    op_types: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.weight_type not in {"qint8", "quint8"}:
            raise ExportError(f"Int8Config.weight_type must be 'qint8' or 'quint8', got {self.weight_type!r}")

    def manifest(self) -> dict[str, Any]:
        return {
            "per_channel": self.per_channel,
            "reduce_range": self.reduce_range,
            "weight_type": self.weight_type,
            "op_types": list(self.op_types) if self.op_types is not None else None,
        }


@dataclass(frozen=True)
class BertOptimization:
    """Run `onnxruntime.transformers.optimizer.optimize_model` so Attention, EmbedLayerNormalization,
    SkipLayerNormalization and BiasGelu fuse (534 -> ~60 nodes for MiniLM)."""

    num_heads: int
    hidden_size: int
    model_type: str = "bert"


@dataclass(frozen=True)
class OnnxModelSpec:
    """Declarative description of one exported model.

    `example_inputs(sizes, seed)` returns torch inputs keyed by input name for the given sizes of the
    symbolic axes (e.g. {"B": 2, "T": 9}); the module's `forward` takes the inputs positionally in
    `inputs` order and returns the outputs in `outputs` order (a tensor or a tuple).
    `trace_sizes` are the axis sizes used to trace the export; `parity_sizes` lists several sizes the
    parity check runs at, so a wrongly frozen dynamic axis fails the check.
    """

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    example_inputs: ExampleFactory
    trace_sizes: Mapping[str, int]
    parity_sizes: tuple[Mapping[str, int], ...] = ()
    parity: ParityConfig = field(default_factory=ParityConfig)
    optimization: BertOptimization | None = None
    int8: Int8Config = field(default_factory=Int8Config)
    variants: tuple[str, ...] = VARIANTS
    opset: int = OPSET

    def __post_init__(self) -> None:
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown or "fp32" not in self.variants:
            raise ExportError(f"model {self.name!r}: variants must include fp32 and be among {VARIANTS}, "
                              f"got {self.variants}")
        names = [t.name for t in (*self.inputs, *self.outputs)]
        if len(set(names)) != len(names):
            raise ExportError(f"model {self.name!r}: input/output names must be unique, got {names}")
        axes = {a for t in (*self.inputs, *self.outputs) for a in t.shape if isinstance(a, str)}
        missing = axes - set(self.trace_sizes)
        if missing:
            raise ExportError(f"model {self.name!r}: trace_sizes lacks symbolic axes {sorted(missing)}")

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """torch.onnx `dynamic_axes` derived from the symbolic dimensions."""
        axes: dict[str, dict[int, str]] = {}
        for t in (*self.inputs, *self.outputs):
            dyn = {i: a for i, a in enumerate(t.shape) if isinstance(a, str)}
            if dyn:
                axes[t.name] = dyn
        return axes

    def manifest(self) -> dict[str, Any]:
        """`models.<name>.inputs/outputs` of the bundle manifest."""
        return {"inputs": [t.manifest() for t in self.inputs], "outputs": [t.manifest() for t in self.outputs]}

    def parity_inputs(self, seed: int = 0) -> list[TensorDict]:
        sizes = self.parity_sizes or (self.trace_sizes,)
        return [self.example_inputs(s, seed + i) for i, s in enumerate(sizes)]


@dataclass
class VariantReport:
    """What `export_variants` produced: files, parity metrics, graph statistics and timings."""

    name: str
    paths: dict[str, Path]
    parity: dict[str, float]
    graph: dict[str, Any]
    timings: dict[str, float]
    spec: OnnxModelSpec | None = None
    dropped: dict[str, str] = field(default_factory=dict)
    """Reduced-precision variants built but removed because they failed parity -> the failure message
    (`ParityConfig.drop_failed_variants`); the manifest records them in `metrics.parity.<model>.dropped`."""

    def manifest_entry(self, bundle_root: str | Path | None = None) -> dict[str, Any]:
        """`models.<name>` of the manifest: inputs, outputs, variants (path relative to the bundle root,
        bytes), and the graph statistics (`fused_ops`, node counts) when the graph was optimised."""
        root = Path(bundle_root) if bundle_root is not None else None
        variants = {}
        for variant, path in self.paths.items():
            rel = path.relative_to(root).as_posix() if root is not None else path.name
            variants[variant] = {"path": rel, "bytes": path.stat().st_size}
        entry: dict[str, Any] = dict(self.spec.manifest()) if self.spec is not None else {}
        if self.spec is not None and "int8" in variants:
            variants["int8"]["quantization"] = self.spec.int8.manifest()
        entry["variants"] = variants
        if "fused_ops" in self.graph:
            entry["fused_ops"] = self.graph["fused_ops"]
        entry["nodes"] = {k: v for k, v in self.graph.items() if k.startswith("nodes_")}
        return entry


def _onnxruntime() -> Any:
    return require("onnxruntime", "running ONNX models")


def make_session(path: str | Path, threads: int = 1, device: str = "cpu") -> onnxruntime.InferenceSession:
    """An ONNX Runtime session with `threads` intra-op threads on "cpu" or "cuda".

    CUDA is verified, never assumed: if ONNX Runtime cannot place the session on the CUDA provider a
    `DeviceError` is raised instead of silently running on the CPU.
    """
    ort = _onnxruntime()
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"ONNX model {path} does not exist")
    if threads < 0:
        raise ExportError(f"threads must be >= 0 (0 = ONNX Runtime default), got {threads}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if device == "cpu":
        providers = ["CPUExecutionProvider"]
    elif device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise DeviceError(
                "device 'cuda' requested but this onnxruntime has no CUDAExecutionProvider "
                "(install 'recengine[gpu]', i.e. onnxruntime-gpu, instead of onnxruntime)"
            )
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    else:
        raise DeviceError(f"unsupported device {device!r}: use 'cpu' or 'cuda'")
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise ExportError(f"ONNX Runtime cannot load {path} on {device}: {exc}") from exc
    if device == "cuda" and session.get_providers()[0] != "CUDAExecutionProvider":
        raise DeviceError(f"ONNX Runtime placed {path.name} on {session.get_providers()[0]}, not CUDA")
    return session


def export_torch_to_onnx(
    module: torch.nn.Module,
    example_inputs: Mapping[str, torch.Tensor],
    output_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]],
    path: str | Path,
    opset: int = OPSET,
) -> Path:
    """Trace `module(*example_inputs.values())` to ONNX (TorchScript exporter, `dynamo=False`).

    The TorchScript exporter at opset 17 gives the graph pattern the ONNX Runtime BERT fusions match;
    the module is put in eval mode and the input order is the dict's order.
    """
    import torch

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings about python control flow on shapes
            torch.onnx.export(
                module,
                tuple(example_inputs.values()),
                str(out),
                input_names=list(example_inputs),
                output_names=list(output_names),
                dynamic_axes={k: dict(v) for k, v in dynamic_axes.items()},
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(f"torch.onnx.export of {type(module).__name__} to {out} failed: {exc}") from exc
    finally:
        module.train(was_training)
    return out


def count_nodes(path: str | Path) -> int:
    """Number of nodes of the ONNX graph at `path` (top-level graph)."""
    import onnx

    return len(onnx.load(str(path), load_external_data=False).graph.node)


def graph_op_counts(path: str | Path, after_ort: bool = False) -> dict[str, int]:
    """Node count per operator type of the ONNX graph at `path`; with `after_ort`, of the graph ONNX Runtime
    actually runs on the CPU (ORT_ENABLE_ALL, one thread): there each quantised MatMulInteger with its
    DynamicQuantizeLinear and scale Muls becomes one DynamicQuantizeMatMul, which is how a recipe's speed
    is read off its graph (docs/export.md)."""
    import collections
    import tempfile

    import onnx

    if not after_ort:
        graph = onnx.load(str(path), load_external_data=False).graph
        return dict(collections.Counter(n.op_type for n in graph.node))
    ort = _onnxruntime()
    with tempfile.TemporaryDirectory(prefix="recengine-ortopt-") as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return graph_op_counts(Path(tmp) / "optimized.onnx")


def optimize_bert(src: str | Path, dst: str | Path, optimization: BertOptimization) -> dict[str, Any]:
    """Fuse the BERT subgraphs with ONNX Runtime's transformer optimiser (Python fusions only, so the
    result runs on every execution provider) and return node counts and fused-operator statistics."""
    from onnxruntime.transformers.optimizer import optimize_model

    before = count_nodes(src)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = optimize_model(
            str(src),
            model_type=optimization.model_type,
            num_heads=optimization.num_heads,
            hidden_size=optimization.hidden_size,
            opt_level=0,
            use_gpu=False,
        )
    fused = {k: int(v) for k, v in model.get_fused_operator_statistics().items() if v}
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    model.save_model_to_file(str(dst))
    return {"nodes_before": before, "nodes_after": len(model.model.graph.node), "fused_ops": fused}


class _DropMessages(logging.Filter):
    """Drops one known, non-actionable log line (onnxruntime's quantiser logs it on the root logger)."""

    def __init__(self, fragment: str) -> None:
        super().__init__()
        self.fragment = fragment

    def filter(self, record: logging.LogRecord) -> bool:
        return self.fragment not in record.getMessage()


def quantize_int8(src: str | Path, dst: str | Path, config: Int8Config | None = None) -> Path:
    """Dynamic INT8 quantisation (int8 weights, activations quantised on the fly): the CPU serving path.

    See `Int8Config` for why weights are per-channel and 7-bit (`reduce_range`) by default.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    cfg = config or Int8Config()
    out = Path(dst)
    out.parent.mkdir(parents=True, exist_ok=True)
    # The fused com.microsoft operators (Attention, SkipLayerNormalization) defeat ONNX shape inference,
    # so the quantiser is told that untyped tensors are float32.
    nag = _DropMessages("pre-processing before quantization")
    logging.getLogger().addFilter(nag)
    try:
        quantize_dynamic(
            str(src),
            str(out),
            per_channel=cfg.per_channel,
            reduce_range=cfg.reduce_range,
            weight_type=QuantType.QInt8 if cfg.weight_type == "qint8" else QuantType.QUInt8,
            op_types_to_quantize=list(cfg.op_types) if cfg.op_types is not None else None,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    except Exception as exc:
        raise ExportError(f"INT8 quantisation of {src} failed: {exc}") from exc
    finally:
        logging.getLogger().removeFilter(nag)
    return out


def convert_fp16(src: str | Path, dst: str | Path) -> Path:
    """FP16 weights and compute with fp32 inputs/outputs (`keep_io_types`): the GPU path. Also loads and
    runs on ONNX Runtime CPU (slower than fp32 there: the CPU provider casts around many fp16 kernels)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    out = Path(dst)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
        onnx.save(model, str(out))
    except Exception as exc:
        raise ExportError(f"FP16 conversion of {src} failed: {exc}") from exc
    return out


def _as_tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _to_numpy(inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    out = {}
    for name, value in inputs.items():
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        out[name] = np.ascontiguousarray(value)
    return out


def run_session(session: onnxruntime.InferenceSession, inputs: Mapping[str, Any]) -> list[np.ndarray]:
    """Run a session on torch or numpy inputs; only the inputs the graph declares are fed."""
    wanted = {i.name for i in session.get_inputs()}
    feed = {k: v for k, v in _to_numpy(inputs).items() if k in wanted}
    return [np.asarray(o, dtype=np.float32) if o.dtype == np.float16 else o for o in session.run(None, feed)]


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity per row (last axis; a 1-D output is one row). Two all-zero rows count as 1."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim <= 1:
        a, b = a.reshape(1, -1), b.reshape(1, -1)
    a = a.reshape(-1, a.shape[-1])
    b = b.reshape(-1, b.shape[-1])
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    dot = (a * b).sum(axis=1)
    both_zero = (na == 0) & (nb == 0)
    cos = np.where(both_zero, 1.0, dot / np.maximum(na * nb, 1e-30))
    return cos


def _real_tokens(output: np.ndarray, batch: Mapping[str, Any]) -> np.ndarray:
    """A per-token output ([B, T, ...] beside an `attention_mask` [B, T]) at its real tokens only: what
    padding positions hold is never read (attention and pooling mask them), and reduced precision leaves
    them anywhere (MiniLM's INT8 hidden states: cosine 0.99 at real tokens, 0.68 at padding)."""
    mask = batch.get("attention_mask") if isinstance(batch, Mapping) else None
    if mask is None or output.ndim < 3:
        return output
    m = mask.detach().cpu().numpy() if hasattr(mask, "detach") else np.asarray(mask)
    if tuple(output.shape[:2]) != tuple(m.shape):
        return output
    return output[m.astype(bool)]


def _fail(model: str, variant: str, metric: str, value: float, tolerance: str) -> ParityError:
    return ParityError(
        f"parity check failed for model '{model}', variant '{variant}': {metric} = {value:.6g} "
        f"(tolerance: {tolerance})"
    )


def check_parity(
    torch_fn: Callable[..., Any],
    onnx_path: str | Path,
    inputs: Sequence[Mapping[str, torch.Tensor]] | Mapping[str, torch.Tensor],
    tolerance: float | ParityConfig = 1e-4,
    *,
    model: str | None = None,
    output_names: Sequence[str] | None = None,
    raise_on_failure: bool | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Compare an fp32 ONNX model with its torch original on each batch of `inputs`.

    `torch_fn(*batch.values())` must return the outputs in the ONNX output order. Returns
    `{"fp32_max_abs": worst, "per_output": {name: max_abs}}`; raises `ParityError` when the worst
    difference exceeds the tolerance (unless `raise_on_failure` is False).
    """
    import torch

    if isinstance(inputs, Mapping):  # one batch given as a plain dict
        inputs = [inputs]
    cfg = tolerance if isinstance(tolerance, ParityConfig) else ParityConfig(fp32_atol=float(tolerance))
    do_raise = cfg.raise_on_failure if raise_on_failure is None else raise_on_failure
    name = model or Path(onnx_path).name.split(".")[0]
    session = make_session(onnx_path, threads=1, device=device)
    names = list(output_names) if output_names is not None else [o.name for o in session.get_outputs()]
    per_output: dict[str, float] = {n: 0.0 for n in names}
    scaled: dict[str, float] = {n: 0.0 for n in names}
    for batch in inputs:
        with torch.no_grad():
            expected = [t.detach().float().cpu().numpy() for t in _as_tuple(torch_fn(*batch.values()))]
        got = run_session(session, batch)
        if len(got) != len(expected):
            raise _fail(name, "fp32", "number of outputs", len(got), f"torch returns {len(expected)}")
        for n, e, g in zip(names, expected, got):
            if e.shape != g.shape:
                raise ParityError(
                    f"parity check failed for model '{name}', variant 'fp32': output '{n}' has shape "
                    f"{g.shape} in ONNX but {e.shape} in torch"
                )
            diff = float(np.max(np.abs(e - g))) if e.size else 0.0
            per_output[n] = max(per_output[n], diff)
            # per-token hidden states run to tens: there float32 rounding alone exceeds an absolute 1e-4
            big = float(np.max(np.abs(e))) if e.ndim >= 3 and e.size else 1.0
            scaled[n] = max(scaled[n], diff / max(1.0, big))
    worst = max(per_output.values(), default=0.0)
    worst_scaled = max(scaled.values(), default=0.0)
    if do_raise and not worst_scaled <= cfg.fp32_atol:
        raise _fail(name, "fp32", "max abs difference vs torch (per-token outputs: relative above 1)", worst_scaled,
                    f"<= {cfg.fp32_atol:g}")
    return {"fp32_max_abs": worst, "per_output": per_output}


def compare_onnx(
    reference_path: str | Path,
    variant_path: str | Path,
    inputs: Sequence[Mapping[str, Any]] | Mapping[str, Any],
    variant: str,
    config: ParityConfig | None = None,
    *,
    model: str | None = None,
    device: str = "cpu",
    raise_on_failure: bool | None = None,
) -> dict[str, Any]:
    """Row-cosine agreement of a reduced-precision variant (int8/fp16) with the fp32 ONNX model.

    Returns `{"<variant>_mean_cos", "<variant>_min_cos", "<variant>_max_abs", "per_output": {...}}`
    (the worst output decides); raises `ParityError` below the configured thresholds.
    """
    if isinstance(inputs, Mapping):  # one batch given as a plain dict
        inputs = [inputs]
    cfg = config or ParityConfig()
    do_raise = cfg.raise_on_failure if raise_on_failure is None else raise_on_failure
    cfg.cosine_thresholds(variant)  # an unknown variant fails before any session is built
    name = model or Path(reference_path).name.split(".")[0]
    ref = make_session(reference_path, threads=1, device="cpu")
    var = make_session(variant_path, threads=1, device=device)
    names = [o.name for o in ref.get_outputs()]
    cosines: dict[str, list[np.ndarray]] = {n: [] for n in names}
    max_abs: dict[str, float] = {n: 0.0 for n in names}
    for batch in inputs:
        for n, r, v in zip(names, run_session(ref, batch), run_session(var, batch)):
            r, v = _real_tokens(r, batch), _real_tokens(v, batch)
            cosines[n].append(row_cosines(r, v))
            max_abs[n] = max(max_abs[n], float(np.max(np.abs(r - v))) if r.size else 0.0)
    per_output = {}
    for n in names:
        c = np.concatenate(cosines[n]) if cosines[n] else np.ones(1)
        per_output[n] = {"mean_cos": float(c.mean()), "min_cos": float(c.min()), "max_abs": max_abs[n]}
    mean_cos = min(p["mean_cos"] for p in per_output.values())
    min_cos = min(p["min_cos"] for p in per_output.values())
    report = {
        f"{variant}_mean_cos": mean_cos,
        f"{variant}_min_cos": min_cos,
        f"{variant}_max_abs": max(p["max_abs"] for p in per_output.values()),
        "per_output": per_output,
    }
    if do_raise:
        failure = variant_failure(name, variant, report, cfg)
        if failure is not None:
            raise failure
    return report


def variant_failure(model: str, variant: str, report: Mapping[str, Any], config: ParityConfig) -> ParityError | None:
    """The `ParityError` a `compare_onnx` report of `variant` deserves under `config`, or None if it passes.

    Kept apart from `compare_onnx` so the export can decide what a failure means (drop the variant or stop).
    """
    mean_tol, min_tol = config.cosine_thresholds(variant)
    mean_cos, min_cos = report[f"{variant}_mean_cos"], report[f"{variant}_min_cos"]
    if not mean_cos >= mean_tol:
        return _fail(model, variant, "mean cosine vs fp32", mean_cos, f">= {mean_tol:g}")
    if not min_cos >= min_tol:
        return _fail(model, variant, "min cosine vs fp32", min_cos, f">= {min_tol:g}")
    return None


def export_variants(
    spec: OnnxModelSpec,
    module: torch.nn.Module,
    out_dir: str | Path,
    parity_inputs: Sequence[Mapping[str, torch.Tensor]] | None = None,
    *,
    device: str = "cpu",
) -> VariantReport:
    """Export `module` per `spec` into `out_dir`, build every variant, and check parity.

    Writes `<name>.fp32.onnx` (BERT-fused when `spec.optimization` is set), `<name>.int8.onnx` and
    `<name>.fp16.onnx` (those listed in `spec.variants`). Parity runs on `parity_inputs` (real data,
    e.g. tokenised item texts) or, if None, on `spec.parity_inputs()`; fp32 vs torch runs on `device`,
    fp16 on `device` (its target), int8 on the CPU. Raises `ParityError` when fp32 disagrees with torch; an
    int8/fp16 variant that fails its cosine check is deleted and listed in `VariantReport.dropped` (or raises,
    with `ParityConfig.drop_failed_variants` False).
    The module is moved to `device` and left in eval mode (as `nn.Module.to` does, in place).
    """
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    graph: dict[str, Any] = {}
    paths: dict[str, Path] = {}
    dev = torch.device(device)
    module = module.to(dev).eval()

    def on_device(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(dev) for k, v in batch.items()}

    trace = on_device(spec.example_inputs(spec.trace_sizes, 0))
    if list(trace) != spec.input_names:
        raise ExportError(
            f"model '{spec.name}': example_inputs returned {list(trace)}, spec declares {spec.input_names}"
        )
    fp32_path = out / f"{spec.name}.fp32.onnx"
    t0 = time.perf_counter()
    if spec.optimization is not None:
        raw = out / f"{spec.name}.raw.onnx"
        export_torch_to_onnx(module, trace, spec.output_names, spec.dynamic_axes(), raw, spec.opset)
        timings["export_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        try:
            graph.update(optimize_bert(raw, fp32_path, spec.optimization))
        finally:
            raw.unlink(missing_ok=True)
        timings["optimize_s"] = time.perf_counter() - t1
    else:
        export_torch_to_onnx(module, trace, spec.output_names, spec.dynamic_axes(), fp32_path, spec.opset)
        timings["export_s"] = time.perf_counter() - t0
        graph["nodes_after"] = graph["nodes_before"] = count_nodes(fp32_path)
    paths["fp32"] = fp32_path

    if "int8" in spec.variants:
        t1 = time.perf_counter()
        paths["int8"] = quantize_int8(fp32_path, out / f"{spec.name}.int8.onnx", spec.int8)
        timings["int8_s"] = time.perf_counter() - t1
    if "fp16" in spec.variants:
        t1 = time.perf_counter()
        paths["fp16"] = convert_fp16(fp32_path, out / f"{spec.name}.fp16.onnx")
        timings["fp16_s"] = time.perf_counter() - t1

    batches = [on_device(b) for b in (parity_inputs if parity_inputs is not None else spec.parity_inputs())]
    if not batches:
        raise ExportError(f"model '{spec.name}': no parity inputs")
    t1 = time.perf_counter()
    fp32 = check_parity(
        module, fp32_path, batches, spec.parity, model=spec.name, output_names=spec.output_names, device=device
    )
    parity: dict[str, float] = {"fp32_max_abs": fp32["fp32_max_abs"]}
    details: dict[str, Any] = {"fp32": fp32["per_output"]}
    dropped: dict[str, str] = {}
    for variant in ("int8", "fp16"):
        if variant in paths:
            rep = compare_onnx(
                fp32_path,
                paths[variant],
                batches,
                variant,
                spec.parity,
                model=spec.name,
                device=device if variant == "fp16" else "cpu",
                raise_on_failure=False,
            )
            details[variant] = rep.pop("per_output")
            parity.update(rep)
            failure = variant_failure(spec.name, variant, rep, spec.parity) if spec.parity.raise_on_failure else None
            if failure is not None:
                if not spec.parity.drop_failed_variants:
                    raise failure
                # lossy, not wrong: the model serves fp32 where this variant would have served
                paths.pop(variant).unlink(missing_ok=True)
                dropped[variant] = str(failure)
    timings["parity_s"] = time.perf_counter() - t1
    graph["parity_details"] = details
    return VariantReport(name=spec.name, paths=paths, parity=parity, graph=graph, timings=timings, spec=spec,
                         dropped=dropped)


__all__ = [
    "OPSET",
    "VARIANTS",
    "BertOptimization",
    "Int8Config",
    "OnnxModelSpec",
    "ParityConfig",
    "TensorSpec",
    "VariantReport",
    "check_parity",
    "compare_onnx",
    "convert_fp16",
    "count_nodes",
    "export_torch_to_onnx",
    "export_variants",
    "graph_op_counts",
    "make_session",
    "optimize_bert",
    "quantize_int8",
    "row_cosines",
    "run_session",
    "variant_failure",
]
