"""The CPU's instruction sets, and which model variant serves best on it (decided at `Engine.open`).

ONNX Runtime picks its integer GEMM kernel from the CPU (MLAS `platform.cpp`), never from the model: with
AVX-512 VNNI / AVX-VNNI / AMX it runs u8 x s8 dot products in one instruction (`vpdpbusd`), without them (AVX2
only) it runs `vpmaddubsw`, which adds pairs of products in *saturating* int16. Measured (docs/export.md,
bench/results/2026-11-30-encoder-cpu-2core/): on an AVX-512 VNNI EPYC the INT8 encoder is ~2.4x its fp32 at
one thread; on AVX2-only EPYCs three earlier measurements gave 1.03x, 1.08x and 1.75x its fp32: never slower,
and 4x smaller.
So INT8 is the CPU default everywhere, with one exception decided here: an INT8 model quantised with
full-range int8 weights (`reduce_range: false`) can saturate on a CPU without int8 dot-product instructions,
so such a model is served in fp32 there when the bundle has it. recengine's export writes 7-bit weights
(`reduce_range: true`), which cannot saturate, so its bundles serve INT8 on every CPU.

Feature detection reads `/proc/cpuinfo` (Linux, no extra dependency); elsewhere the flags are unknown and the
choice falls back to the plain default (INT8), which is what every measured CPU serves best.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Flags reported in latency reports and `Engine.cpu_features` (what BLAS / ORT kernels dispatch on).
SIMD_FLAGS: tuple[str, ...] = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
    "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16", "neon", "asimd", "asimddp", "sve", "i8mm",
)
#: Instructions that multiply-accumulate int8 without int16 saturation (x86 VNNI/AMX, Arm SDOT/UDOT).
INT8_DOT_FLAGS: frozenset[str] = frozenset({"avx512_vnni", "avx_vnni", "amx_int8", "asimddp"})
X86_MACHINES = frozenset({"x86_64", "amd64", "i386", "i686", "x86"})


@dataclass(frozen=True)
class CpuFeatures:
    """What this process knows about its CPU: architecture, model name and flags (empty when unknown)."""

    arch: str
    model: str = ""
    flags: frozenset[str] = field(default_factory=frozenset)
    source: str = "unknown"
    """Where the flags came from ("/proc/cpuinfo", or "unknown" where no flag list could be read)."""

    @property
    def known(self) -> bool:
        return bool(self.flags)

    @property
    def x86(self) -> bool:
        return self.arch.lower() in X86_MACHINES

    @property
    def int8_dot_product(self) -> bool:
        """True when the CPU has int8 dot-product instructions (VNNI, AMX-INT8, Arm dotprod)."""
        return bool(self.flags & INT8_DOT_FLAGS)

    def instruction_sets(self) -> list[str]:
        """The SIMD flags that matter to ONNX Runtime's kernels, in `SIMD_FLAGS` order."""
        return [f for f in SIMD_FLAGS if f in self.flags]

    def describe(self) -> dict[str, Any]:
        return {"arch": self.arch, "model": self.model, "instruction_sets": self.instruction_sets(),
                "int8_dot_product": self.int8_dot_product, "source": self.source}


def parse_cpuinfo(text: str, arch: str | None = None) -> CpuFeatures:
    """CpuFeatures from the text of `/proc/cpuinfo` (x86 `flags`, Arm `Features`; the first processor's)."""
    flags: frozenset[str] = frozenset()
    model = ""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        if key in ("flags", "features") and not flags:
            flags = frozenset(value.split())
        elif key in ("model name", "cpu model", "hardware") and not model:
            model = value.strip()
    machine = arch if arch is not None else platform.machine()
    if not flags:
        return CpuFeatures(arch=machine, model=model)
    return CpuFeatures(arch=machine, model=model, flags=flags, source="/proc/cpuinfo")


def detect(cpuinfo: str | Path = "/proc/cpuinfo") -> CpuFeatures:
    """This machine's CpuFeatures; flags unknown (empty) where `cpuinfo` cannot be read (macOS, Windows)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return CpuFeatures(arch=platform.machine())
    return parse_cpuinfo(text)


@dataclass(frozen=True)
class VariantChoice:
    """The variant chosen for one model on this CPU and why (reported by `Engine.variant_reasons`)."""

    variant: str
    reason: str


def _full_range_int8(quantization: Mapping[str, Any] | None) -> bool:
    """True for signed 8-bit weights quantised without `reduce_range` (the ones that can saturate)."""
    if not isinstance(quantization, Mapping):
        return False
    return quantization.get("reduce_range") is False and quantization.get("weight_type", "qint8") == "qint8"


def choose_cpu_variant(available: Sequence[str], quantization: Mapping[str, Any] | None,
                       cpu: CpuFeatures) -> VariantChoice:
    """The variant a CPU serves by default: INT8, unless its weights can saturate on this CPU (see the module
    docstring) and fp32 is there; then fp32, else fp16, in the order the runtime always used."""
    if "int8" in available:
        if _full_range_int8(quantization) and cpu.x86 and cpu.known and not cpu.int8_dot_product:
            if "fp32" in available:
                return VariantChoice("fp32", "int8 has full-range int8 weights (reduce_range false), which can "
                                             "saturate in ONNX Runtime's u8s8 kernel on an x86 CPU without VNNI/AMX")
            return VariantChoice("int8", "int8 may saturate on this CPU (full-range weights, no VNNI/AMX), "
                                         "but the bundle has no fp32 variant")
        if cpu.int8_dot_product:
            why = "int8 dot-product instructions (" + ", ".join(sorted(cpu.flags & INT8_DOT_FLAGS)) + ")"
        elif cpu.known:
            why = "no int8 dot-product instructions; int8 was never slower than fp32 where measured, and 4x smaller"
        else:
            why = "CPU flags unknown; int8 is the CPU default"
        return VariantChoice("int8", why)
    for name in ("fp32", "fp16"):
        if name in available:
            return VariantChoice(name, "the bundle has no int8 variant")
    raise ValueError(f"no usable variant among {list(available)}")


__all__ = ["INT8_DOT_FLAGS", "SIMD_FLAGS", "CpuFeatures", "VariantChoice", "choose_cpu_variant", "detect",
           "parse_cpuinfo"]
