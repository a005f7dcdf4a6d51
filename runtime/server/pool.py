"""The threads that run engine calls: a small dedicated executor with a cheap path back to the event loop.

CPU-bound work never runs on the event loop; every request hops to a thread and back. With
`loop.run_in_executor(ThreadPoolExecutor)` that hop builds a `concurrent.futures.Future` (a `Condition`
and its lock), chains it to an asyncio future through callbacks and wakes the loop per result; measured
on 2 cores (uvloop, a trivial call, 8 in flight) ~20-30 µs of CPU per hop, against ~6 µs here. This pool
takes (fn, args, asyncio future) from one `queue.SimpleQueue` (C, no Python lock), runs `fn` on one of
its threads and hands the result back with a single `loop.call_soon_threadsafe`, which sets the future;
uvloop coalesces the wake-ups of results that finish together.

It is also a `concurrent.futures.Executor` (`submit`), so rare callers (loading the engine at start, the
bundle watcher) can use `loop.run_in_executor(pool, ...)` like with any executor.

Coalescing (`run_batched`): a thread that takes a batchable job also takes the jobs of the same batch
function queued right behind it (up to `max_batch`, never waiting for more) and runs them as one call,
the way model servers batch dynamically: at concurrency 1 nothing changes; under load, concurrent
`POST /recommend` calls share one exact scan and one hop back to the event loop. Measured in-process on
MovieLens (9,742 items, stored users): 8 requests together cost 0.71x the CPU of 8 lone calls, 4 cost
0.82x (bench/results/2026-12-01-scan-cpu-2core). The server runs them on a lane of their own, a one-thread
pool (`ServerState.lane`): one thread coalesces everything queued and passes the GIL to the event loop
alone, where two threads taking recommend calls measured p99 6.0-7.6 ms at concurrency 8 against 3.8-5.2 ms
for one (bench/results/2026-12-01-serve-coalesce-cpu-2core); searches, similar items and writes keep the
general pool, so a 3 ms search never holds a recommend call back.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

_STOP = object()

BatchFn = Callable[[list[Any]], list[tuple[Any, BaseException | None]]]
"""A batch function: the arguments of the coalesced jobs -> one (result, error) per job, in order."""


class _Batched:
    """A queued job that may share one call of `fn` with its neighbours in the queue."""

    __slots__ = ("fn", "arg", "target")

    def __init__(self, fn: BatchFn, arg: Any, target: tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]) -> None:
        self.fn, self.arg, self.target = fn, arg, target


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    """Runs on the event loop: deliver a result unless the waiting request was cancelled meanwhile."""
    if future.cancelled():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def _resolve_all(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    """Runs on the event loop: deliver a coalesced batch's results (one wake-up for all of them)."""
    for future, result, error in outcomes:
        _resolve(future, result, error)


class EnginePool(Executor):
    """`size` threads that run engine calls; `run(fn, *args)` from the event loop returns an awaitable."""

    def __init__(self, size: int, name: str = "recengine-req", max_batch: int = 16) -> None:
        """`max_batch`: most jobs one `run_batched` call takes."""
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._shutdown = False
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, name=f"{name}_{i}", daemon=True) for i in range(size)]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        get, get_nowait = self._queue.get, self._queue.get_nowait
        item: Any = None
        while True:
            if item is None:
                item = get()
            if item is _STOP:
                return
            if type(item) is _Batched:
                batch, item = [item], None
                while len(batch) < self.max_batch:
                    try:
                        queued = get_nowait()
                    except queue.Empty:
                        break
                    if type(queued) is _Batched and queued.fn is batch[0].fn:
                        batch.append(queued)
                    else:  # run next, so no job overtakes one queued before it by more than this batch
                        item = queued
                        break
                self._run_batch(batch)
                continue
            fn, args, target = item
            item = None
            try:
                result, error = fn(*args), None
            except BaseException as exc:  # handed to the awaiting request, which maps it to a response
                result, error = None, exc
            if isinstance(target, Future):
                if error is None:
                    target.set_result(result)
                else:
                    target.set_exception(error)
                continue
            loop, future = target
            try:
                loop.call_soon_threadsafe(_resolve, future, result, error)
            except RuntimeError:  # the loop is closed: nobody waits for this answer any more
                pass

    def _run_batch(self, batch: list[_Batched]) -> None:
        try:
            outcomes = batch[0].fn([job.arg for job in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"batch function returned {len(outcomes)} outcomes for {len(batch)} jobs")
        except BaseException as exc:  # every job of the batch gets the error
            outcomes = [(None, exc)] * len(batch)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, BaseException | None]]] = {}
        for job, (result, error) in zip(batch, outcomes):
            loop, future = job.target
            by_loop.setdefault(loop, []).append((future, result, error))
        for loop, delivered in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve_all, delivered)
            except RuntimeError:  # the loop is closed: nobody waits for these answers any more
                pass

    def run_batched(self, fn: BatchFn, arg: Any) -> asyncio.Future[Any]:
        """Like `run(fn, arg)`, but the job may run in one call `fn([arg, ...])` with other jobs of the same
        `fn` queued behind it (see the module docstring); the returned future gets this job's outcome."""
        if self._shutdown:
            raise RuntimeError("the engine pool is shut down")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put(_Batched(fn, arg, (loop, future)))
        return future

    def run(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run `fn(*args)` on a pool thread; the returned future (of the running loop) gets its result."""
        if self._shutdown:
            raise RuntimeError("the engine pool is shut down")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put((fn, args, (loop, future)))
        return future

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """`concurrent.futures.Executor.submit` (for `loop.run_in_executor` and plain threads)."""
        with self._lock:
            if self._shutdown:
                raise RuntimeError("the engine pool is shut down")
            future: Future[Any] = Future()
            future.set_running_or_notify_cancel()
            self._queue.put(((lambda: fn(*args, **kwargs)), (), future))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking work; the threads finish what is queued (in order), then exit."""
        with self._lock:
            if not self._shutdown:
                self._shutdown = True
                for _ in self._threads:
                    self._queue.put(_STOP)
        if wait:
            for thread in self._threads:
                thread.join()


__all__ = ["EnginePool"]
