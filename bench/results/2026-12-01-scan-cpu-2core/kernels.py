"""numpy `einsum` against ONNX Runtime's Gemm (transB, one thread) and MatMul (pre-transposed matrix) for one
query over random float32 matrices of several sizes: the kernel choice of `recengine.scan` (best of 5, µs).

    python kernels.py
"""

import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper


def session(node: object, inputs: list) -> ort.InferenceSession:
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                              [helper.make_tensor_value_info("s", TensorProto.FLOAT, ["B", "N"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def best_us(f, reps: int) -> float:
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            f()
        times.append((time.perf_counter() - t0) / reps * 1e6)
    return round(min(times), 1)


gemm = session(helper.make_node("Gemm", ["q", "M"], ["s"], transB=1), [("q", ["B", "D"]), ("M", ["N", "D"])])
matmul = session(helper.make_node("MatMul", ["q", "MT"], ["s"]), [("q", ["B", "D"]), ("MT", ["D", "N"])])
rng = np.random.default_rng(0)
print("loadavg", open("/proc/loadavg").read().split()[:3])
for n, d in ((9742, 64), (9742, 384), (30000, 64), (30000, 384), (110000, 64), (110000, 384)):
    M = rng.standard_normal((n, d)).astype(np.float32)
    MT = np.ascontiguousarray(M.T)
    q = rng.standard_normal((1, d)).astype(np.float32)
    reps = max(10, int(1e8 / (n * d)))
    print(n, d, {"einsum": best_us(lambda: np.einsum("ij,kj->ki", M, q), reps),  # noqa: B023
                 "gemm": best_us(lambda: gemm.run(None, {"q": q, "M": M})[0], reps),  # noqa: B023
                 "matmul_pretransposed": best_us(lambda: matmul.run(None, {"q": q, "MT": MT})[0], reps)})  # noqa: B023
print("loadavg", open("/proc/loadavg").read().split()[:3])
