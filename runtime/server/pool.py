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
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

_STOP = object()


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    """Runs on the event loop: deliver a result unless the waiting request was cancelled meanwhile."""
    if future.cancelled():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class EnginePool(Executor):
    """`size` threads that run engine calls; `run(fn, *args)` from the event loop returns an awaitable."""

    def __init__(self, size: int, name: str = "recengine-req") -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._shutdown = False
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, name=f"{name}_{i}", daemon=True) for i in range(size)]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        get = self._queue.get
        while True:
            item = get()
            if item is _STOP:
                return
            fn, args, target = item
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
