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

from recengine._deps import require

from .base import Recommender, TrainData, ValidateFn


def ease_weights(gram: np.ndarray, lam: float, overwrite: bool = False) -> np.ndarray:
    """B (float64) from the item Gram matrix X^T X and lambda > 0; `overwrite` reuses `gram`'s memory (a
    float64 C-contiguous array), which keeps MovieLens-small's peak at one 9.7k x 9.7k matrix."""
    linalg = require("scipy.linalg", "The EASE baseline")
    p = gram if overwrite and gram.dtype == np.float64 and gram.flags.c_contiguous else \
        np.array(gram, dtype=np.float64, copy=True, order="C")
    p[np.diag_indices_from(p)] += float(lam)
    # Cholesky inverse: X^T X + lambda I is symmetric positive definite for lambda > 0 (half of an LU inverse).
    # LAPACK sees the C array as its transpose (same matrix: symmetric), so "lower" there is our upper.
    potrf, potri = linalg.lapack.get_lapack_funcs(("potrf", "potri"), (p,))
    chol, info = potrf(p.T, lower=True, overwrite_a=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE: Cholesky failed (info {info}); is lambda > 0?")
    inv, info = potri(chol, lower=True, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE: inversion failed (info {info})")
    inv = inv.T  # back to C order: the upper triangle holds P
    n = inv.shape[0]
    for start in range(0, n, 1024):  # mirror the upper triangle into the lower one, a block of rows at a time
        stop = min(start + 1024, n)
        block = inv[start:stop, start:stop]
        block[:] = np.triu(block) + np.triu(block, 1).T
        inv[stop:, start:stop] = inv[start:stop, stop:].T
    diag = inv.diagonal().copy()
    inv /= -diag[None, :]
    np.fill_diagonal(inv, 0.0)
    return inv


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
