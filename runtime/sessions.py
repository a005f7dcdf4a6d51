"""ONNX Runtime sessions: execution-provider choice, thread settings, and the GPU fast path.

Why this module exists: ORT silently falls back to the CPU when the CUDA libraries it was built against are
missing or mismatched, so asking for CUDA proves nothing. We look at what each session actually got
(`session.get_providers()`): `device="cuda"` then fails loudly, `"auto"` falls back with a warning.

On the CPU every session is created once with explicit threads (intra-op = `threads`, inter-op = 1, graph
optimisation ALL, sequential execution): per-request overhead matters more than parallelism inside one tiny
graph. On the GPU sessions get a bounded arena (`gpu_mem_limit`) and, where the graph allows it, CUDA
graphs replayed per (batch, sequence) bucket through IO binding (see `CudaGraphRunner`).

Memory on the CPU (`CPU_MEMORY`, one policy per model; `CPU_ENCODE_ROWS`): ORT's CPU arena never gives
memory back, so one `add_items` batch of 64 texts left the MiniLM encoder session 89 MiB larger for good
(114 MiB after 1,000 texts). The encoder therefore encodes at most 16 texts per run and, after a call's last
run over more than one row, shrinks its arena and trims the heap (`Session.run`'s `release`); batch-1 runs
(`search`) keep their arena. Measured (bench/results/2026-11-30-ort-arena-cpu-2core/, CPU-target MovieLens
bundle, one thread): the three sessions' RSS after encoding 64 + 1,000 texts is +1 MiB instead of +114 MiB
(peak +31 MiB instead of +114), the engine's after `add_items` of 64 + 1,000 texts 181 MiB instead of 291;
`add_items` takes 0.55x (64 texts: one padded 64-row run before, four length-sorted 16-row runs now) and
0.85x (1,000) the time it took (16-row runs: 0.80x the time per text of 64-row runs); releasing after every
run instead of once per call cost 1.09-1.14x per run. Batch-1 encoder, user tower and fusion latency are
unchanged by any of these options (0.95-1.08x, noise). Turning the arena off instead
(`enable_cpu_mem_arena=False`) leaves the freed blocks in glibc's heap (+57 MiB after 1,000 texts) and the
peak at +129 MiB; ORT's `kSameAsRequested` extension (only reachable from Python through an
environment-wide shared allocator, `create_and_register_allocator`) grew more (+171 MiB). The user tower
and the fusion head keep ORT's defaults: their arenas hold ~4 MiB at batch 1 and 10-14 MiB after a batch
of 64.
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


@dataclass(frozen=True)
class CpuMemoryPolicy:
    """How one kind of CPU session uses memory: ONNX Runtime's arena and memory pattern, and whether a run
    over many rows hands what it took back to the OS afterwards. See `CPU_MEMORY` for the measured reasons."""

    arena: bool = True
    """`SessionOptions.enable_cpu_mem_arena`: ORT's BFC arena keeps every block it ever grew to (it never
    returns memory by itself), so a session's RSS stays at its largest run's working set."""
    mem_pattern: bool = True
    """`SessionOptions.enable_mem_pattern`: one planned block per input shape instead of one allocation per
    tensor."""
    release_above_rows: int | None = None
    """After a run with more rows than this (the first input's first axis; a caller running several chunks
    defers it to its last run): the arena's free regions go back (run option
    `memory.enable_memory_arena_shrinkage`, when the arena is on), then glibc `malloc_trim` hands the freed
    heap to the OS. None: never (the run's memory stays mapped for the next one)."""


DEFAULT_CPU_MEMORY = CpuMemoryPolicy()
"""ORT's own defaults, for CPU sessions `CPU_MEMORY` does not name (e.g. the exact top-k graph)."""

CPU_MEMORY: dict[str, CpuMemoryPolicy] = {
    # search runs one row and keeps its arena (~5 MiB); add_items / re-encoding runs give theirs back
    "encoder": CpuMemoryPolicy(arena=True, mem_pattern=True, release_above_rows=1),
    # a split encoder's item head runs only for items to be stored: like the encoder's batches
    "item_head": CpuMemoryPolicy(arena=True, mem_pattern=True, release_above_rows=1),
    # small graphs: ~4 MiB of arena at batch 1, 10-14 MiB after a batch of 64; latency the same without it
    "user_tower": CpuMemoryPolicy(arena=True, mem_pattern=True),
    "fusion": CpuMemoryPolicy(arena=True, mem_pattern=True),
}
"""The memory policy per session kind (the model name before the first "." of the session's name); the
measurements behind it are in the module docstring."""

CPU_ENCODE_ROWS = 16
"""Most texts per encoder run on the CPU (`ModelSet.encode`: `add_items` and re-encoding). A run's working
set grows with its rows (peak over the loaded sessions, encoding 1,024 catalogue texts: 19 MiB at 8 rows,
30 at 16, 55 at 32, 102 at 64), while the time per text does not drop past 16 rows (0.77x, 0.80x, 0.87x of 64
rows' time at 8, 16, 32)."""


def cpu_memory_policy(kind: str) -> CpuMemoryPolicy:
    """The `CpuMemoryPolicy` of a session kind ("encoder", "user_tower", "fusion"; others get ORT's defaults)."""
    return CPU_MEMORY.get(kind, DEFAULT_CPU_MEMORY)


def session_kind(name: str) -> str:
    """The model a session serves, from its name ("encoder.int8" -> "encoder")."""
    return name.partition(".")[0]


def session_options(config: SessionConfig, memory: CpuMemoryPolicy = DEFAULT_CPU_MEMORY) -> Any:
    rt = ort()
    opts = rt.SessionOptions()
    opts.graph_optimization_level = rt.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = rt.ExecutionMode.ORT_SEQUENTIAL
    opts.inter_op_num_threads = 1
    if config.threads is not None:
        if not isinstance(config.threads, int) or config.threads < 1:
            raise RequestError(f"threads must be a positive integer or None, got {config.threads!r}")
        opts.intra_op_num_threads = config.threads
    opts.enable_cpu_mem_arena = memory.arena
    opts.enable_mem_pattern = memory.mem_pattern
    opts.log_severity_level = 3
    return opts


def release_run_options(memory: CpuMemoryPolicy) -> Any:
    """Run options for a run after which the arena gives its free regions back (None without an arena, or
    for a policy that never releases)."""
    if not memory.arena or memory.release_above_rows is None:
        return None
    options = ort().RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return options


def release_heap() -> None:
    """glibc `malloc_trim`: the heap a large run freed goes back to the OS (nothing elsewhere)."""
    from .state import release_free_memory

    release_free_memory()


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
    memory: CpuMemoryPolicy | None = None
    """The CPU memory policy the session was created with (None on the GPU)."""
    _release: Any = None
    """Run options that shrink the arena after a run (`release_run_options`), made once."""

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None,
            release: bool | None = None) -> list[np.ndarray]:
        """One run. `release`: None lets the policy decide (a run over `release_above_rows` rows releases);
        False defers it (a caller running several chunks releases once, with the last); True releases
        whenever the policy releases at all. Regrowing the arena is what a release costs, so once per call
        beats once per chunk."""
        memory = self.memory
        if memory is None or memory.release_above_rows is None or not feeds:
            release = False
        elif release is None:
            release = _rows(feeds) > memory.release_above_rows
        try:
            return self.session.run(outputs, feeds, self._release if release else None)
        except Exception as exc:  # ORT raises its own exception types for shape/type mistakes
            if type(exc).__module__.startswith("onnxruntime"):
                raise RequestError(f"model {self.name} rejected its inputs: {exc}") from None
            raise
        finally:
            if release:
                release_heap()


def _rows(feeds: dict[str, np.ndarray]) -> int:
    first = next(iter(feeds.values()))
    return int(first.shape[0]) if getattr(first, "ndim", 0) else 1


def make_session(name: str, path: str | Path, device: str, config: SessionConfig,
                 cuda_graph: bool = False) -> Session:
    """Create a session on `device` ("cpu"/"cuda", already resolved) and check the provider it got.

    On "cuda" a session that came back without the CUDA provider raises DeviceError when the user asked for
    CUDA explicitly, and is returned as a CPU session (with a warning) for "auto".
    """
    rt = ort()
    memory = cpu_memory_policy(session_kind(name)) if device != "cuda" else DEFAULT_CPU_MEMORY
    opts = session_options(config, memory)
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
        memory=memory if provider == CPU else None,
        _release=release_run_options(memory) if provider == CPU else None,
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
