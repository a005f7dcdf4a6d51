"""`recengine.scan`: the exact inner-product kernel every exact retrieval and text scan goes through."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from recengine.scan import (
    GEMM_GRAPH,
    GEMM_MAX_FLOATS,
    GEMM_MIN_QUERIES,
    SMALL_SCAN,
    Scanner,
    einsum_scan,
    inner_products,
)


def _data(n: int, d: int, b: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((b, d)).astype(np.float32), rng.standard_normal((n, d)).astype(np.float32)


def test_the_stored_graph_is_the_gemm_onnx_builds():
    """The runtime ships the graph as bytes (no `onnx` dependency); it must be the model `onnx.helper` makes."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Gemm", ["queries", "matrix"], ["scores"], transB=1)], "recengine_scan",
        [helper.make_tensor_value_info("queries", TensorProto.FLOAT, ["B", "D"]),
         helper.make_tensor_value_info("matrix", TensorProto.FLOAT, ["N", "D"])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["B", "N"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="recengine")
    model.ir_version = 8
    onnx.checker.check_model(model)
    assert model.SerializeToString() == GEMM_GRAPH
    onnx.checker.check_model(onnx.load_from_string(GEMM_GRAPH))


@pytest.mark.parametrize(("n", "d", "b"), [(SMALL_SCAN + 1, 64, 2), (2_000, 64, 3), (1_500, 384, 2), (700, 7, 5),
                                           (2_000, 64, 1)])
def test_gemm_scores_equal_numpy(n, d, b):
    scanner = Scanner.create(min_queries=1)  # lone queries too (the engine keeps those on einsum)
    assert scanner.kernel == "gemm"
    queries, matrix = _data(n, d, b)
    assert scanner.uses_gemm(matrix, b)
    got = scanner(queries, matrix)
    assert got.shape == (b, n) and got.dtype == np.float32 and got.flags.writeable
    want = queries.astype(np.float64) @ matrix.astype(np.float64).T
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(got, einsum_scan(queries, matrix), rtol=1e-5, atol=1e-4)
    got[0, 0] = -np.inf  # callers write -inf into dead or excluded rows


def test_what_stays_on_numpy():
    """Lone queries (the GIL hand-off of a session run costs threaded hosts more than it saves), small
    matrices, matrices past the size where Gemm loses, and arrays it cannot read without a copy are scanned
    with numpy; the numbers are the same either way."""
    scanner = Scanner.create()
    q2, m2 = _data(1_000, 16, 2)
    assert GEMM_MIN_QUERIES == 2 and scanner.uses_gemm(m2, 2) and not scanner.uses_gemm(m2, 1)
    np.testing.assert_allclose(scanner(q2[:1], m2), q2[:1] @ m2.T, rtol=1e-5, atol=1e-4)
    queries, matrix = _data(SMALL_SCAN, 16, 2)
    assert not scanner.uses_gemm(matrix, 2)  # small: numpy's matmul
    big = Scanner.create(max_floats=10_000)
    assert not big.uses_gemm(m2, 2)
    np.testing.assert_allclose(big(q2, m2), scanner(q2, m2), rtol=1e-5, atol=1e-4)
    strided = m2[::2]  # not contiguous
    assert not scanner.uses_gemm(strided, 2)
    np.testing.assert_allclose(scanner(q2, strided), q2 @ strided.T, rtol=1e-5, atol=1e-4)
    wide = m2.astype(np.float64)
    assert not scanner.uses_gemm(wide, 2)
    np.testing.assert_allclose(scanner(q2, wide), q2 @ wide.T, rtol=1e-5, atol=1e-4)
    assert 9_742 * 64 <= GEMM_MAX_FLOATS < 9_742 * 384  # MovieLens: the item space on the Gemm, text on numpy


def test_without_onnxruntime_numpy_scans_everything():
    scanner = Scanner(None)
    queries, matrix = _data(2_000, 32, 2)
    assert scanner.kernel == "einsum" and not scanner.uses_gemm(matrix, 2)
    np.testing.assert_allclose(scanner(queries, matrix), queries @ matrix.T, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(inner_products(queries, matrix), queries @ matrix.T, rtol=1e-5, atol=1e-4)


def test_one_scanner_serves_many_threads():
    scanner = Scanner.create(min_queries=1)
    queries, matrix = _data(3_000, 64, 4)
    want = scanner(queries, matrix)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(50):
                np.testing.assert_array_equal(scanner(queries, matrix), want)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_the_engine_scans_both_spaces_with_one_scanner(lean_bundle):
    """Exact retrieval and the text scan of an opened engine go through its one scanner."""
    from recengine import Engine

    engine = Engine.open(lean_bundle, threads=1)
    st = engine._state
    scanner = st.items_index.exact.scanner
    assert isinstance(scanner, Scanner) and scanner.kernel == "gemm"
    assert st.text_index.exact.scanner is scanner
    queries = st.catalogue.vectors[:2].copy()
    np.testing.assert_allclose(st.items_index.exact.scores(queries),
                               einsum_scan(queries, st.catalogue.vectors), rtol=1e-5, atol=1e-4)
