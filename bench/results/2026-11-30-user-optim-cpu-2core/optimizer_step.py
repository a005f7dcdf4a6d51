"""Cost of one optimizer step over an item table as the user tower trains it: a batch reads ~8k rows (2,048
shared negatives + 128 windows x 50 positions), backward, then the step. Default AdamW, foreach AdamW, fused
AdamW (what `recengine.export.optim.adam` returns) and torch's lazy SparseAdam over a sparse gradient (the
row-sparse variant measured and not kept), one thread, 64 wide.

Usage: python optimizer_step.py OUT.json
"""

from __future__ import annotations

import json
import os
import sys
import time

import torch


def main(out: str) -> None:
    torch.set_num_threads(1)
    rows = []
    for n in (10_000, 100_000, 1_000_000):
        for name in ("default", "foreach", "fused", "sparse_adam"):
            torch.manual_seed(0)
            p = torch.nn.Parameter(torch.randn(n, 64))
            idx = torch.randint(0, n, (2048 + 128 * 50,))
            if name == "sparse_adam":
                opt = torch.optim.SparseAdam([p], lr=1e-3)

                def loss(p=p, idx=idx):
                    return torch.nn.functional.embedding(idx, p, sparse=True).sum()
            else:
                kw = {} if name == "default" else {name: True}
                opt = torch.optim.AdamW([p], lr=1e-3, **kw)

                def loss(p=p, idx=idx):
                    return p[idx].sum()

            def step(opt=opt, loss=loss):
                opt.zero_grad()
                loss().backward()
                opt.step()

            step()
            times = []
            for _ in range(7):
                t = time.perf_counter()
                step()
                times.append((time.perf_counter() - t) * 1000)
            times.sort()
            rows.append({"items": n, "optimizer": name, "median_ms": round(times[3], 2), "min_ms": round(times[0], 2)})
            print(rows[-1], flush=True)
    json.dump({"torch": torch.__version__, "load_average": os.getloadavg(), "rows": rows}, open(out, "w"), indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
