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
from recengine.overlap import Helper


def test_a_job_returns_its_value_and_hands_its_error_back():
    helper = Helper()
    job = helper.submit(lambda: 41 + 1)
    assert job is not None and job.result() == 42

    def fail() -> None:
        raise ValueError("boom")

    job = helper.submit(fail)
    assert job is not None
    with pytest.raises(ValueError, match="boom"):
        job.result()
    again = helper.submit(lambda: "free again")  # a failed job leaves the helper idle
    assert again is not None and again.result() == "free again"


def test_a_busy_helper_refuses_instead_of_queueing():
    helper = Helper()
    gate = threading.Event()
    job = helper.submit(gate.wait)
    assert job is not None
    assert helper.submit(lambda: 1) is None  # the caller runs its work itself
    gate.set()
    job.wait()
    follow = helper.submit(lambda: 2)
    assert follow is not None and follow.result() == 2


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
