"""Shared plumbing for the implicit-library baselines (ItemKNN, ALS, BPR)."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Any, Iterator

from recengine._deps import require


def implicit_module(name: str) -> Any:
    """Import `implicit.<name>` or raise DependencyError naming the bench extra."""
    return require(f"implicit.{name}", "The ItemKNN/ALS/BPR baselines")


@contextmanager
def single_blas_thread() -> Iterator[None]:
    """implicit runs its own threads and is slowed (and warns) when BLAS threads on top of them."""
    threadpoolctl = require("threadpoolctl", "The implicit baselines")
    with threadpoolctl.threadpool_limits(1, "blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
