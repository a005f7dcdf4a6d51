"""`recengine.scan_graph`: the hand-written Gemm graph is valid ONNX and scores as numpy does, and
`ExactBackend` scans narrow vectors through it (wide ones through numpy) with the same results."""

from __future__ import annotations

import numpy as np
import pytest

from recengine.retrieval import GEMM_MAX_WIDTH, SMALL_SCAN, ExactBackend, GemmScan
from recengine.scan_graph import IR_VERSION, OPSET, gemm_scan_model


def test_the_bytes_are_a_valid_onnx_model() -> None:
    onnx = pytest.importorskip("onnx", reason="onnx checks the graph (the test extra has it)")
    model = onnx.load_from_string(gemm_scan_model())
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == IR_VERSION and model.opset_import[0].version == OPSET
    (node,) = model.graph.node
    assert node.op_type == "Gemm" and list(node.input) == ["queries", "items"] and list(node.output) == ["scores"]
    assert [(a.name, a.i) for a in node.attribute] == [("transB", 1)]
    assert [i.name for i in model.graph.input] == ["queries", "items"]


@pytest.mark.parametrize(("b", "n", "d"), [(1, 1, 1), (1, 9742, 64), (5, 700, 33), (3, 2000, 128)])
def test_gemm_scores_are_numpys(b: int, n: int, d: int) -> None:
    rng = np.random.default_rng(n)
    q, m = rng.standard_normal((b, d)).astype(np.float32), rng.standard_normal((n, d)).astype(np.float32)
    got = GemmScan()(q, m)
    assert got.shape == (b, n) and got.dtype == np.float32
    np.testing.assert_allclose(got, q @ m.T, rtol=1e-5, atol=1e-4)


def test_exact_backend_scans_narrow_spaces_with_gemm_and_masks_removed_rows() -> None:
    rng = np.random.default_rng(0)
    n = SMALL_SCAN * 4
    narrow = rng.standard_normal((n, 64)).astype(np.float32)
    wide = rng.standard_normal((n, GEMM_MAX_WIDTH + 1)).astype(np.float32)
    alive = np.ones(n, bool)
    alive[[3, 700]] = False
    a, b = ExactBackend(narrow, alive), ExactBackend(wide, alive)
    assert a._gemm is not None and b._gemm is None  # noqa: SLF001
    for backend, m in ((a, narrow), (b, wide)):
        q = rng.standard_normal((2, m.shape[1])).astype(np.float32)
        s = backend.scores(q)
        assert np.isneginf(s[:, [3, 700]]).all()
        keep = alive
        np.testing.assert_allclose(s[:, keep], (q @ m.T)[:, keep], rtol=1e-5, atol=1e-4)
        labels, _ = backend.search(q, 10)
        ref = np.argsort(-np.where(alive, q @ m.T, -np.inf), axis=1, kind="stable")[:, :10]
        assert np.array_equal(labels, ref)
