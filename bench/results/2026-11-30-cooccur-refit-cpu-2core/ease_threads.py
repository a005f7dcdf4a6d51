import sys
import time

import numpy as np
import scipy.linalg  # noqa

from recengine.export import ease
from recengine.export.ease import ease_weights

n = int(sys.argv[1])
g = np.full((n, n), 0.5)
g[np.diag_indices(n)] += 3.0
for label, cap in (("threaded", 10**9), ("one thread", 0), ("threaded", 10**9), ("one thread", 0)):
    ease.THREADED_MAX_ITEMS = cap
    t = time.time()
    ease_weights(g, 100.0)
    print(n, label, round(time.time() - t, 1), flush=True)
