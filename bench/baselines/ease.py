"""EASE^R (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data"): a closed-form item-item model.

B = argmin ||X - X B||^2 + lambda ||B||^2 subject to diag(B) = 0 has the closed form
    P = (X^T X + lambda I)^-1,   B = I - P diag(1 / diag(P))   (i.e. B_ij = -P_ij / P_jj, B_jj = 0),
and score(u) = X_u B. One dense inversion of the item Gram matrix per lambda; only items with at least one
training interaction enter it (an item nobody interacted with has an all-zero column in X, hence a zero row
and column in B: it scores 0 for everyone, so EASE cannot recommend cold items).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recengine.export.ease import ease_weights

from .base import Recommender, TrainData, ValidateFn, require_memory

BYTES_PER_ITEM_SQUARED = 12
"""Peak of a fit: the float64 inverse (8 bytes per item pair) and its float32 copy B (4) exist together."""


def check_memory(n_items: int, available: int | None = None) -> None:
    """BaselineSkipped when the dense n x n fit would not fit in memory: at 50,000 items it needs 28 GiB,
    and the kernel would kill the whole bench run rather than raise MemoryError."""
    require_memory(BYTES_PER_ITEM_SQUARED * n_items * n_items,
                   f"EASE's dense inverse over {n_items} items with interactions", available)


class EASE(Recommender):
    """score(u, j) = sum over the user's items i of B_ij (binary user-item matrix)."""

    name = "ease"

    @classmethod
    def grid(cls, profile: str) -> list[dict[str, Any]]:
        if profile == "quick":
            return [{"lambda": 10.0}, {"lambda": 100.0}]
        # ~20 s per lambda on MovieLens-small (one dense 9.7k x 9.7k Cholesky inverse, one BLAS thread)
        return [{"lambda": lam} for lam in (50.0, 100.0, 200.0, 400.0, 800.0, 1600.0)]

    def fit(self, data: TrainData, validate: ValidateFn | None = None) -> EASE:
        lam = float(self.params.get("lambda", 100.0))
        if not lam > 0:
            raise ValueError(f"EASE lambda must be > 0, got {lam}")
        matrix = data.user_item_matrix()
        active = np.flatnonzero(np.diff(matrix.tocsc().indptr) > 0)
        check_memory(active.size)
        sub = matrix[:, active]
        gram = np.asarray((sub.T @ sub).todense(), dtype=np.float64)
        self._b = ease_weights(gram, lam, overwrite=True).astype(np.float32)
        del gram
        self._active = active
        self._matrix = sub.tocsr()
        self._n_items = data.n_items
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        out = np.zeros((len(users), self._n_items), np.float32)
        out[:, self._active] = np.asarray(self._matrix[users] @ self._b, dtype=np.float32)
        return out
