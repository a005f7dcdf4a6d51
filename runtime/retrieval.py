"""Candidate retrieval by inner product: HNSW, exact numpy, or an exact ONNX MatMul+TopK graph.

Which backend wins depends on where and how much: on a CPU an exact scan costs 4-20 ns per item and
query (single-threaded, `recengine.scan`), so it wins while items x queries is small (`EXACT_BUDGET`) and
HNSW (sub-linear, one thread per query) wins beyond; on a GPU a Gemm+TopK graph over the item matrix
kept on the device beats HNSW, above all for batches.
`choose_backend` encodes that and every choice is overridable (`Engine.open(..., retrieval=...)`).

All backends see the same catalogue rows (labels = rows of `items/vectors.npy`, including items added
live) and skip tombstoned rows. `retrieve` adds filters and per-query exclusions on top: an exact scan of
the allowed subset when it is small (< `small_subset` of the live catalogue), otherwise over-fetch from
the backend and post-filter, widening until enough candidates survive.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .errors import BundleError, RequestError
from .scan import Scanner, inner_products

log = logging.getLogger(__name__)

BACKENDS = ("auto", "hnsw", "exact", "onnx")
EXACT_BUDGET = 20_000
"""On the CPU an exact scan is used while (live items x queries x d / 64) stays within this budget (~0.4 ms
with a BLAS-free scan at d=64), HNSW beyond it. The scan's cost grows with the width: the 384-wide text
space of 9,742 MovieLens items took 0.92 ms per query exact against ~0.5 ms in HNSW at the ef (512) that
finds 96 % of the exact top 10 (2026-11-30), so a space of width d switches at 64/d of the items the 64-wide
item space does (`dim`). The engine's text space is the exception: it counts its items at width 64 and stays
scanned up to 20,000 items, since HNSW would hold a second copy of its wide vectors (`TEXT_SCAN_DIM`)."""
EXACT_DIM = 64
"""The width `EXACT_BUDGET` is counted at."""
TEXT_SCAN_DIM = EXACT_DIM
"""The width the text space's scan budget is counted at: its items are scanned exactly up to `EXACT_BUDGET`
(20,000 at batch 1) whatever its width, as the 64-wide item space's are. Why not its real width (384 with
MiniLM, which would send MovieLens's 9,742 items to HNSW): hnswlib holds its own copy of the vectors beside the
catalogue's, so serving search from HNSW cost MovieLens 21 MiB of steady RSS (162 vs 141 MiB; the CPU bundle's
target is 150), for ~0.4 ms of scan per query; the scanned search fuses BM25 over every row
(`neighbours.fuse_scanned`) and stays within 1.2x of the dense search served before issue 15
(bench/results/2026-11-30-search-split-cpu-2core)."""
TOPK_STRIDE = 16
"""`topk_rows` reads every `TOPK_STRIDE`-th score to find a threshold that at least k scores pass."""
TOPK_SAMPLED = 2_048
"""Rows from which `topk_rows` selects through a sampled threshold instead of partitioning every score."""


def _top_of_row(row: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k largest entries of `row` (1 <= k < row.size), best first (ties: `topk_rows`).

    Why not `np.argpartition` over the row: it measured 0.12 ms over 9,742 scores and 1.3 ms over 100,000
    (the largest single cost of a MovieLens `recommend`), where this takes 0.02-0.03 and 0.08-0.12 ms
    (bench/results/2026-11-30-footprint-topk-cpu-2core). A threshold from a strided sample (the m-th largest of every
    16th score, m a little over k / 16) keeps ~k + 128 candidates; if fewer than k pass it (an adversarial
    order), every row is a candidate. Exact either way: at least k scores pass the threshold, so the k-th
    largest is above it and every one of the top k is among the candidates."""
    n = row.size
    cand: np.ndarray | None = None
    if n >= TOPK_SAMPLED and k * TOPK_STRIDE * 2 <= n:
        sample = row[::TOPK_STRIDE]
        m = min(sample.size, k // TOPK_STRIDE + 8)
        threshold = np.partition(sample, sample.size - m)[sample.size - m]
        cand = np.flatnonzero(row >= threshold)
        if cand.size < k:
            cand = None
    sub = row if cand is None else row[cand]
    if sub.size > 4 * k + 256:  # many candidates left: partition first
        part = np.argpartition(-sub, k - 1)[:k]
        part.sort()
        order = part[np.argsort(-sub[part], kind="stable")]
    else:
        order = np.argsort(-sub, kind="stable")[:k]
    return order if cand is None else cand[order]


def topk_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k largest entries of each row, best first (-inf entries sort last); equal
    values within the k in index order (which of several entries tied at the k-th value make the cut is
    unspecified)."""
    n = scores.shape[1]
    k = min(k, n)
    if k <= 0 or scores.shape[0] == 0:
        return np.zeros((scores.shape[0], max(k, 0)), np.int64), np.zeros((scores.shape[0], max(k, 0)), np.float32)
    if k == n:
        order = np.argsort(-scores, axis=1, kind="stable")
        return order.astype(np.int64, copy=False), np.take_along_axis(scores, order, axis=1)
    if scores.shape[0] == 1:  # the common single request, without stacking
        row = scores[0]
        top = _top_of_row(row, k).astype(np.int64, copy=False)
        return top[None, :], row[top][None, :]
    if n >= TOPK_SAMPLED:  # rows long enough to sample: row by row
        idx = np.stack([_top_of_row(scores[b], k) for b in range(scores.shape[0])]).astype(np.int64, copy=False)
        return idx, np.take_along_axis(scores, idx, axis=1)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part.sort(axis=1)
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1).astype(np.int64), np.take_along_axis(vals, order, axis=1)


class Backend(Protocol):
    """A searchable view over the live catalogue rows."""

    name: str

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Labels int64 [B, k'] and scores float32 [B, k'] (k' <= k; -1 labels pad missing results)."""

    def refresh(self, matrix: np.ndarray, alive: np.ndarray, added: np.ndarray | None,
                removed: np.ndarray | None) -> None:
        """Follow a catalogue change (called under the engine's write lock)."""


class ExactBackend:
    """Brute-force inner product (one single-threaded scan per batch, `recengine.scan`)."""

    name = "exact"

    def __init__(self, matrix: np.ndarray, alive: np.ndarray, scanner: Scanner | None = None) -> None:
        self.scanner = scanner
        self.refresh(matrix, alive, None, None)

    def refresh(self, matrix: np.ndarray, alive: np.ndarray, added: np.ndarray | None = None,
                removed: np.ndarray | None = None) -> None:
        self._matrix = matrix
        self._alive = alive
        self._dead_rows = np.flatnonzero(~alive)

    @property
    def dim(self) -> int:
        """Width of the vectors scanned."""
        return int(self._matrix.shape[1])

    def scores(self, queries: np.ndarray) -> np.ndarray:
        scores = inner_products(queries, self._matrix, self.scanner)
        if self._dead_rows.size:
            scores[:, self._dead_rows] = -np.inf
        return scores

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        labels, vals = topk_rows(self.scores(queries), k)
        labels = np.where(np.isfinite(vals), labels, -1)
        return labels, vals.astype(np.float32)


class HnswBackend:
    """hnswlib index over the live rows (`space="ip"`: scores are `1 - distance`).

    With `max_norm` set the index holds the MIPS-to-cosine augmentation `[v, sqrt(max_norm^2 - |v|^2)]`
    (every stored vector has norm `max_norm`) and queries get a 0 appended, so inner products - and
    scores - are unchanged while the graph behaves like a cosine one. Whether that helps is
    data-dependent (measured, recall@10 of the true top 10): on the tiny test bundle's item vectors
    (norms 1.06-1.87) a plain inner-product graph reached 0.85 at ef=50 and 0.93 even at ef >= n (small-
    norm items become unreachable) while the augmented one reached 0.999 at ef=50; on synthetic
    Gaussian vectors with a 15x norm spread it was the other way round (plain 0.995, augmented 0.62 at
    M=8, ef=50). Bundles record it as `index.<name>.transform = "mips_augment"` with `max_norm`; the
    runtime keeps the form it loaded when it rebuilds an index (compaction, `Engine.save`).
    """

    name = "hnsw"

    def __init__(self, index: Any, ef: int, n_live: int, max_norm: float | None = None) -> None:
        self.index = index
        self.ef = int(ef)
        index.set_ef(self.ef)  # hnswlib does not persist ef: set it after every load
        self.n_live = int(n_live)
        self.max_norm = None if max_norm is None else float(max_norm)

    @classmethod
    def load(cls, path: str, dim: int, ef: int, n_live: int, max_norm: float | None = None, *,
             count: int | None = None, M: int | None = None) -> HnswBackend:
        """Load a saved index; `dim` is the stored width (item width + 1 when `max_norm` is set).

        The file is checked first (`recengine.hnsw_file`, against `dim` and the manifest's `count`/`M` when
        given): hnswlib trusts it and a malformed one would kill the interpreter instead of raising.
        """
        import hnswlib

        from .hnsw_file import check_hnsw_file

        check_hnsw_file(path, dim=int(dim), count=count, M=M)
        index = hnswlib.Index(space="ip", dim=int(dim))
        try:
            index.load_index(str(path))
        except Exception as exc:  # hnswlib raises RuntimeError on truncated/garbled files
            raise BundleError(f"{path}: cannot load the HNSW index ({exc})") from None
        return cls(index, ef, n_live, max_norm)

    @staticmethod
    def augment(vectors: np.ndarray, max_norm: float) -> np.ndarray:
        """`[v, sqrt(max_norm^2 - |v|^2)]` (0 for a vector longer than max_norm, e.g. one added live)."""
        v = np.asarray(vectors, dtype=np.float32)
        extra = np.sqrt(np.maximum(max_norm**2 - np.einsum("ij,ij->i", v, v), 0.0)).astype(np.float32)
        return np.ascontiguousarray(np.hstack([v, extra[:, None]]))

    @classmethod
    def build(cls, matrix: np.ndarray, rows: np.ndarray, M: int = 16, ef_construction: int = 200,
              ef: int = 100, augment: bool = False, seed: int = 0, num_threads: int = 1) -> HnswBackend:
        """A fresh index over `matrix[rows]` (labels = rows), MIPS-augmented when `augment`. The one place
        an index is built (export, compaction, `Engine.save`, the latency bench); one thread (the default)
        builds the same graph every time for the same seed."""
        import hnswlib

        data = np.ascontiguousarray(matrix[rows], dtype=np.float32)
        max_norm = None
        if augment:
            max_norm = float(np.sqrt(np.einsum("ij,ij->i", data, data).max())) if rows.size else 1.0
            data = cls.augment(data, max_norm)
        index = hnswlib.Index(space="ip", dim=int(data.shape[1]))
        index.init_index(max_elements=max(16, int(rows.size * 1.25) + 16), M=int(M),
                         ef_construction=int(ef_construction), random_seed=seed)
        if rows.size:
            index.add_items(data, rows.astype(np.int64), num_threads=int(num_threads))
        return cls(index, ef, int(rows.size), max_norm)

    def _queries(self, queries: np.ndarray) -> np.ndarray:
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if self.max_norm is not None:
            q = np.ascontiguousarray(np.hstack([q, np.zeros((q.shape[0], 1), np.float32)]))
        return q

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(int(k), self.n_live)
        if k <= 0:
            return np.zeros((queries.shape[0], 0), np.int64), np.zeros((queries.shape[0], 0), np.float32)
        # No need to raise ef for a large k: hnswlib searches with max(ef, k) itself, and a global set_ef
        # would slow every later query.
        try:
            labels, dist = self.index.knn_query(self._queries(queries), k=k, num_threads=1)
        except RuntimeError:
            # hnswlib could not find k live neighbours (heavy deletions): the caller widens/falls back.
            return np.full((queries.shape[0], 0), -1, np.int64), np.zeros((queries.shape[0], 0), np.float32)
        return labels.astype(np.int64), (1.0 - dist).astype(np.float32)

    def refresh(self, matrix: np.ndarray, alive: np.ndarray, added: np.ndarray | None = None,
                removed: np.ndarray | None = None) -> None:
        if added is not None and added.size:
            need = int(self.index.get_current_count()) + int(added.size)
            if need > self.index.get_max_elements():
                self.index.resize_index(max(need, int(self.index.get_max_elements() * 1.5)))
            data = np.ascontiguousarray(matrix[added], dtype=np.float32)
            if self.max_norm is not None:
                data = self.augment(data, self.max_norm)
            self.index.add_items(data, added.astype(np.int64), num_threads=1)
        if removed is not None:
            for row in removed.tolist():
                try:
                    self.index.mark_deleted(int(row))
                except RuntimeError:
                    pass  # not in the index (already deleted)
        self.n_live = int(alive.sum())

    def spec(self) -> dict[str, Any]:
        """The manifest fields that describe this index's stored form."""
        if self.max_norm is None:
            return {"dim": int(self.index.dim)}
        return {"dim": int(self.index.dim), "transform": "mips_augment", "max_norm": self.max_norm}


def topk_onnx_model(dim: int) -> bytes:
    """Serialized ONNX graph: scores = query @ items^T + bias; TopK(k) (needs the `onnx` package).

    Inputs: query float32 [B, d], items float32 [N, d], bias float32 [N] (0 live / -inf dead), k int64 [1].
    Outputs: values float32 [B, k], indices int64 [B, k].
    """
    from ._deps import require

    onnx = require("onnx", "building the exact-search ONNX graph")
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Gemm", ["query", "items", "bias"], ["scores"], transB=1),
        helper.make_node("TopK", ["scores", "k"], ["values", "indices"], axis=-1, largest=1, sorted=1),
    ]
    graph = helper.make_graph(
        nodes,
        "recengine_exact_topk",
        [
            helper.make_tensor_value_info("query", TensorProto.FLOAT, ["B", dim]),
            helper.make_tensor_value_info("items", TensorProto.FLOAT, ["N", dim]),
            helper.make_tensor_value_info("bias", TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info("k", TensorProto.INT64, [1]),
        ],
        [
            helper.make_tensor_value_info("values", TensorProto.FLOAT, ["B", "K"]),
            helper.make_tensor_value_info("indices", TensorProto.INT64, ["B", "K"]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="recengine")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


class OnnxExactBackend:
    """Exact top-k as an ONNX Runtime graph; on CUDA the item matrix stays on the device (IO binding)."""

    name = "onnx"

    def __init__(self, matrix: np.ndarray, alive: np.ndarray, device: str = "cpu", threads: int | None = None) -> None:
        from .sessions import CPU, CUDA, SessionConfig, ort, session_options

        rt = ort()
        self._rt = rt
        self.device = device
        opts = session_options(SessionConfig(device=device, threads=threads))
        providers: list[Any] = [CUDA, CPU] if device == "cuda" else [CPU]
        self.session = rt.InferenceSession(topk_onnx_model(int(matrix.shape[1])), sess_options=opts,
                                           providers=providers)
        self.provider = self.session.get_providers()[0]
        self._lock = threading.Lock()
        self.refresh(matrix, alive)

    def refresh(self, matrix: np.ndarray, alive: np.ndarray, added: np.ndarray | None = None,
                removed: np.ndarray | None = None) -> None:
        items = np.ascontiguousarray(matrix, dtype=np.float32)
        bias = np.where(alive, 0.0, -np.inf).astype(np.float32)
        self._n = int(items.shape[0])
        self._n_live = int(alive.sum())
        if self.provider == "CUDAExecutionProvider":  # pragma: no cover - GPU only
            self._items = self._rt.OrtValue.ortvalue_from_numpy(items, "cuda", 0)
            self._bias = self._rt.OrtValue.ortvalue_from_numpy(bias, "cuda", 0)
        else:
            self._items, self._bias = items, bias

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(int(k), self._n_live)
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if k <= 0:
            return np.zeros((q.shape[0], 0), np.int64), np.zeros((q.shape[0], 0), np.float32)
        kk = np.array([k], dtype=np.int64)
        if self.provider == "CUDAExecutionProvider":  # pragma: no cover - GPU only
            binding = self.session.io_binding()
            binding.bind_cpu_input("query", q)
            binding.bind_ortvalue_input("items", self._items)
            binding.bind_ortvalue_input("bias", self._bias)
            binding.bind_cpu_input("k", kk)
            binding.bind_output("values", "cpu")
            binding.bind_output("indices", "cpu")
            self.session.run_with_iobinding(binding)
            values, indices = binding.copy_outputs_to_cpu()
        else:
            values, indices = self.session.run(None, {"query": q, "items": self._items, "bias": self._bias, "k": kk})
        return indices.astype(np.int64), values.astype(np.float32)


def choose_backend(requested: str, device: str, n_live: int, batch: int = 1, has_hnsw: bool = True,
                   onnx_ok: bool = True, dim: int = EXACT_DIM) -> str:
    """Backend name for a query batch over `n_live` vectors `dim` wide: see the module docstring."""
    if requested not in BACKENDS:
        raise RequestError(f"retrieval must be one of {', '.join(BACKENDS)}, got {requested!r}")
    if requested != "auto":
        if requested == "hnsw" and not has_hnsw:
            return "exact"
        if requested == "onnx" and not onnx_ok:
            return "exact"
        return requested
    small = n_live * batch * max(dim, 1) <= EXACT_BUDGET * EXACT_DIM
    if device == "cuda" and onnx_ok and not small:
        return "onnx"  # one host->device copy of the queries beats everything but a tiny scan
    if not has_hnsw or small:
        return "exact"
    return "hnsw"


TEXT_INDEX_MODES = ("auto", "hnsw", "scan")
"""`manifest.config.index.text` (the export's `IndexConfig.text`): when the text space gets an HNSW index."""


def text_index_wanted(n_items: int, mode: str = "auto") -> bool:
    """Whether a catalogue of `n_items` items gets an HNSW index over its text space when a bundle is written
    (the export, `Engine.save`): "hnsw" always, "scan" never, "auto" only where a batch-1 `search` on the
    CPU would use it (`choose_backend` with the text space's budget, `TEXT_SCAN_DIM`: past 20,000 items).
    Why not always: below the budget the index is never read by a search, yet it was the largest file of the
    CPU bundle (16.4 of 53.5 MB for MovieLens); the text rows are then stored as float16 `.npy` instead
    (`bundle.format.ITEM_STORED`). A catalogue that grows past the budget by `add_items` is scanned until it
    is saved; the saved bundle then carries the index."""
    if mode not in TEXT_INDEX_MODES:
        raise ValueError(f"text index mode must be one of {', '.join(TEXT_INDEX_MODES)}, got {mode!r}")
    if mode != "auto":
        return mode == "hnsw"
    return choose_backend("auto", "cpu", int(n_items), 1, has_hnsw=True, onnx_ok=False, dim=TEXT_SCAN_DIM) == "hnsw"


def text_index_mode(manifest: Any) -> str:
    """The text index mode a bundle was written with (`config.index.text`), "auto" where the free-form
    `config` section is absent or malformed: what `Engine.save` and the synthetic bench bundle pass to
    `text_index_wanted`."""
    config = manifest.get("config") if isinstance(manifest, dict) else None
    index = config.get("index") if isinstance(config, dict) else None
    mode = index.get("text") if isinstance(index, dict) else None
    return mode if mode in TEXT_INDEX_MODES else "auto"


def _flags(rows: np.ndarray, n: int) -> np.ndarray:
    """Boolean [n] membership mask of `rows` (much faster than np.isin for short candidate lists)."""
    flags = np.zeros(n, dtype=bool)
    flags[rows] = True
    return flags


@dataclass(frozen=True)
class Retrieved:
    """Candidates of one query: rows int64 [c] and retrieval scores float32 [c], best first (float64 where
    `pipeline._blended` scored the co-occurrence blend over the catalogue)."""

    rows: np.ndarray
    scores: np.ndarray


def retrieve(backend: Backend, exact: ExactBackend, matrix: np.ndarray, alive: np.ndarray,
             queries: np.ndarray, k: int, allowed: np.ndarray | None = None,
             exclude: Sequence[np.ndarray] | None = None, small_subset: float = 0.05,
             scores: np.ndarray | None = None, margin: bool = True) -> list[Retrieved]:
    """Top-`k` live rows per query that pass `allowed` and are not in `exclude[b]`.

    Small allowed subsets are scanned exactly; otherwise the backend is over-fetched (by the number of
    exclusions and the inverse of the allowed fraction) and widened until `k` survive or the catalogue is
    exhausted, then an exact scan finishes the job. `scores`: `exact.scores(queries)` already computed (an
    exact scan then reuses them and may overwrite them: pass a copy the caller no longer needs).
    `margin` False: with nothing filtered or excluded, fetch exactly k from an approximate index. The margin
    (1.2k + 8) is for rows the filters and exclusions drop; with none to drop it only raises hnswlib's
    effective ef (it searches with max(ef, k)). That raise is what recall at a large k relies on, so
    `recommend` keeps it; hybrid search's 30 dense fusion candidates do not need it (at ef 32 it cost 2x the
    time; the fused top 10 agreed with the exact fusion as before, bench/results/2026-12-01-search-overlap-cpu-2core).
    """
    n_queries = queries.shape[0]
    exclude = list(exclude) if exclude is not None else [np.zeros(0, np.int64)] * n_queries
    live = alive if allowed is None else (alive & allowed[: alive.shape[0]])
    n_live_total = int(alive.sum())
    n_ok = int(live.sum()) if allowed is not None else n_live_total
    if n_ok == 0 or k <= 0:
        return [Retrieved(np.zeros(0, np.int64), np.zeros(0, np.float32)) for _ in range(n_queries)]
    if allowed is not None and n_ok <= max(small_subset * n_live_total, k):
        rows = np.flatnonzero(live)
        sub = inner_products(queries, matrix[rows], exact.scanner)
        results = []
        for b in range(n_queries):
            s = sub[b : b + 1].copy()
            if exclude[b].size:
                s[0, _flags(exclude[b], alive.shape[0])[rows]] = -np.inf
            idx, vals = topk_rows(s, k)
            keep = np.isfinite(vals[0])
            results.append(Retrieved(rows[idx[0][keep]], vals[0][keep].astype(np.float32)))
        return results
    if backend is exact or isinstance(backend, ExactBackend):
        if scores is None or scores.shape != (n_queries, alive.shape[0]):
            scores = exact.scores(queries)
        if allowed is not None:
            scores[:, ~live] = -np.inf
        for b in range(n_queries):
            if exclude[b].size:
                scores[b, exclude[b]] = -np.inf
        idx, vals = topk_rows(scores, k)
        return [Retrieved(idx[b][np.isfinite(vals[b])], vals[b][np.isfinite(vals[b])].astype(np.float32))
                for b in range(n_queries)]
    fraction = n_ok / max(1, n_live_total)
    # Start small (most excluded items - a user's history - are not near the top) and widen 4x for the
    # queries that come back short: a heavy user's 2,000-item history must not make every query fetch 2,000.
    max_excl = max((e.size for e in exclude), default=0)
    if not margin and fraction >= 1.0 and max_excl == 0:  # nothing to drop: k, at the index's own ef
        fetch = k
    else:
        fetch = int(np.ceil((k + min(max_excl, k)) / fraction * 1.2)) + 8
    pending = list(range(n_queries))
    results: list[Retrieved | None] = [None] * n_queries
    while pending:
        fetch = min(fetch, n_live_total)
        labels, vals = backend.search(queries[pending], fetch)
        still = []
        for j, b in enumerate(pending):
            lab, val = labels[j], vals[j]
            ok = lab >= 0
            ok[ok] &= live[lab[ok]]
            if exclude[b].size:
                ok[ok] &= ~_flags(exclude[b], alive.shape[0])[lab[ok]]
            if ok.sum() >= k:
                results[b] = Retrieved(lab[ok][:k], val[ok][:k])
            else:
                still.append(b)
        if still and (fetch >= n_live_total or labels.shape[1] == 0):
            # The index cannot deliver k survivors (tiny allowed fraction, heavy deletions): scan exactly.
            for b in still:
                s = exact.scores(queries[b : b + 1])
                s[0, ~live] = -np.inf
                if exclude[b].size:
                    s[0, exclude[b]] = -np.inf
                idx, v = topk_rows(s, k)
                keep = np.isfinite(v[0])
                results[b] = Retrieved(idx[0][keep], v[0][keep].astype(np.float32))
            break
        pending = still
        fetch *= 4
    return [r for r in results if r is not None]
