"""The exact scan's ONNX graph, `scores = queries @ items^T`, written as protobuf bytes without the `onnx` package.

Why by hand: the lean runtime (`pip install recengine[cpu]`) has ONNX Runtime but not `onnx`, and this graph is
one `Gemm` node. ONNX Runtime's single-threaded MLAS Gemm scores MovieLens's 9,742 x 64 item vectors in
~0.04 ms against ~0.1-0.15 ms for numpy's own einsum loop (which the engine used because OpenBLAS threads a
GEMV and stalls on a busy host: `retrieval.inner_products`); `retrieval.ExactBackend` runs it
(bench/results/2026-11-30-footprint-topk-cpu-2core).

The bytes are an ONNX `ModelProto` (IR 8, opset 17): inputs `queries` float32 [B, D] and `items` float32 [N, D],
output `scores` float32 [B, N], one node `Gemm(queries, items, transB=1)`. tests/runtime/test_scan_graph.py
checks them with `onnx.checker` where `onnx` is installed.
"""

from __future__ import annotations

IR_VERSION = 8
OPSET = 17
_FLOAT = 1  # TensorProto.FLOAT
_INT = 2  # AttributeProto.INT


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _int(field: int, value: int) -> bytes:
    """A varint field (wire type 0)."""
    return _varint(field << 3) + _varint(value)


def _bytes(field: int, payload: bytes | str) -> bytes:
    """A length-delimited field (wire type 2): a string or an embedded message."""
    data = payload.encode("utf-8") if isinstance(payload, str) else payload
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _value_info(name: str, dims: tuple[str, str]) -> bytes:
    """ValueInfoProto{name, type: TypeProto{tensor_type: {elem_type FLOAT, shape: [dim_param...]}}}."""
    shape = b"".join(_bytes(1, _bytes(2, d)) for d in dims)  # TensorShapeProto.dim{dim_param}
    tensor = _int(1, _FLOAT) + _bytes(2, shape)
    return _bytes(1, name) + _bytes(2, _bytes(1, tensor))


def gemm_scan_model() -> bytes:
    """The serialized scan graph (see the module docstring)."""
    attribute = _bytes(1, "transB") + _int(3, 1) + _int(20, _INT)  # AttributeProto{name, i, type}
    node = _bytes(1, "queries") + _bytes(1, "items") + _bytes(2, "scores") + _bytes(3, "scan") + \
        _bytes(4, "Gemm") + _bytes(5, attribute)
    graph = _bytes(1, node) + _bytes(2, "recengine_scan") + \
        _bytes(11, _value_info("queries", ("B", "D"))) + _bytes(11, _value_info("items", ("N", "D"))) + \
        _bytes(12, _value_info("scores", ("B", "N")))
    opset = _bytes(1, "") + _int(2, OPSET)
    return _int(1, IR_VERSION) + _bytes(2, "recengine") + _bytes(7, graph) + _bytes(8, opset)


__all__ = ["gemm_scan_model"]
