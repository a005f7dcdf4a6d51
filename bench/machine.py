"""Where a benchmark ran: CPU, cores, memory, library versions (recorded in every report)."""

from __future__ import annotations

import os
import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

_LIBS = ("recengine", "numpy", "onnxruntime", "onnxruntime-gpu", "hnswlib", "tokenizers", "torch", "transformers",
         "implicit", "scipy")


def cpu_model() -> str:
    """The CPU model name (Linux /proc/cpuinfo; platform.processor() elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def available_memory_bytes() -> int | None:
    """What the kernel says can still be allocated without swapping (`MemAvailable`, Linux), else the free
    physical pages, else None (unknown)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def git_revision() -> str | None:
    """The recengine source commit (plus "-dirty" with local changes) when running from a git checkout."""
    import subprocess
    from pathlib import Path

    pinned = os.environ.get("RECENGINE_GIT_REVISION")
    if pinned:  # a run from an exported snapshot (git archive) names its commit this way
        return pinned
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{rev}-dirty" if dirty else rev


def machine_info() -> dict[str, Any]:
    """A JSON-able description of this machine and the library versions in use."""
    versions = {}
    for lib in _LIBS:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            continue
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "hostname": platform.node(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gib": memory_gib(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "load_average_at_start": load,
        "versions": versions,
        "git_revision": git_revision(),
    }


def load_average() -> list[float] | None:
    """1/5/15-minute load averages: on a shared machine they say how much other work the timings competed with."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
