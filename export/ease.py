"""The EASE^R closed form (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data"), shared by the
export's co-occurrence lists (`recengine.export.cooccur`: EASE weights as one of the list kinds) and the
bench's EASE baseline (`recengine.bench.baselines.ease`): one implementation of the rule.

B = argmin ||X - X B||^2 + lambda ||B||^2 subject to diag(B) = 0 has the closed form
    P = (X^T X + lambda I)^-1,   B = I - P diag(1 / diag(P))   (i.e. B_ij = -P_ij / P_jj, B_jj = 0).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from recengine._deps import require

THREADED_MAX_ITEMS = 4096
"""Above this many items the Cholesky factorisation and inverse run on one BLAS thread.

Why: OpenBLAS's threaded `dpotrf` crashes the process (SIGSEGV, in its parallel path) on large matrices, a
known class of OpenBLAS bug (OpenMathLib/OpenBLAS#1413, #352). Measured on a 2-core AMD EPYC with scipy's
OpenBLAS 0.3.30 and numpy's 64-bit-index build alike: 14,000 and 15,000 items factorised, 16,384 and 19,600
crashed, and a Book-Crossing 5-core export of 19,658 books died in its co-occurrence stage; on one thread the
whole EASE inverse of 19,600 items completed in 142 s. The threshold sits well below the smallest crash seen,
since where the threaded path breaks depends on the machine's core count and kernels; below it the threads
are kept (a matrix of at most 4,096 items takes well under a second either way)."""


@contextmanager
def one_blas_thread(n: int) -> Iterator[None]:
    """BLAS (every OpenBLAS/MKL loaded so far) limited to one thread while a factorisation of `n` items runs,
    when `n` > `THREADED_MAX_ITEMS`; restored after."""
    if n <= THREADED_MAX_ITEMS:
        yield
        return
    threadpoolctl = require("threadpoolctl", "EASE's single-threaded inverse")
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        yield


def ease_weights(gram: np.ndarray, lam: float, overwrite: bool = False) -> np.ndarray:
    """B (float64) from the item Gram matrix X^T X and lambda > 0; `overwrite` reuses `gram`'s memory (a
    float64 C-contiguous array), which keeps MovieLens-small's peak at one 9.7k x 9.7k matrix."""
    linalg = require("scipy.linalg", "EASE")  # loaded first: its OpenBLAS must exist to be limited below
    p = gram if overwrite and gram.dtype == np.float64 and gram.flags.c_contiguous else \
        np.array(gram, dtype=np.float64, copy=True, order="C")
    p[np.diag_indices_from(p)] += float(lam)
    # Cholesky inverse: X^T X + lambda I is symmetric positive definite for lambda > 0 (half of an LU inverse).
    # LAPACK sees the C array as its transpose (same matrix: symmetric), so "lower" there is our upper.
    potrf, potri = linalg.lapack.get_lapack_funcs(("potrf", "potri"), (p,))
    with one_blas_thread(p.shape[0]):
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


__all__ = ["ease_weights", "one_blas_thread", "THREADED_MAX_ITEMS"]
