"""One helper thread per engine that runs a request's independent half while the caller runs the encoder.

Why: `search` spends most of its time in the ONNX encoder run, during which ONNX Runtime releases the GIL
and, with `threads=1`, leaves the machine's other cores idle, while its lexical half (tokenising the query
for BM25, the pruned top-n, gathering the candidates' text embeddings) does not need the query embedding at
all. Run beside the encoder, that half costs the request no wall time (measured on a 110k-item catalogue
with `threads=1`: hybrid search 1.29-1.44x the dense-only search's p50 in sequence, 1.08-1.15x overlapped,
medians of four query families; MovieLens 1.15x -> 1.04-1.05x; bench/results/2026-12-01-search-overlap-cpu-2core).

Rules that keep it from ever costing more than it saves:
- one job at a time: `submit` never queues. When the helper is busy (another thread's search is using it),
  it returns None and the caller does the work itself, as it would without a helper, so concurrent callers
  are never serialised behind one thread;
- the job is started by the caller once its own GIL-holding work is done (`search` starts it between
  tokenising and the encoder run: started before tokenising, the two threads' Python work took turns and
  the tokeniser ran 4x slower);
- whoever claims the job first runs it: one the helper has not started by the time the caller wants it is
  run by the caller itself (on this shared 2-core machine 2 of 15 measurement rounds had the second core
  busy), and a failed encoder drops an unstarted job (`Job.cancel`);
- the caller never leaves before the job is over (`Job.wait` also rides out a Ctrl-C), so a job never
  outlives the engine's read lock the caller holds;
- no helper at all (`create` returns None) when the process may use only one CPU (affinity, cgroup quota),
  or when the engine's ONNX sessions may take every CPU (`threads` None or >= the CPU count): there is no
  idle core to overlap on, and a forced helper made search slower there.

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
        self._done = threading.Event()
        self._value: T | None = None
        self._error: BaseException | None = None

    def _run(self, call: bool = True) -> None:
        """Run the call (`call` False: drop it) unless someone has claimed it already."""
        if not self._claim.acquire(blocking=False):
            return
        fn, self._fn = self._fn, None
        try:
            if call:
                self._value = fn()  # type: ignore[misc]
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by `result`
            self._error = exc
        finally:
            self._done.set()

    def _finished(self) -> None:
        """Until the call is over, whatever interrupts the wait (a Ctrl-C, a signal handler's exception): the
        call reads the engine's state under the caller's read lock, so the caller must not leave before it
        does; the interruption is raised once the call is over."""
        pending: BaseException | None = None
        while not self._done.is_set():
            try:
                self._done.wait()
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                pending = exc
        if pending is not None:
            raise pending

    def wait(self) -> None:
        """Until the call has finished (its result and exception left unread); runs it here if the helper
        has not started it."""
        self._run()
        self._finished()

    def cancel(self) -> None:
        """Drop the call if the helper has not started it, else wait until it is over (the caller's own half
        failed: the result is not wanted, but the call must not outlive the caller's lock)."""
        self._run(call=False)
        self._finished()

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
            # not kept while waiting for the next one: a failed job's traceback holds the call's frame, its
            # closure and with it the engine state (and this helper: its thread would never end)
            job = None
            idle.release()


def usable_cpus() -> int:
    """CPUs this process may use: its affinity mask where the OS has one, capped by a cgroup v2 CPU quota
    (`/sys/fs/cgroup/cpu.max`, e.g. a container limited to 1 CPU on a 16-core node)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return cpus


class Helper:
    """A lazily started daemon thread that runs one job at a time beside its caller (see the module)."""

    def __init__(self, name: str = "recengine-helper") -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[Job[object] | None] = queue.SimpleQueue()
        self._idle = threading.Lock()
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
        """Start `fn` on the helper thread, or return None (the caller runs `fn` itself) when it is busy or
        its thread cannot be started."""
        if not self._idle.acquire(blocking=False):
            return None
        if self._thread is None:  # only the holder of `_idle` gets here: no second start
            thread = threading.Thread(target=_serve, args=(self._jobs, self._idle), name=self._name, daemon=True)
            try:
                thread.start()
            except RuntimeError:  # e.g. at interpreter shutdown: no helper, the caller does the work
                self._idle.release()
                return None
            self._thread = thread
        job: Job[T] = Job(fn)
        self._jobs.put(job)  # type: ignore[arg-type]
        return job


__all__ = ["Helper", "Job", "usable_cpus"]
