"""Shared plumbing for the implicit-library baselines, and the one base class of ALS and BPR."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np

from recengine._deps import require

from .base import Recommender, TrainData, ValidateFn


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


class ImplicitMF(Recommender):
    """A matrix-factorisation model of the `implicit` library (ALS, BPR): score = user factor · item factor.

    Training runs in chunks of `eval_every` iterations (implicit continues from the factors it already
    has). With a validation function the factors are scored after every chunk and the best chunk is kept
    (early stopping after `patience` chunks without a gain), so the grid tunes the iteration count as an
    epoch count; without one (the refit on train+valid) it runs exactly `iterations` iterations in the same
    chunks. Chunk c reseeds the sampler with `seed + c`, so every run is reproducible under the seed.
    """

    module: ClassVar[str] = ""
    """implicit sub-module holding the model class (`als`, `bpr`)."""
    model_class: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    """Constructor arguments of the implicit model and their defaults (the tunable parameters)."""
    num_threads: ClassVar[int] = 0
    """0 = all cores (ALS: per-user solves, deterministic); BPR uses 1 (Hogwild SGD is not reproducible)."""

    def _model(self, seed: int) -> Any:
        cls = getattr(implicit_module(self.module), self.model_class)
        kwargs = {k: type(v)(self.params.get(k, v)) for k, v in self.defaults.items()}
        return cls(**kwargs, iterations=1, random_state=seed, num_threads=self.num_threads)

    def fit(self, data: TrainData, validate: ValidateFn | None = None) -> ImplicitMF:
        total = int(self.params.get("iterations", 15))
        step = max(1, int(self.params.get("eval_every", total)))
        patience = int(self.params.get("patience", 2))
        matrix = data.user_item_matrix()
        model = self._model(data.seed)
        best: tuple[np.ndarray, np.ndarray] | None = None
        done = chunk = bad = 0
        with single_blas_thread():
            while done < total:
                model.iterations = min(step, total - done)
                model.random_state = data.seed + chunk
                model.fit(matrix, show_progress=False)
                done += model.iterations
                chunk += 1
                self.info.epochs_run = done
                self._users = np.asarray(model.user_factors, dtype=np.float32)
                self._items = np.asarray(model.item_factors, dtype=np.float32)
                if validate is None:
                    continue
                value = float(validate(self.score))
                if self.info.best_valid is None or value > self.info.best_valid:
                    self.info.best_valid, self.info.best_epoch, bad = value, done, 0
                    best = (self._users.copy(), self._items.copy())
                else:
                    bad += 1
                    if bad >= patience:
                        break
        if best is not None:
            self._users, self._items = best
        return self

    def refit_params(self) -> dict[str, Any]:
        """The tuned parameters with the early-stopped iteration count."""
        params = dict(self.params)
        if self.info.best_epoch is not None:
            params["iterations"] = self.info.best_epoch
        return params

    def score(self, users: np.ndarray) -> np.ndarray:
        return self._users[users] @ self._items.T
