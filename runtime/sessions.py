"""ONNX Runtime sessions: execution-provider choice, thread settings, and the GPU fast path.

Why this module exists: ORT silently falls back to the CPU when the CUDA libraries it was built against are
missing or mismatched, so asking for CUDA proves nothing. We look at what each session actually got
(`session.get_providers()`): `device="cuda"` then fails loudly, `"auto"` falls back with a warning.

On the CPU every session is created once with explicit threads (intra-op = `threads`, inter-op = 1, graph
optimisation ALL, sequential execution): per-request overhead matters more than parallelism inside one tiny
graph. On the GPU sessions get a bounded arena (`gpu_mem_limit`) and, where the graph allows it, CUDA
graphs replayed per (batch, sequence) bucket through IO binding (see `CudaGraphRunner`).
"""

from __future__ import annotations

import logging
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._deps import require
from .errors import BundleError, DeviceError, RequestError

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
DEVICES = ("auto", "cpu", "cuda")


def ort() -> Any:
    """The onnxruntime module, or a DependencyError naming the extra to install."""
    return require("onnxruntime", "serving a recengine bundle")


@dataclass(frozen=True)
class SessionConfig:
    """How sessions are created (one config per engine)."""

    device: str = "auto"
    """"auto" (CUDA when it really works, else CPU with a warning), "cpu" or "cuda" (fail if unavailable)."""
    threads: int | None = None
    """intra-op threads on the CPU; None lets ORT choose (all physical cores)."""
    gpu_mem_limit: int = 2 * 1024**3
    """Upper bound of the CUDA memory arena, bytes."""
    cuda_graphs: bool = True
    """Capture CUDA graphs per input-shape bucket on the GPU (needs every node on the CUDA EP)."""
    device_id: int = 0


def validate_device(device: str) -> str:
    if not isinstance(device, str) or device.lower() not in DEVICES:
        raise RequestError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    return device.lower()


def cuda_available() -> bool:
    """Whether this onnxruntime build lists the CUDA execution provider at all."""
    return CUDA in ort().get_available_providers()


def resolve_device(device: str) -> str:
    """Pick "cpu" or "cuda" before any session exists (a session may still fall back; see `make_session`)."""
    device = validate_device(device)
    if device == "cpu":
        return "cpu"
    if cuda_available():
        return "cuda"
    if device == "cuda":
        raise DeviceError(
            "device='cuda' asked for, but this onnxruntime build has no CUDAExecutionProvider "
            f"(available: {', '.join(ort().get_available_providers())}); install 'recengine[gpu]' "
            "(onnxruntime-gpu) or use device='cpu'"
        )
    log.info("no CUDAExecutionProvider in this onnxruntime build: serving on the CPU")
    return "cpu"


def session_options(config: SessionConfig) -> Any:
    rt = ort()
    opts = rt.SessionOptions()
    opts.graph_optimization_level = rt.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = rt.ExecutionMode.ORT_SEQUENTIAL
    opts.inter_op_num_threads = 1
    if config.threads is not None:
        if not isinstance(config.threads, int) or config.threads < 1:
            raise RequestError(f"threads must be a positive integer or None, got {config.threads!r}")
        opts.intra_op_num_threads = config.threads
    opts.log_severity_level = 3
    return opts


def cuda_provider_options(config: SessionConfig, cuda_graph: bool) -> dict[str, str]:
    return {
        "device_id": str(config.device_id),
        "gpu_mem_limit": str(int(config.gpu_mem_limit)),
        "arena_extend_strategy": "kSameAsRequested",
        "cudnn_conv_algo_search": "HEURISTIC",
        "do_copy_in_default_stream": "1",
        "enable_cuda_graph": "1" if cuda_graph else "0",
    }


@dataclass
class Session:
    """An ORT session plus what it really runs on."""

    name: str
    session: Any
    provider: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    cuda_graph: bool = False
    path: str = ""

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> list[np.ndarray]:
        try:
            return self.session.run(outputs, feeds)
        except Exception as exc:  # ORT raises its own exception types for shape/type mistakes
            if type(exc).__module__.startswith("onnxruntime"):
                raise RequestError(f"model {self.name} rejected its inputs: {exc}") from None
            raise


def make_session(name: str, path: str | Path, device: str, config: SessionConfig,
                 cuda_graph: bool = False) -> Session:
    """Create a session on `device` ("cpu"/"cuda", already resolved) and check the provider it got.

    On "cuda" a session that came back without the CUDA provider raises DeviceError when the user asked for
    CUDA explicitly, and is returned as a CPU session (with a warning) for "auto".
    """
    rt = ort()
    opts = session_options(config)
    if device == "cuda":
        providers: list[Any] = [(CUDA, cuda_provider_options(config, cuda_graph)), CPU]
    else:
        providers = [CPU]
    try:
        sess = rt.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:
        if device == "cuda" and cuda_graph:
            # A graph with nodes outside the CUDA EP (shape ops, int8 kernels) cannot be captured.
            log.info("%s: CUDA graph capture not possible (%s); using plain CUDA", name, exc)
            return make_session(name, path, device, config, cuda_graph=False)
        raise BundleError(f"{path}: onnxruntime cannot load model {name} ({exc})") from None
    active = sess.get_providers()
    provider = active[0] if active else CPU
    if device == "cuda" and provider != CUDA:
        if config.device == "cuda":
            raise DeviceError(
                f"device='cuda' asked for, but onnxruntime created the {name} session on {provider} "
                "(CUDA libraries missing or mismatched: check the CUDA/cuDNN versions onnxruntime-gpu needs)"
            )
        warnings.warn(
            f"CUDA is not really active for {name} (session runs on {provider}); falling back to the CPU",
            RuntimeWarning,
            stacklevel=3,
        )
        return make_session(name, path, "cpu", config)
    return Session(
        name=name,
        session=sess,
        provider=provider,
        input_names=tuple(i.name for i in sess.get_inputs()),
        output_names=tuple(o.name for o in sess.get_outputs()),
        cuda_graph=cuda_graph and device == "cuda",
        path=str(path),
    )


def bucket(value: int, buckets: tuple[int, ...]) -> int:
    """The smallest bucket >= value (or value itself past the last bucket)."""
    for b in buckets:
        if value <= b:
            return b
    return value


@dataclass
class _Captured:
    binding: Any
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    graph_id: int


@dataclass
class CudaGraphRunner:
    """Replays one CUDA graph per input-shape bucket through IO binding.

    ORT captures a CUDA graph on the first `run_with_iobinding` of a session created with
    `enable_cuda_graph=1`; the graph is tied to the device addresses of the bound inputs and outputs, so
    each bucket owns device buffers (`OrtValue`s) that are updated in place before every replay, and each
    bucket gets its own graph id (run option `gpu_graph_id`). Callers pad inputs to the bucket shape.
    Anything that goes wrong disables the runner and the caller falls back to a plain `session.run`.
    """

    session: Session
    output_shapes: Any
    """callable(input_shapes: dict[name, shape]) -> dict[output name, (shape, dtype)]."""
    _graphs: dict[tuple, _Captured] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    disabled: bool = False

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        if self.disabled or not self.session.cuda_graph:
            return None
        rt = ort()
        key = tuple((k, v.shape, v.dtype.str) for k, v in sorted(feeds.items()))
        try:
            with self._lock:  # a captured graph's buffers are shared: one replay at a time
                cap = self._graphs.get(key)
                if cap is None:
                    cap = self._capture(rt, feeds, len(self._graphs) + 1)
                    self._graphs[key] = cap
                else:
                    for name, value in feeds.items():
                        cap.inputs[name].update_inplace(np.ascontiguousarray(value))
                run_options = rt.RunOptions()
                run_options.add_run_config_entry("gpu_graph_id", str(cap.graph_id))
                self.session.session.run_with_iobinding(cap.binding, run_options)
                # outputs come back in binding order (the order of `output_shapes`)
                return dict(zip(cap.outputs, cap.binding.copy_outputs_to_cpu()))
        except Exception as exc:  # pragma: no cover - GPU only
            log.warning("%s: CUDA graph replay failed (%s); using plain runs from now on", self.session.name, exc)
            self.disabled = True
            return None

    def _capture(self, rt: Any, feeds: dict[str, np.ndarray], graph_id: int) -> _Captured:  # pragma: no cover
        binding = self.session.session.io_binding()
        inputs = {}
        for name, value in feeds.items():
            ov = rt.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value), "cuda", 0)
            binding.bind_ortvalue_input(name, ov)
            inputs[name] = ov
        outputs = {}
        for name, (shape, dtype) in self.output_shapes({k: v.shape for k, v in feeds.items()}).items():
            ov = rt.OrtValue.ortvalue_from_shape_and_type(list(shape), dtype, "cuda", 0)
            binding.bind_ortvalue_output(name, ov)
            outputs[name] = ov
        return _Captured(binding=binding, inputs=inputs, outputs=outputs, graph_id=graph_id)
