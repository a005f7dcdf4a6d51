"""Write and open a bundle's HNSW indexes: the one path from vectors to `index/*.hnsw` and back.

The export and `Engine.save` write indexes through `write_index`, so an exported bundle and a re-saved
one hold the same form (the stored-form rule is `recengine.bundle.format.wants_augment`: MIPS-augmented
when vector norms vary, plain otherwise), and the engine serves exactly what was written: no rebuild on
first use.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .bundle.format import IndexSpec, wants_augment
from .retrieval import HnswBackend


def write_index(writer: Any, name: str, rel: str, matrix: np.ndarray, rows: np.ndarray | None = None, *,
                M: int = 16, ef_construction: int = 200, ef_search: int = 100, seed: int = 0,
                augment: bool | None = None, served: HnswBackend | None = None) -> dict[str, Any]:
    """Store the index of `matrix[rows]` (labels = positions in the written catalogue) at `rel` inside the
    bundle being written and return its `manifest.index.<name>` section.

    `served`: an index whose labels already equal the written rows (nothing removed since it was loaded)
    is saved as it is, so the saved bundle serves identically. Otherwise a new index is built, in the
    form `augment` says (None: the stored-form rule)."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    if rows is None:
        rows = np.arange(matrix.shape[0], dtype=np.int64)
    if served is None:
        if augment is None:
            augment = wants_augment(matrix[rows])
        served = HnswBackend.build(matrix, rows, M=M, ef_construction=ef_construction, ef=ef_search,
                                   augment=augment, seed=seed)
    served.index.save_index(str(writer.path(rel)))
    spec = IndexSpec(path=rel, dim=int(served.index.dim), M=int(M), ef_construction=int(ef_construction),
                     ef_search=int(ef_search), count=int(rows.size), max_norm=served.max_norm)
    return spec.manifest()


def open_index(path: str, spec: IndexSpec, ef: int | None, n_live: int) -> HnswBackend:
    """Load a stored index for serving (ef: the request's override, else the manifest's `ef_search`)."""
    return HnswBackend.load(path, spec.dim, int(ef or spec.ef_search), n_live, max_norm=spec.max_norm)


__all__ = ["write_index", "open_index"]
