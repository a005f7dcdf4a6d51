"""Write and open a bundle's HNSW indexes: the one path from vectors to `index/*.hnsw` and back.

The export and `Engine.save` write indexes through `write_index`, so an exported bundle and a re-saved
one hold the same form (the stored-form rule is `recengine.bundle.format.wants_augment`: MIPS-augmented
when vector norms vary, plain otherwise), and the engine serves exactly what was written: no rebuild on
first use.
"""

from __future__ import annotations

import os
import shutil
import threading
import weakref
from typing import Any

import numpy as np

from .bundle.format import IndexSpec, wants_augment
from .data.text import line_value
from .errors import BundleError
from .retrieval import HnswBackend, topk_rows

EF_LADDER = (64, 128, 256, 512, 1024, 2048)
"""The ef values `calibrate_ef` tries after the configured ef_search (those above it), smallest first."""
PROBE_QUERIES = 256
"""Probe queries per index for the ef calibration: what the export and `Engine.save` encode
(`query_like`) or, given none, the catalogue rows `calibrate_ef` samples."""
SCORE_CELLS = 1 << 24
"""Most exact scores `calibrate_ef` holds at once (64 MiB of float32: 16 queries at a time over 1M items)."""

QUERY_WORDS = 8
"""Words of an item's first text field kept for a search-like probe query (`query_like`)."""


def query_like(texts: list[str], n: int, seed: int) -> list[str]:
    """Up to `n` short, search-like texts from sampled catalogue texts: the first 1..`QUERY_WORDS` words
    (a random count) of each one's first `name: value` line (its title, in the data contract's item
    texts). What the text index's ef is calibrated on (`recengine.index_io.calibrate_ef`): search queries
    are short and sit off the item texts' clusters, where HNSW needs a larger ef (MovieLens, ef 128: recall@10
    0.997 for titles with their year, 0.80 without it, 0.85 for tag words)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.choice(len(texts), size=min(n, len(texts)), replace=False).tolist():
        first = texts[i].split("\n", 1)[0]
        words = line_value(first).split()[:QUERY_WORDS]
        if words:
            out.append(" ".join(words[:int(rng.integers(1, len(words) + 1))]))
    return out


def calibrate_ef(backend: HnswBackend, matrix: np.ndarray, rows: np.ndarray, floor: int, min_recall: float,
                 queries: np.ndarray | None = None, k: int = 10, seed: int = 0) -> tuple[int, float]:
    """The smallest ef, `floor` or one of `EF_LADDER` above it, at which `backend` finds at least `min_recall`
    of the exact top-k neighbours among `matrix[rows]` (`rows` in any order) of `queries` (None: up to
    `PROBE_QUERIES` sampled rows, each with itself left out); (ef, the recall measured there). The ladder's
    largest ef when none reaches it.

    Why: one default ef does not fit every space, and what a space needs depends on where its queries fall.
    MovieLens's 384-wide fine-tuned text space found 0.86 of the exact top 10 of real search queries at ef
    128, 0.92 at 256, 0.96 at 512 (2026-11-30), while its own rows as queries found 0.9996 at ef 128: probe
    with queries like the ones served (the export: encoded short title-like texts for the text space, stored
    user vectors for the item space)."""
    rows = np.asarray(rows, np.int64)
    if rows.size <= k + 1:
        return floor, 1.0
    own = queries is None or len(queries) == 0
    if own:  # sampled positions in `rows` (any order): a probe's own column is its position
        pos = np.random.default_rng(seed).choice(rows.size, size=min(PROBE_QUERIES, rows.size), replace=False)
        probe = rows[pos]
        queries = matrix[probe]
    else:
        pos = probe = np.full(len(queries), -1, np.int64)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    every = rows.size == matrix.shape[0] and bool(np.all(rows == np.arange(rows.size)))
    data = np.asarray(matrix, dtype=np.float32) if every else np.ascontiguousarray(matrix[rows], dtype=np.float32)
    exact = np.empty((len(queries), k), np.int64)
    step = max(1, min(64, SCORE_CELLS // max(rows.size, 1)))  # bounded score buffers at any catalogue size
    for start in range(0, len(queries), step):
        scores = queries[start:start + step] @ data.T
        if own:
            scores[np.arange(scores.shape[0]), pos[start:start + step]] = -np.inf
        exact[start:start + step] = rows[topk_rows(scores, k)[0]]
    ladder = [int(floor)] + [ef for ef in EF_LADDER if ef > floor]
    recall = 0.0
    old = backend.ef
    try:
        for ef in ladder:
            backend.index.set_ef(int(ef))
            found, _ = backend.search(queries, k + 1)
            hits = sum(len(set(f[f != p].tolist()[:k]) & set(e.tolist())) for f, e, p in zip(found, exact, probe))
            recall = hits / (len(queries) * k)
            if recall >= min_recall:
                return int(ef), float(recall)
        return int(ladder[-1]), float(recall)
    finally:
        backend.index.set_ef(int(old))


def write_index(writer: Any, name: str, rel: str, matrix: np.ndarray, rows: np.ndarray | None = None, *,
                M: int = 16, ef_construction: int = 200, ef_search: int = 100, seed: int = 0,
                augment: bool | None = None, served: HnswBackend | None = None,
                min_recall: float | None = None, probe: np.ndarray | None = None) -> dict[str, Any]:
    """Store the index of `matrix[rows]` (labels = positions in the written catalogue) at `rel` inside the
    bundle being written and return its `manifest.index.<name>` section.

    `served`: an index whose labels already equal the written rows (nothing removed since it was loaded)
    is saved as it is, so the saved bundle serves identically. Otherwise a new index is built, in the
    form `augment` says (None: the stored-form rule). `min_recall`: the stored ef_search is the smallest
    at or above `ef_search` that reaches it for the `probe` queries (`calibrate_ef`) instead of `ef_search`
    itself."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    if rows is None:
        rows = np.arange(matrix.shape[0], dtype=np.int64)
    if isinstance(served, DeferredIndex) and not served.loaded and served.index_spec.count == rows.size:
        # never loaded, so never changed (a live update loads it first): the file as it was opened, unloaded
        served.copy_to(writer.path(rel))
        out = IndexSpec(path=rel, dim=served.index_spec.dim, M=int(M), ef_construction=int(ef_construction),
                        ef_search=int(ef_search), count=int(rows.size), max_norm=served.max_norm)
        return out.manifest()
    if isinstance(served, DeferredIndex):
        served = served.backend()
    if served is None:
        if augment is None:
            augment = wants_augment(matrix[rows])
        served = HnswBackend.build(matrix, rows, M=M, ef_construction=ef_construction, ef=ef_search,
                                   augment=augment, seed=seed)
    if min_recall is not None:
        ef_search, _ = calibrate_ef(served, matrix, rows, int(ef_search), float(min_recall), queries=probe, seed=seed)
    served.index.save_index(str(writer.path(rel)))
    spec = IndexSpec(path=rel, dim=int(served.index.dim), M=int(M), ef_construction=int(ef_construction),
                     ef_search=int(ef_search), count=int(rows.size), max_norm=served.max_norm)
    return spec.manifest()


def open_index(path: str, spec: IndexSpec, ef: int | None, n_live: int, checked: bool = False) -> HnswBackend:
    """Load a stored index for serving (ef: the request's override, else the manifest's `ef_search`).

    The whole file is checked first (`recengine.hnsw_file`: hnswlib trusts it), unless `checked` says the
    caller has just done that (`BundleReader.index_rows` checks it while reading the rows it holds)."""
    if not checked:
        return HnswBackend.load(path, spec.dim, int(ef or spec.ef_search), n_live, max_norm=spec.max_norm,
                                count=spec.count, M=spec.M)
    import hnswlib

    index = hnswlib.Index(space="ip", dim=int(spec.dim))
    try:
        index.load_index(str(path))
    except Exception as exc:  # hnswlib raises RuntimeError on truncated/garbled files
        raise BundleError(f"{path}: cannot load the HNSW index ({exc})") from None
    return HnswBackend(index, int(ef or spec.ef_search), n_live, max_norm=spec.max_norm)


class DeferredIndex:
    """A stored HNSW index that hnswlib loads on first use (a search, a live update, a save).

    Why: loading costs time at open (~1 s per million items) and memory for as long as the engine lives
    (the index's own copy of the vectors), yet `recommend` never reads the text index, and a small enough
    space is searched exactly (`retrieval.choose_backend`: items x width within the scan budget; MovieLens's
    384-wide text space is not: its first `search` or `Engine.warmup` loads it, 0.02 s).
    The file's whole structure is checked when the bundle is opened (a bad index is refused by
    `Engine.open`, as before); the load re-checks it (`HnswBackend.load`), and it reads the file through
    a descriptor opened at `Engine.open`, so a bundle replaced on disk since (`save(force=True)` swaps
    directories) cannot hand this engine another bundle's index.

    It stands in for the `HnswBackend` (same attributes and methods); `ef` and `max_norm` are known
    without loading. Thread-safe: concurrent first uses load once.
    """

    name = "hnsw"

    def __init__(self, path: str, spec: IndexSpec, ef: int | None, n_live: int) -> None:
        self.path = path
        self.index_spec = spec
        self.ef = int(ef or spec.ef_search)
        self.max_norm = spec.max_norm
        self._n_live = int(n_live)
        self._loaded: HnswBackend | None = None
        self._lock = threading.Lock()
        self._fd: int | None = os.open(path, os.O_RDONLY)
        self._finalizer = weakref.finalize(self, os.close, self._fd)

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    def backend(self) -> HnswBackend:
        """The loaded index (loading it now if needed)."""
        if self._loaded is None:
            with self._lock:
                if self._loaded is None:
                    self._loaded = self._load()
        return self._loaded

    def _opened_path(self) -> str:
        """A path to the very file opened at `Engine.open` (Linux `/proc/self/fd`), else the original path
        if it still names that file; BundleError if the file was replaced."""
        proc = f"/proc/self/fd/{self._fd}"
        if os.path.exists(proc):
            return proc
        if not _same_file(self._fd, self.path):
            raise BundleError(f"{self.path}: the index file changed on disk since the bundle was opened; reload "
                              "the engine")
        return self.path

    def _load(self) -> HnswBackend:
        backend = open_index(self._opened_path(), self.index_spec, self.ef, self._n_live)  # checked again
        self._finalizer()  # the descriptor is not needed any more
        return backend

    def copy_to(self, target: str | os.PathLike[str]) -> None:
        """Copy the stored file, unloaded (`Engine.save` of an index nothing changed)."""
        with self._lock:
            source = self._opened_path() if self._loaded is None else self.path
            with open(source, "rb") as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)

    # --- the HnswBackend surface ---
    @property
    def index(self) -> Any:
        return self.backend().index

    @property
    def n_live(self) -> int:
        return self._n_live if self._loaded is None else self._loaded.n_live

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.backend().search(queries, k)

    def spec(self) -> dict[str, Any]:
        """As `HnswBackend.spec` (known without loading)."""
        if self.max_norm is None:
            return {"dim": self.index_spec.dim}
        return {"dim": self.index_spec.dim, "transform": "mips_augment", "max_norm": self.max_norm}

    def refresh(self, matrix: np.ndarray, alive: np.ndarray, added: np.ndarray | None = None,
                removed: np.ndarray | None = None) -> None:
        self.backend().refresh(matrix, alive, added, removed)

    def __getattr__(self, name: str) -> Any:  # anything else HnswBackend has
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.backend(), name)


def _same_file(fd: int, path: str) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns) == (b.st_dev, b.st_ino, b.st_size, b.st_mtime_ns)


def open_deferred(path: str, spec: IndexSpec, ef: int | None, n_live: int) -> DeferredIndex:
    """An index for serving that hnswlib loads on first use (`DeferredIndex`); the caller has checked the
    file's structure (`recengine.hnsw_file.check_hnsw_file`)."""
    return DeferredIndex(path, spec, ef, n_live)


__all__ = ["write_index", "open_index", "open_deferred", "DeferredIndex"]
