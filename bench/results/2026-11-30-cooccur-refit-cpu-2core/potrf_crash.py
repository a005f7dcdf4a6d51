# ruff: noqa: E402  (faulthandler first, so a crash in the imports is reported too)
import faulthandler
import sys
import time

faulthandler.enable()
import numpy as np
from scipy.linalg import lapack

n = int(sys.argv[1])
rng = np.random.default_rng(0)
p = np.full((n, n), 0.5)  # SPD: 0.5 J + (lam) I
p[np.diag_indices(n)] += 100.0
t = time.time()
(potrf,) = lapack.get_lapack_funcs(("potrf",), (p,))
c, info = potrf(p.T, lower=True, overwrite_a=True)
print(n, "potrf ok", info, round(time.time() - t, 1), flush=True)
