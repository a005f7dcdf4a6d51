"""CPU ms of AdamW's step over the graph vectors [n, 32] alone (the dense update every user-tower step makes),
and of building the dense gradient buffer a row gather's backward fills (one thread, median of 10 steps)."""
import time

import torch

torch.set_num_threads(1)


def median_ms(fn, repeats: int = 12) -> float:
    times = []
    for _ in range(repeats):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    kept = sorted(times[2:])
    return round(1e3 * kept[len(kept) // 2], 2)


for n in (10_000, 50_000, 200_000, 1_000_000):
    p = torch.nn.Parameter(torch.randn(n, 32))
    opt = torch.optim.AdamW([p], lr=1e-3, weight_decay=0.0)
    p.grad = torch.randn(n, 32)

    def dense_grad(n: int = n) -> None:
        g = torch.zeros(n, 32)
        g.index_add_(0, torch.randint(0, n, (4000,)), torch.randn(4000, 32))

    print(n, "adam ms", median_ms(opt.step), "dense grad ms", median_ms(dense_grad))
