"""Weighted matrix factorisation by alternating least squares (implicit's ALS, Hu et al. 2008)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._implicit import implicit_module, single_blas_thread
from .base import Recommender, TrainData, ValidateFn


class ALS(Recommender):
    """Factor model on binary confidences scaled by `alpha`; score = user_factor · item_factor."""

    name = "als"

    @classmethod
    def grid(cls, profile: str) -> list[dict[str, Any]]:
        if profile == "quick":
            return [{"factors": 16, "regularization": 0.05, "alpha": 1.0, "iterations": 10}]
        return [
            {"factors": f, "regularization": r, "alpha": a, "iterations": 20}
            for f in (64, 128)
            for r in (0.01, 0.1)
            for a in (1.0, 10.0)
        ]

    def fit(self, data: TrainData, validate: ValidateFn | None = None) -> "ALS":
        als = implicit_module("als")
        p = self.params
        with single_blas_thread():
            model = als.AlternatingLeastSquares(
                factors=int(p.get("factors", 64)),
                regularization=float(p.get("regularization", 0.05)),
                alpha=float(p.get("alpha", 1.0)),
                iterations=int(p.get("iterations", 15)),
                random_state=data.seed,
                num_threads=0,
            )
            model.fit(data.user_item_matrix(), show_progress=False)
        self._users = np.asarray(model.user_factors, dtype=np.float32)
        self._items = np.asarray(model.item_factors, dtype=np.float32)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return self._users[users] @ self._items.T
