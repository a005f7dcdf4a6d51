"""`recommend` by stored user from N threads against one engine for 4 s, lone queries scanned on the Gemm (the item
space) against numpy's einsum (Scanner(None)), alternating: requests/s and process CPU per request."""
import os
import sys
import threading
import time

import recengine
from recengine.scan import Scanner

e = recengine.Engine.open(sys.argv[1], device="cpu", threads=1)
e.warmup()
users = e.user_ids()
exact = e._state.items_index.exact
lone_gemm = Scanner.create(min_queries=1)  # lone queries on the Gemm (the engine keeps them on einsum)


def run(nthreads: int, dur: float = 4.0) -> tuple[float, float]:
    stop = time.perf_counter() + dur
    counts = [0] * nthreads

    def work(i: int) -> None:
        j = i
        while time.perf_counter() < stop:
            e.recommend(user_id=users[j % len(users)], k=10)
            j += 7
            counts[i] += 1

    c0 = os.times()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(nthreads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    c1 = os.times()
    n = sum(counts)
    return n / dur, (c1.user - c0.user + c1.system - c0.system) / n * 1e6


for _rep in range(2):
    for name, scanner in (("gemm", lone_gemm), ("einsum", Scanner(None))):
        exact.scanner = scanner
        for nt in (1, 2, 3):
            rps, cpu = run(nt)
            print(name, nt, f"threads: {rps:.0f} req/s, {cpu:.0f} us CPU/req", flush=True)
print("loadavg", open("/proc/loadavg").read().split()[:3])
