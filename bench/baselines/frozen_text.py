"""Frozen-text baseline: the untuned encoder's item embeddings; a user is the mean of their history.

This isolates what the text encoder knows before any recengine training (no fine-tuning, no graph, no
sequence model). It is also the only baseline that can recommend items nobody has interacted with.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from .base import Recommender, TrainData, ValidateFn


class TextSource(Protocol):
    """Provides (and caches) the untuned encoder's unit item embeddings, rows = item index."""

    def item_text_embeddings(self) -> np.ndarray: ...


class FrozenText(Recommender):
    """score(u, i) = mean(emb[last `window` history items]) · emb[i]   (window 0 = whole history)."""

    name = "frozen_text"
    needs_text = True
    reads_history = True

    def __init__(self, text: TextSource, **params: Any) -> None:
        super().__init__(**params)
        self._text = text

    @classmethod
    def grid(cls, profile: str) -> list[dict[str, Any]]:
        if profile == "quick":
            return [{"window": 0}, {"window": 10}]
        return [{"window": w} for w in (0, 50, 20, 5)]

    def fit(self, data: TrainData, validate: ValidateFn | None = None) -> FrozenText:
        self._emb = np.ascontiguousarray(self._text.item_text_embeddings(), dtype=np.float32)
        self._data = data
        return self

    def use_history(self, data: TrainData) -> None:
        self._data = data

    def score(self, users: np.ndarray) -> np.ndarray:
        window = int(self.params.get("window", 0))
        profile = np.zeros((len(users), self._emb.shape[1]), np.float32)
        for row, u in enumerate(users):
            h = self._data.history(int(u))
            if window > 0:
                h = h[-window:]
            if len(h):
                profile[row] = self._emb[h].mean(0)
        return profile @ self._emb.T
