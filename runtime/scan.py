"""Exact inner-product scans of a row matrix: the one kernel behind every exact retrieval, text scan and
similar-items scan.

Three rules, all about running on a busy host without surprises:
- never multi-threaded BLAS: OpenBLAS threads its GEMV/GEMM, which on a busy host turned a 0.2 ms scan
  into 12 ms (2 loaded cores, 9,742 x 64 items, one query: 12.0 ms `q @ M.T` against 0.2 ms `einsum`);
- the fastest single-threaded kernel for the size. numpy's `einsum` (no `optimize`) is single-threaded but
  not vectorised well: ~100-180 µs for 9,742 x 64 in a tight loop. ONNX Runtime's Gemm (MLAS, one intra-op
  thread, no thread pool to wake) takes ~40 µs there, 160 against 790 µs for a batch of 8 (2-core AMD EPYC,
  AVX-512, bench/results/2026-12-01-scan-cpu-2core). Its `transB` Gemm packs the matrix on every call, so
  it loses on large matrices (30,000 x 384: 3.4 against 1.8 ms; 110,000 x 384: 12.9 against 7.0 ms) and,
  inside the engine, already on MovieLens's 9,742 x 384 text space: 365 against 554 µs in a tight loop, yet
  `search` (encoder run, scan, BM25) took 1.27x as long with it (1.22x in a noisier run), the packing
  evicting what the encoder keeps in cache. Matrices above `GEMM_MAX_FLOATS` therefore keep `einsum`; the
  64-wide item space of a MovieLens-sized catalogue fits (one thread calling, a lone `recommend` by stored
  user took 0.92x and `similar_items` 0.68x the einsum engine's p50 with it; but see the last rule). Below
  `SMALL_SCAN` rows numpy's matmul is cheapest (BLAS does not thread there);
- a lone query stays on `einsum` (`GEMM_MIN_QUERIES`): every `session.run` gives the GIL up and takes it
  back, and with several host threads calling one engine that hand-off cost more than the scan saves
  (`recommend` from 2 / 3 threads on 2 cores: 0.91-0.99x / 0.89-0.94x the requests/s of einsum, from one
  thread 1.06-1.09x, alternating rounds, `threads_ab.txt`; the same finding reverted this Gemm once before,
  bench/results/2026-11-30-footprint-topk-cpu-2core). Batches take it: one Gemm over 8 queries is 160 µs
  against 790 for einsum, and batches come from one caller (`recommend_batch`, the server's coalescing
  lane, `score_catalogue`).

The Gemm graph is a fixed 171-byte ONNX model (`GEMM_GRAPH`), kept as bytes so the runtime needs only
onnxruntime, not the `onnx` package; `tests/runtime/test_scan.py` rebuilds it with `onnx.helper` where
`onnx` is installed and checks both are the same model.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

SMALL_SCAN = 512
"""Below this many rows numpy's BLAS matmul is used (single-threaded there anyway)."""
GEMM_MAX_FLOATS = 1 << 20
"""Largest matrix (rows x width, 1,048,576 floats = 4 MiB: 16,384 items at width 64) scanned with ONNX
Runtime's Gemm; larger ones use `einsum` (module docstring: in the engine it won at 0.62M floats and lost at
3.7M)."""
GEMM_MIN_QUERIES = 2
"""Fewest queries a scan must have to run on the Gemm (module docstring: a lone query stays on einsum)."""
GEMM_GRAPH = base64.b64decode(
    "CAgSCXJlY2VuZ2luZTqVAQouCgdxdWVyaWVzCgZtYXRyaXgSBnNjb3JlcyIER2VtbSoNCgZ0cmFuc0IYAaABAhIOcmVjZW5naW5lX3NjYW5a"
    "GwoHcXVlcmllcxIQCg4IARIKCgMSAUIKAxIBRFoaCgZtYXRyaXgSEAoOCAESCgoDEgFOCgMSAURiGgoGc2NvcmVzEhAKDggBEgoKAxIBQgoD"
    "EgFOQgQKABAN"
)
"""ONNX (IR 8, opset 13): scores float32 [B, N] = Gemm(queries float32 [B, D], matrix float32 [N, D], transB=1)."""


def einsum_scan(queries: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """queries [B, d] . matrix [n, d]^T -> [B, n] with numpy alone, never on BLAS threads."""
    if matrix.shape[0] <= SMALL_SCAN:
        return queries @ matrix.T
    return np.einsum("ij,kj->ki", matrix, queries)


class Scanner:
    """Exact inner products `queries @ matrix.T`, single-threaded, by the fastest kernel for the size.

    One per engine (it holds an ONNX Runtime session; `run` is safe from many threads at once). Without
    onnxruntime (or if the session cannot be made) it scans with `einsum` alone, the same numbers to ~1e-6.
    """

    def __init__(self, session: Any | None, min_rows: int = SMALL_SCAN, max_floats: int = GEMM_MAX_FLOATS,
                 min_queries: int = GEMM_MIN_QUERIES) -> None:
        self._session = session
        self.min_rows = min_rows
        self.max_floats = max_floats
        self.min_queries = min_queries

    @classmethod
    def create(cls, min_rows: int = SMALL_SCAN, max_floats: int = GEMM_MAX_FLOATS,
               min_queries: int = GEMM_MIN_QUERIES) -> Scanner:
        """A scanner with ONNX Runtime's Gemm where onnxruntime is importable, else numpy alone. `min_rows`,
        `max_floats` and `min_queries` bound the scans that take the Gemm (the defaults are where it measured
        faster; tests and the latency bench lower them to put any scan on it)."""
        try:
            import onnxruntime as rt

            opts = rt.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            opts.execution_mode = rt.ExecutionMode.ORT_SEQUENTIAL
            opts.log_severity_level = 3
            session = rt.InferenceSession(GEMM_GRAPH, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # no onnxruntime, or a build that refuses the graph: numpy still scans
            log.info("ONNX Runtime scan unavailable (%s); scanning with numpy", exc)
            session = None
        return cls(session, min_rows, max_floats, min_queries)

    @property
    def kernel(self) -> str:
        """"gemm" when large-enough scans run on ONNX Runtime, "einsum" when numpy does them all."""
        return "gemm" if self._session is not None else "einsum"

    def uses_gemm(self, matrix: np.ndarray, n_queries: int) -> bool:
        """Whether a scan of `n_queries` queries over `matrix` runs on ONNX Runtime's Gemm."""
        n, d = matrix.shape
        return (self._session is not None and n_queries >= self.min_queries and self.min_rows < n
                and n * d <= self.max_floats and matrix.dtype == np.float32 and matrix.flags.c_contiguous)

    def __call__(self, queries: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """float32 [B, n] inner products of `queries` [B, d] with the rows of `matrix` [n, d]."""
        if not self.uses_gemm(matrix, queries.shape[0]):
            return einsum_scan(queries, matrix)
        q = np.ascontiguousarray(queries, dtype=np.float32)
        return self._session.run(None, {"queries": q, "matrix": matrix})[0]  # type: ignore[union-attr]


def inner_products(queries: np.ndarray, matrix: np.ndarray, scanner: Scanner | None = None) -> np.ndarray:
    """queries [B, d] . matrix [n, d]^T -> [B, n]: with `scanner` where the caller has the engine's, numpy
    alone otherwise (see the module docstring for why never multi-threaded BLAS)."""
    return scanner(queries, matrix) if scanner is not None else einsum_scan(queries, matrix)


__all__ = ["GEMM_GRAPH", "GEMM_MAX_FLOATS", "GEMM_MIN_QUERIES", "SMALL_SCAN", "Scanner", "einsum_scan",
           "inner_products"]
