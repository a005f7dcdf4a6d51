"""ItemKNN with cosine similarity (implicit's CosineRecommender), K nearest neighbours per item."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._implicit import implicit_module, single_blas_thread
from .base import Recommender, TrainData, ValidateFn


class ItemKNN(Recommender):
    """score(u, i) = sum over the user's items j of cos(j, i), keeping each item's K nearest neighbours."""

    name = "itemknn"

    @classmethod
    def grid(cls, profile: str) -> list[dict[str, Any]]:
        if profile == "quick":
            return [{"K": 20}, {"K": 100}]
        return [{"K": k} for k in (20, 50, 100, 200, 500)]

    def fit(self, data: TrainData, validate: ValidateFn | None = None) -> "ItemKNN":
        nn = implicit_module("nearest_neighbours")
        self._user_items = data.user_item_matrix()
        model = nn.CosineRecommender(K=int(self.params.get("K", 100)), num_threads=0)
        with single_blas_thread():
            model.fit(self._user_items, show_progress=False)
        self._similarity = model.similarity.tocsr()
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.asarray((self._user_items[users] @ self._similarity).todense(), dtype=np.float32)
