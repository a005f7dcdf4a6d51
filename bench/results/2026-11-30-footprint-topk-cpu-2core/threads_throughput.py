"""`recommend` by stored user from N threads against one engine for 4 s: requests/s and process CPU per
request. At 9df9c57 (`retrieval.GemmScan`, reverted since) it toggles the item space's exact scan between
the ONNX Runtime Gemm ("gemm") and numpy ("einsum", with the new top k); under an older runtime (PYTHONPATH
at a `git archive` of ac14f35: the top k before) it prints "old". Usage: python threads_throughput.py BUNDLE"""
import os
import sys
import threading
import time

import recengine

e = recengine.Engine.open(sys.argv[1], device="cpu", threads=1)
e.warmup()
users = e.user_ids()
exact = e._state.items_index.exact  # noqa: SLF001
gemm = getattr(exact, "_gemm", None)


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
    for name in (("gemm", "einsum") if gemm is not None else ("old",)):
        if gemm is not None:
            exact._gemm = gemm if name == "gemm" else None  # noqa: SLF001
        for nt in (1, 2, 3):
            rps, cpu = run(nt)
            print(name, nt, f"threads: {rps:.0f} req/s, {cpu:.0f} us CPU/req", flush=True)
