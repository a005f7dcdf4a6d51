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


def _blocked_pool(max_batch: int = 16) -> tuple[EnginePool, threading.Event]:
    """A one-thread pool held busy until the event is set."""
    pool = EnginePool(1, max_batch=max_batch)
    release = threading.Event()
    pool.submit(release.wait, 10)
    return pool, release


def test_queued_batchable_jobs_run_as_one_call() -> None:
    """Jobs of one batch function queued behind a busy thread run in one call (at most `max_batch`), each
    future gets its own outcome, an error of one job stays with that job, and another job queued among
    them runs after the batch that precedes it."""
    pool, release = _blocked_pool(max_batch=4)
    calls: list[list[int]] = []

    def square_all(args: list[int]) -> list[tuple[object, BaseException | None]]:
        calls.append(list(args))
        return [(None, ValueError(f"odd {a}")) if a == 5 else (a * a, None) for a in args]

    async def scenario() -> list[object]:
        futures = [pool.run_batched(square_all, i) for i in range(6)]
        futures.append(pool.run(lambda: "plain"))
        futures += [pool.run_batched(square_all, i) for i in (10, 11)]
        release.set()
        return await asyncio.gather(*futures, return_exceptions=True)

    got = asyncio.run(scenario())
    pool.shutdown()
    assert got[:5] == [0, 1, 4, 9, 16] and isinstance(got[5], ValueError) and "odd 5" in str(got[5])
    assert got[6:] == ["plain", 100, 121]
    assert calls == [[0, 1, 2, 3], [4, 5], [10, 11]]


def test_a_lone_batchable_job_runs_at_once_and_a_failing_batch_fails_each_job() -> None:
    pool = EnginePool(1, max_batch=8)

    def echo(args: list[int]) -> list[tuple[object, BaseException | None]]:
        return [(a, None) for a in args]

    def broken(args: list[int]) -> list[tuple[object, BaseException | None]]:
        raise RuntimeError("defect")

    def short(args: list[int]) -> list[tuple[object, BaseException | None]]:
        return []

    async def scenario() -> list[object]:
        lone = await pool.run_batched(echo, 3)  # nothing queued: no waiting for company
        failed = await asyncio.gather(pool.run_batched(broken, 1), pool.run_batched(short, 2),
                                      return_exceptions=True)
        return [lone, *failed]

    lone, broke, wrong = asyncio.run(scenario())
    pool.shutdown()
    assert lone == 3
    assert isinstance(broke, RuntimeError) and "defect" in str(broke)
    assert isinstance(wrong, RuntimeError) and "0 outcomes for 1 jobs" in str(wrong)
    with pytest.raises(ValueError, match="max_batch"):
        EnginePool(1, max_batch=0)
