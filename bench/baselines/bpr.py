"""Bayesian personalised ranking matrix factorisation (implicit's BPR, Rendle et al. 2009)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._implicit import implicit_module, single_blas_thread
from .base import Recommender, TrainData, ValidateFn


class BPR(Recommender):
    """Pairwise-ranking factor model; implicit appends an item-bias column (user side is 1)."""

    name = "bpr"

    @classmethod
    def grid(cls, profile: str) -> list[dict[str, Any]]:
        if profile == "quick":
            return [{"factors": 16, "learning_rate": 0.05, "regularization": 0.01, "iterations": 30}]
        return [
            {"factors": f, "learning_rate": lr, "regularization": r, "iterations": 200}
            for f in (64, 128)
            for lr in (0.01, 0.05)
            for r in (0.001, 0.01)
        ]

    def fit(self, data: TrainData, validate: ValidateFn | None = None) -> "BPR":
        bpr = implicit_module("bpr")
        p = self.params
        with single_blas_thread():
            model = bpr.BayesianPersonalizedRanking(
                factors=int(p.get("factors", 64)),
                learning_rate=float(p.get("learning_rate", 0.01)),
                regularization=float(p.get("regularization", 0.01)),
                iterations=int(p.get("iterations", 100)),
                random_state=data.seed,
                num_threads=1,  # multi-threaded BPR is Hogwild SGD: not reproducible under a seed
            )
            model.fit(data.user_item_matrix(), show_progress=False)
        self._users = np.asarray(model.user_factors, dtype=np.float32)
        self._items = np.asarray(model.item_factors, dtype=np.float32)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return self._users[users] @ self._items.T
