"""Latency measurement: warm-up excluded, one timer per call, percentiles over the timed calls."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Budget:
    """How long to measure one (stage, variant, batch): `requests` timed calls or `duration` seconds,
    whichever ends first (at least `min_requests` calls), after `warmup` untimed calls (cut short after a
    quarter of `duration`, keeping at least one, so slow batched calls do not spend minutes warming up)."""

    requests: int = 200
    duration: float = 10.0
    warmup: int = 5
    min_requests: int = 5


@dataclass(frozen=True)
class Timing:
    """Per-call latencies (ms) of one measurement; `batch` items per call."""

    samples_ms: np.ndarray
    batch: int

    @property
    def n(self) -> int:
        return int(self.samples_ms.shape[0])

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.samples_ms, q)) if self.n else float("nan")

    def summary(self) -> dict[str, Any]:
        """p50/p95/p99/mean in ms and throughput in items per second (batch / mean call time)."""
        mean = float(self.samples_ms.mean()) if self.n else float("nan")
        return {
            "p50_ms": round(self.percentile(50), 4),
            "p95_ms": round(self.percentile(95), 4),
            "p99_ms": round(self.percentile(99), 4),
            "mean_ms": round(mean, 4),
            "throughput_per_s": round(self.batch * 1000.0 / mean, 2) if mean > 0 else None,
            "n_requests": self.n,
        }


def measure(fn: Callable[[int], Any], batch: int, budget: Budget) -> Timing:
    """Time `fn(i)` for i = 0, 1, ... (the caller rotates inputs by i so no call reuses a cached result)."""
    warm_deadline = time.perf_counter() + budget.duration / 4
    for i in range(budget.warmup):
        fn(i)
        if time.perf_counter() > warm_deadline:
            break
    samples: list[float] = []
    deadline = time.perf_counter() + budget.duration
    i = budget.warmup
    while len(samples) < budget.requests:
        t = time.perf_counter_ns()
        fn(i)
        samples.append((time.perf_counter_ns() - t) / 1e6)
        i += 1
        if len(samples) >= budget.min_requests and time.perf_counter() > deadline:
            break
    return Timing(np.asarray(samples, dtype=np.float64), batch)


def measure_interleaved(fns: dict[str, Callable[[int], Any]], batch: int, budget: Budget) -> dict[str, Timing]:
    """Time several engines round-robin, one call each per round (the first engine rotating), so a change of
    machine load during the run hits them all alike: their ratios stay meaningful on a shared CPU, where
    timing one engine after another for `duration` seconds each can move a ratio by 20 % (measured).
    Each engine gets `budget.requests` timed calls, or fewer once `duration` x engines seconds have passed."""
    names = list(fns)
    for name in names:
        warm_deadline = time.perf_counter() + budget.duration / 4
        for i in range(budget.warmup):
            fns[name](i)
            if time.perf_counter() > warm_deadline:
                break
    samples: dict[str, list[float]] = {name: [] for name in names}
    deadline = time.perf_counter() + budget.duration * len(names)
    i = budget.warmup
    while len(samples[names[0]]) < budget.requests:
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            t = time.perf_counter_ns()
            fns[name](i)
            samples[name].append((time.perf_counter_ns() - t) / 1e6)
        i += 1
        if len(samples[names[0]]) >= budget.min_requests and time.perf_counter() > deadline:
            break
    return {name: Timing(np.asarray(s, dtype=np.float64), batch) for name, s in samples.items()}
