"""The CPU memory policy of ONNX Runtime sessions (`recengine.sessions.CPU_MEMORY`): the options a session is
created with, the release after multi-row runs, and the encoder's rows per run on the CPU."""

from __future__ import annotations

import numpy as np
import pytest

from recengine import sessions
from recengine.errors import RequestError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def identity_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A one-node model with a dynamic batch axis (x [B, 2] -> y [B, 2])."""
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("identity") / "m.onnx"
    onnx.save(model, str(path))
    return str(path)


@pytest.mark.parametrize("kind", ["encoder", "user_tower", "fusion", "topk"])
def test_cpu_sessions_get_their_kinds_options(identity_model, kind):
    policy = sessions.cpu_memory_policy(kind)
    s = sessions.make_session(f"{kind}.int8", identity_model, "cpu", sessions.SessionConfig(device="cpu", threads=1))
    assert s.memory == policy
    opts = s.session.get_session_options()
    assert opts.enable_cpu_mem_arena == policy.arena
    assert opts.enable_mem_pattern == policy.mem_pattern
    assert opts.intra_op_num_threads == 1
    if policy.arena and policy.release_above_rows is not None:
        assert s._release.get_run_config_entry("memory.enable_memory_arena_shrinkage") == "cpu:0"
    else:
        assert s._release is None


def test_policy_per_kind():
    """What bench/results/2026-11-30-ort-arena-cpu-2core measured: the encoder keeps its arena for batch-1
    searches but gives back what a multi-row run took; the small user tower and fusion head keep ORT's
    defaults; sessions of other kinds get ORT's defaults; at most 16 texts per encoder run on the CPU."""
    assert sessions.cpu_memory_policy("encoder") == sessions.CpuMemoryPolicy(arena=True, mem_pattern=True,
                                                                             release_above_rows=1)
    for kind in ("user_tower", "fusion", "anything_else"):
        assert sessions.cpu_memory_policy(kind) == sessions.CpuMemoryPolicy(True, True, None)
    assert sessions.session_kind("encoder.int8") == "encoder"
    assert sessions.session_kind("fusion") == "fusion"
    assert sessions.CPU_ENCODE_ROWS == 16
    opts = sessions.session_options(sessions.SessionConfig(), sessions.CpuMemoryPolicy(arena=False, mem_pattern=False))
    assert (opts.enable_cpu_mem_arena, opts.enable_mem_pattern) == (False, False)


def test_release_only_after_runs_over_the_threshold(identity_model, monkeypatch):
    released = []
    monkeypatch.setattr(sessions, "release_heap", lambda: released.append(1))
    s = sessions.make_session("encoder.int8", identity_model, "cpu", sessions.SessionConfig(device="cpu", threads=1))
    seen = []
    real_run = s.session.run

    class Recorder:
        def run(self, outputs, feeds, run_options=None):
            seen.append(run_options)
            return real_run(outputs, feeds, run_options)

        def __getattr__(self, name):
            return getattr(s.session, name)

    s.session = Recorder()
    x1 = np.ones((1, 2), np.float32)
    (y,) = s.run({"x": x1})
    np.testing.assert_array_equal(y, x1)
    assert released == [] and seen == [None]
    x4 = np.arange(8, dtype=np.float32).reshape(4, 2)
    (y,) = s.run({"x": x4})
    np.testing.assert_array_equal(y, x4)
    assert released == [1] and seen[-1] is s._release
    with pytest.raises(RequestError, match="rejected its inputs"):  # released even when the run fails
        s.run({"x": np.ones((3, 5), np.float32)})
    assert released == [1, 1]
    s.run({"x": x4}, release=False)  # a caller running chunks defers the release to its last run
    assert released == [1, 1] and seen[-1] is None
    s.run({"x": x1}, release=True)
    assert released == [1, 1, 1] and seen[-1] is s._release


def test_policies_without_release_never_release(identity_model, monkeypatch):
    released = []
    monkeypatch.setattr(sessions, "release_heap", lambda: released.append(1))
    s = sessions.make_session("user_tower.int8", identity_model, "cpu", sessions.SessionConfig(device="cpu"))
    s.run({"x": np.ones((64, 2), np.float32)})
    s.run({"x": np.ones((64, 2), np.float32)}, release=True)
    assert released == []


def test_arena_off_policy_releases_heap_without_run_options(identity_model, monkeypatch):
    released = []
    monkeypatch.setattr(sessions, "release_heap", lambda: released.append(1))
    monkeypatch.setitem(sessions.CPU_MEMORY, "probe", sessions.CpuMemoryPolicy(arena=False, release_above_rows=2))
    s = sessions.make_session("probe.fp32", identity_model, "cpu", sessions.SessionConfig(device="cpu"))
    assert s._release is None and s.session.get_session_options().enable_cpu_mem_arena is False
    s.run({"x": np.ones((2, 2), np.float32)})
    assert released == []
    s.run({"x": np.ones((3, 2), np.float32)})
    assert released == [1]


def test_release_heap_runs():
    sessions.release_heap()  # glibc malloc_trim, or nothing where there is none


def test_encoder_rows_per_run_on_the_cpu(lean_bundle, monkeypatch):
    from recengine.engine import Engine

    e = Engine.open(lean_bundle, device="cpu", threads=1)
    models = e._state.models
    assert models.encoder.memory == sessions.cpu_memory_policy("encoder")
    assert models.user_tower.memory == sessions.cpu_memory_policy("user_tower")
    assert models.fusion.memory == sessions.cpu_memory_policy("fusion")
    texts = [f"item {i} " + "word " * (i % 7) for i in range(40)]
    expected_text, expected_item = models.encode(texts, batch_size=64)
    sizes, releases = [], []
    real = models.encode_batch

    def counting(batch, release=None, *, stored=False):
        sizes.append(len(batch))
        releases.append(release)
        return real(batch, release=release, stored=stored)

    monkeypatch.setattr(models, "encode_batch", counting)
    text, item = models.encode(texts, batch_size=64)
    assert sizes == [16, 16, 8]
    assert releases == [False, False, True]  # the memory goes back once, after the last run
    np.testing.assert_array_equal(text, expected_text)
    np.testing.assert_array_equal(item, expected_item)
    sizes.clear()
    models.encode(texts, batch_size=10)  # a smaller batch asked for is kept
    assert sizes == [10, 10, 10, 10]
