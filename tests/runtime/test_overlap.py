"""The helper thread `search` overlaps its BM25 half with the encoder on (recengine.overlap): it runs one job at
a time, never queues, hands errors back, ends with its helper, is only created where a CPU is left idle, and
a search answered with it is the search answered without it."""

from __future__ import annotations

import gc
import threading
import time

import numpy as np
import pytest

from recengine import Engine, RequestError, neighbours, overlap
from recengine.overlap import Helper, Job


def _free(helper: Helper, fn):
    """`helper.submit(fn)` once the helper has finished its last job (it releases itself just after)."""
    deadline = time.monotonic() + 5
    while (job := helper.submit(fn)) is None:
        assert time.monotonic() < deadline, "the helper never became free"
        time.sleep(0.001)
    return job


def test_a_job_returns_its_value_and_hands_its_error_back():
    helper = Helper()
    job = helper.submit(lambda: 42)
    assert job is not None and job.result() == 42

    def fail() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        _free(helper, fail).result()
    assert _free(helper, lambda: "free again").result() == "free again"  # a failed job leaves it usable
    started = threading.Event()
    job = _free(helper, lambda: started.set() or threading.current_thread().name)
    assert started.wait(5), "the helper thread never ran the job"
    assert job.result() == "recengine-helper"  # run on the helper thread once it got to it


def test_a_job_the_helper_has_not_started_is_run_by_the_caller_once():
    calls = []
    job = Job(lambda: calls.append(threading.current_thread().name) or len(calls))
    assert job.result() == 1  # no thread ever took it: the caller ran it
    job._run()  # the helper thread arriving late finds it claimed
    assert calls == [threading.current_thread().name] and job.result() == 1


def test_a_cancelled_job_is_dropped_unless_started():
    calls = []
    job = Job(lambda: calls.append(1))
    job.cancel()
    job._run()
    assert calls == [] and job.result() is None
    helper = Helper()
    gate, started = threading.Event(), threading.Event()
    job = helper.submit(lambda: started.set() or gate.wait(5) and "ran")
    assert job is not None and started.wait(5)
    threading.Timer(0.05, gate.set).start()
    job.cancel()  # started: waits for it to finish
    assert gate.is_set() and job.result() == "ran"


def test_an_interrupted_wait_still_waits_for_the_job_then_raises(monkeypatch):
    """A Ctrl-C while the caller waits must not let it leave (and drop the engine's read lock) before the
    job, which reads the engine's state, is over."""
    helper = Helper()
    gate, started = threading.Event(), threading.Event()
    job = helper.submit(lambda: started.set() or gate.wait(5) and "done")
    assert job is not None and started.wait(5)
    real_wait = job._done.wait
    interrupts = [KeyboardInterrupt()]

    def interrupted_wait(timeout=None):
        if interrupts:
            threading.Timer(0.05, gate.set).start()
            raise interrupts.pop()
        return real_wait(timeout)

    monkeypatch.setattr(job._done, "wait", interrupted_wait)
    with pytest.raises(KeyboardInterrupt):
        job.wait()
    assert gate.is_set() and job._done.is_set()  # raised only once the job was over


def test_a_failed_job_does_not_keep_its_closure_alive():
    """The helper thread must not hold its last job (and a failed job's traceback, its closure, the engine
    state) while it waits for the next one; the thread ends with its helper."""
    import weakref

    class State:
        pass

    helper = Helper(name="recengine-helper-test-failed")
    state = State()
    ref = weakref.ref(state)

    def fail(st=state):
        raise RuntimeError(f"bm25 build failed for {st!r}")

    job = helper.submit(fail)
    assert job is not None
    with pytest.raises(RuntimeError):
        job.result()
    thread = next(t for t in threading.enumerate() if t.name == "recengine-helper-test-failed")
    deadline = time.monotonic() + 5
    while helper.submit(lambda: None) is None:  # the helper has let go of the failed job
        assert time.monotonic() < deadline
        time.sleep(0.001)
    del state, job, fail
    gc.collect()
    assert ref() is None
    del helper
    gc.collect()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_a_busy_helper_refuses_instead_of_queueing():
    helper = Helper()
    gate, started = threading.Event(), threading.Event()
    job = helper.submit(lambda: started.set() or gate.wait())
    assert job is not None and started.wait(5)
    assert helper.submit(lambda: 1) is None  # the caller runs its work itself
    gate.set()
    job.wait()
    assert _free(helper, lambda: 2).result() == 2


def test_the_thread_ends_with_its_helper():
    helper = Helper(name="recengine-helper-test-end")
    job = helper.submit(lambda: None)
    assert job is not None
    job.result()
    thread = next(t for t in threading.enumerate() if t.name == "recengine-helper-test-end")
    del helper, job
    gc.collect()
    thread.join(timeout=5)
    assert not thread.is_alive()


@pytest.mark.parametrize(("cpus", "threads", "enabled", "made"), [
    (2, 1, True, True), (8, 4, True, True),
    (2, None, True, False),  # ONNX Runtime's default takes every core
    (2, 2, True, False), (4, 8, True, False), (1, 1, True, False), (2, 1, False, False)])
def test_a_helper_only_where_a_cpu_is_left_idle(monkeypatch, cpus, threads, enabled, made):
    monkeypatch.setattr(overlap, "usable_cpus", lambda: cpus)
    assert (Helper.create(threads, enabled) is not None) == made


def test_engine_open_checks_the_overlap_flag(lean_bundle, monkeypatch):
    monkeypatch.setattr(overlap, "usable_cpus", lambda: 4)
    with pytest.raises(RequestError, match="overlap"):
        Engine.open(lean_bundle, device="cpu", threads=1, overlap="yes")  # type: ignore[arg-type]
    assert Engine.open(lean_bundle, device="cpu", threads=1, overlap=False)._state.helper is None
    assert Engine.open(lean_bundle, device="cpu", threads=1)._state.helper is not None


def test_usable_cpus_honours_a_cgroup_quota(monkeypatch, tmp_path):
    import builtins

    real_open = builtins.open
    for text, expect in (("150000 100000\n", 2), ("50000 100000\n", 1), ("max 100000\n", None), ("junk", None)):
        quota = tmp_path / "cpu.max"
        quota.write_text(text)
        monkeypatch.setattr(builtins, "open", lambda p, *a, _q=str(quota), **k:
                            real_open(_q if p == "/sys/fs/cgroup/cpu.max" else p, *a, **k))
        monkeypatch.setattr(overlap.os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
        assert overlap.usable_cpus() == (16 if expect is None else expect), text


QUERIES = ["heart train", "HEART", "trian dawn", "sci-fi comedy about a heart", "zzzz qqqq", "a"]


@pytest.mark.parametrize("retrieval", ["exact", "hnsw"])  # the scanned fusion and the candidate fusion
def test_search_with_the_helper_is_search_without_it(lean_bundle, monkeypatch, retrieval):
    monkeypatch.setattr(overlap, "usable_cpus", lambda: 4)
    engine = Engine.open(lean_bundle, device="cpu", threads=1, retrieval=retrieval)
    engine.add_items([{"item_id": "live-heart", "title": "Heart Train Express (2031)", "genres": "Comedy"}])
    engine.remove_items(engine.item_ids()[:5])
    st = engine._state
    assert st.helper is not None
    assert neighbours.scans_text(st) == (retrieval == "exact")
    ran_on: list[str] = []
    real_half, real_encode = neighbours.lexical_half, st.models.encode_queries

    def recorded_half(*args, **kwargs):
        ran_on.append(threading.current_thread().name)
        return real_half(*args, **kwargs)

    def slow_encoder(texts, release=None, started=None):
        out = real_encode(texts, release, started)
        time.sleep(0.01)  # a real encoder run takes ~1 ms: the helper gets to the job first
        return out

    monkeypatch.setattr(neighbours, "lexical_half", recorded_half)
    monkeypatch.setattr(st.models, "encode_queries", slow_encoder)
    allowed = np.arange(st.catalogue.n_rows) % 2 == 0
    for q in QUERIES:
        for mask in (None, allowed):
            ran_on.clear()
            with_helper = neighbours.search(st, q, 7, mask)
            assert ran_on == ["recengine-helper"], q  # the BM25 half ran on the helper thread
            helper, st.helper = st.helper, None
            try:
                alone = neighbours.search(st, q, 7, mask)
            finally:
                st.helper = helper
            assert ran_on[-1] == threading.current_thread().name
            assert with_helper.rows.tolist() == alone.rows.tolist(), q
            np.testing.assert_array_equal(with_helper.scores, alone.scores)
    assert engine.search("heart train express", k=3)[0].item_id == "live-heart"


def test_dense_mode_ignores_a_computed_half(lean_bundle, monkeypatch):
    engine = Engine.open(lean_bundle, device="cpu", threads=1, retrieval="hnsw")
    st = engine._state
    emb = st.models.encode_queries(["heart train"])[0]
    half = neighbours.lexical_half(st, "heart train", 5, None, neighbours.scans_text(st))
    dense = neighbours.search_embedded(st, emb, "heart train", 5, None, mode="dense")
    assert neighbours.search_embedded(st, emb, "heart train", 5, None, mode="dense", half=half).rows.tolist() == \
        dense.rows.tolist()


def test_an_encoder_failure_waits_for_the_job_before_it_propagates(lean_bundle, monkeypatch):
    monkeypatch.setattr(overlap, "usable_cpus", lambda: 4)
    engine = Engine.open(lean_bundle, device="cpu", threads=1)
    st = engine._state
    finished = []
    real = neighbours.lexical_half

    def slow_half(*args, **kwargs):
        time.sleep(0.05)
        out = real(*args, **kwargs)
        finished.append(True)
        return out

    def failing_encoder(texts, release=None, started=None):
        assert started is not None
        started()
        time.sleep(0.01)  # the helper has started the job: the caller must wait for it
        raise RequestError("encoder refused")

    monkeypatch.setattr(neighbours, "lexical_half", slow_half)
    monkeypatch.setattr(st.models, "encode_queries", failing_encoder)
    with pytest.raises(RequestError, match="encoder refused"):
        neighbours.search(st, "heart train", 5, None)
    assert finished == [True]  # the job had finished when the error reached the caller
