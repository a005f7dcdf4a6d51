"""The engine pool: results and exceptions reach the awaiting request, a cancelled request is not an
error, shutdown finishes queued work, and the `Executor` face works with `run_in_executor`."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

pytest.importorskip("starlette")

from recengine.server.pool import EnginePool  # noqa: E402


def test_results_and_exceptions_come_back_on_the_loop() -> None:
    pool = EnginePool(2)
    loop_thread: list[int] = []

    async def scenario() -> tuple[list[int], str, int]:
        loop_thread.append(threading.get_ident())
        results = await asyncio.gather(*(pool.run(lambda x: (x * x, threading.get_ident()), i) for i in range(50)))
        assert all(ident != loop_thread[0] for _, ident in results)  # the work ran off the event loop
        try:
            await pool.run(int, "not a number")
        except ValueError as exc:
            error = str(exc)
        answer = await asyncio.get_running_loop().run_in_executor(pool, sum, [1, 2, 3])
        return [r for r, _ in results], error, answer

    squares, error, answer = asyncio.run(scenario())
    pool.shutdown()
    assert squares == [i * i for i in range(50)]
    assert "not a number" in error
    assert answer == 6


def test_a_cancelled_request_does_not_break_the_pool() -> None:
    pool = EnginePool(1)
    release = threading.Event()

    async def scenario() -> int:
        slow = asyncio.ensure_future(pool.run(release.wait, 10))
        await asyncio.sleep(0.05)
        slow.cancel()  # the client went away while its engine call runs
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await slow
        return await pool.run(lambda: 7)

    assert asyncio.run(scenario()) == 7
    pool.shutdown()


def test_shutdown_finishes_queued_work_then_refuses() -> None:
    pool = EnginePool(1)
    done: list[int] = []
    futures = [pool.submit(lambda i=i: (time.sleep(0.01), done.append(i))) for i in range(5)]
    pool.shutdown(wait=True)
    assert done == [0, 1, 2, 3, 4] and all(f.done() for f in futures)
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(print)

    async def late() -> None:
        await pool.run(print)

    with pytest.raises(RuntimeError, match="shut down"):
        asyncio.run(late())
