"""One helper thread per engine that runs a request's independent half while the caller runs the encoder.

Why: `search` spends most of its time in the ONNX encoder run, during which ONNX Runtime releases the GIL
and, with `threads=1`, leaves the machine's other cores idle, while its lexical half (tokenising the query
for BM25, the pruned top-n, gathering the candidates' text embeddings) does not need the query embedding at
all. Run beside the encoder, that half costs the request no wall time (measured on a 110k-item catalogue:
hybrid search 1.29-1.41x the dense-only search's p50 run in sequence, 1.14-1.23x overlapped, before the
fusion was trimmed; bench/results/2026-12-01-search-overlap-cpu-2core).

Rules that keep it from ever costing more than it saves:
- one job at a time: `submit` never queues. When the helper is busy (another thread's search is using it),
  it returns None and the caller does the work itself, as it would without a helper, so concurrent callers
  are never serialised behind one thread;
- the job is started by the caller once its own GIL-holding work is done (`search` starts it between
  tokenising and the encoder run: started before tokenising, the two threads' Python work took turns and
  the tokeniser ran 4x slower);
- the caller always waits for the job (`Job.result`), also when its own half fails, so a job never outlives
  the engine's read lock the caller holds; a job the helper has not started by then is run by the caller
  itself (measured on this shared 2-core machine, about one round in four had the second core busy);
- no helper at all (`create` returns None) when the process may use only one CPU, or when the engine's ONNX
  sessions were given every CPU (`threads` >= the CPU count): there is no idle core to overlap on.

The thread is a daemon, started on first use and stopped when its `Helper` is garbage collected (a reload
builds a new state and with it a new helper).
"""

from __future__ import annotations

import os
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Job(Generic[T]):
    """One call for the helper thread. Whoever claims it first runs it: the helper thread when it gets to
    it, or the caller (`wait`/`result`) when the helper has not started it yet, so a helper thread the OS
    has not scheduled (its core busy with another process) delays nothing: the caller runs the call itself,
    as it would without a helper."""

    def __init__(self, fn: Callable[[], T]) -> None:
        self._fn: Callable[[], T] | None = fn
        self._claim = threading.Lock()
        self._done = threading.Lock()
        self._done.acquire()
        self._value: T | None = None
        self._error: BaseException | None = None

    def _run(self) -> None:
        """Run the call unless the caller has claimed it (then it runs it, or already did)."""
        if not self._claim.acquire(blocking=False):
            return
        fn, self._fn = self._fn, None
        try:
            self._value = fn()  # type: ignore[misc]
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by `result`
            self._error = exc
        finally:
            self._done.release()

    def wait(self) -> None:
        """Until the call has finished (its result and exception left unread); runs it here if the helper
        has not started it."""
        self._run()
        with self._done:
            pass

    def result(self) -> T:
        """The call's return value (its exception re-raised in the caller)."""
        self.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


def _serve(jobs: queue.SimpleQueue[Job[object] | None], idle: threading.Lock) -> None:
    while True:
        job = jobs.get()
        if job is None:
            return
        try:
            job._run()  # noqa: SLF001 - the helper's own job
        finally:
            idle.release()


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class Helper:
    """A lazily started daemon thread that runs one job at a time beside its caller (see the module)."""

    def __init__(self, name: str = "recengine-helper") -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[Job[object] | None] = queue.SimpleQueue()
        self._idle = threading.Lock()
        self._start = threading.Lock()
        self._thread: threading.Thread | None = None
        weakref.finalize(self, self._jobs.put, None)  # the thread ends with its helper

    @classmethod
    def create(cls, threads: int | None, enabled: bool = True) -> Helper | None:
        """A helper when overlapping can help: `enabled`, more than one usable CPU, and the ONNX sessions'
        `threads` (None: ONNX Runtime's default, one per core) leaving one of them idle."""
        cpus = usable_cpus()
        if not enabled or cpus < 2 or threads is None or threads >= cpus:
            return None
        return cls()

    def submit(self, fn: Callable[[], T]) -> Job[T] | None:
        """Start `fn` on the helper thread, or return None (the caller runs `fn` itself) when it is busy."""
        if not self._idle.acquire(blocking=False):
            return None
        if self._thread is None:
            with self._start:
                if self._thread is None:
                    self._thread = threading.Thread(target=_serve, args=(self._jobs, self._idle), name=self._name,
                                                    daemon=True)
                    self._thread.start()
        job: Job[T] = Job(fn)
        self._jobs.put(job)  # type: ignore[arg-type]
        return job


__all__ = ["Helper", "Job", "usable_cpus"]
