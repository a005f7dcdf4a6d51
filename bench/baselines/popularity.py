"""Most-popular baseline: every user gets the items with the most training interactions."""

from __future__ import annotations

import numpy as np

from .base import Recommender, TrainData, ValidateFn


class Popularity(Recommender):
    """Scores = training interaction counts (the floor any personalised model must clear)."""

    name = "popularity"

    def fit(self, data: TrainData, validate: ValidateFn | None = None) -> Popularity:
        self._counts = data.item_counts().astype(np.float32)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self._counts, (len(users), len(self._counts))).copy()
