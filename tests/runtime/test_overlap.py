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
    started.wait(5)
    assert job.result() == "recengine-helper"  # run on the helper thread once it got to it


def test_a_job_the_helper_has_not_started_is_run_by_the_caller_once():
    calls = []
    job = Job(lambda: calls.append(threading.current_thread().name) or len(calls))
    assert job.result() == 1  # no thread ever took it: the caller ran it
    job._run()  # the helper thread arriving late finds it claimed
    assert calls == [threading.current_thread().name] and job.result() == 1


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


def test_engine_open_checks_the_overlap_flag(lean_bundle):
    with pytest.raises(RequestError, match="overlap"):
        Engine.open(lean_bundle, device="cpu", threads=1, overlap="yes")  # type: ignore[arg-type]
    assert Engine.open(lean_bundle, device="cpu", threads=1, overlap=False)._state.helper is None


QUERIES = ["heart train", "HEART", "trian dawn", "sci-fi comedy about a heart", "zzzz qqqq", "a"]


@pytest.mark.parametrize("retrieval", ["exact", "hnsw"])  # the scanned fusion and the candidate fusion
def test_search_with_the_helper_is_search_without_it(lean_bundle, monkeypatch, retrieval):
    monkeypatch.setattr(overlap, "usable_cpus", lambda: 4)
    engine = Engine.open(lean_bundle, device="cpu", threads=1, retrieval=retrieval)
    st = engine._state
    assert st.helper is not None
    assert neighbours.scans_text(st) == (retrieval == "exact")
    used = []
    real_submit = st.helper.submit
    monkeypatch.setattr(st.helper, "submit", lambda fn: used.append(1) or real_submit(fn))
    allowed = np.arange(st.catalogue.n_rows) % 2 == 0
    for q in QUERIES:
        for mask in (None, allowed):
            with_helper = neighbours.search(st, q, 7, mask)
            helper, st.helper = st.helper, None
            try:
                alone = neighbours.search(st, q, 7, mask)
            finally:
                st.helper = helper
            assert with_helper.rows.tolist() == alone.rows.tolist(), q
            np.testing.assert_array_equal(with_helper.scores, alone.scores)
    assert len(used) == 2 * len(QUERIES)
    assert [r.item_id for r in engine.search("heart train", k=3)] == \
        [st.catalogue.ids[int(r)] for r in neighbours.search(st, "heart train", 3, None).rows]


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
        raise RequestError("encoder refused")

    monkeypatch.setattr(neighbours, "lexical_half", slow_half)
    monkeypatch.setattr(st.models, "encode_queries", failing_encoder)
    with pytest.raises(RequestError, match="encoder refused"):
        neighbours.search(st, "heart train", 5, None)
    assert finished == [True]  # the job had finished when the error reached the caller
