"""CPU per hop from the event loop to a worker thread and back (uvloop, a trivial call, 2 threads): asyncio's
`run_in_executor` on a `ThreadPoolExecutor` against `recengine.server.pool.EnginePool`.

    python hop.py [--hops 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import uvloop

from recengine.server.pool import EnginePool


def work(x: int) -> int:
    return x + 1


async def bench(kind: str, n: int, concurrency: int) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    call: Callable[[int], Awaitable[int]]
    if kind == "ThreadPoolExecutor":
        executor = ThreadPoolExecutor(2)
        call = lambda i: loop.run_in_executor(executor, partial(work, i))  # noqa: E731
    else:
        pool = EnginePool(2)
        call = lambda i: pool.run(work, i)  # noqa: E731

    async def client(m: int) -> None:
        for i in range(m):
            await call(i)

    await client(200)
    c0, w0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(client(n // concurrency) for _ in range(concurrency)))
    return (time.process_time() - c0) / n * 1e6, (time.perf_counter() - w0) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hops", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sys.setswitchinterval(0.0005)
    for _ in range(args.rounds):
        for kind in ("ThreadPoolExecutor", "EnginePool"):
            for concurrency in (1, 8):
                loop = uvloop.new_event_loop()
                cpu, wall = loop.run_until_complete(bench(kind, args.hops, concurrency))
                loop.close()
                print(f"{kind:18s} c={concurrency} CPU {cpu:6.1f} µs/hop, wall {wall:6.1f} µs/hop", flush=True)


if __name__ == "__main__":
    main()
