"""Item-to-item and text-to-item lookups: `similar_items` (retrieval space, cosine) and `search` (text space).

Which space serves what: `similar_items` ranks by cosine of the item retrieval vectors (text + graph, so
"similar" means liked by the same people and described alike; inner products would make the most popular
items similar to everything); `search` ranks by cosine of the encoder's text embeddings (a query has no
graph part). Both read an `EngineState` under the engine's read lock.
"""

from __future__ import annotations

import numpy as np

from .retrieval import EXACT_BUDGET, Retrieved, inner_products, retrieve, topk_rows
from .state import EngineState


def similar(st: EngineState, row: int, k: int, allowed: np.ndarray | None) -> Retrieved:
    """Items most similar to `row` by cosine: small catalogues are scanned exactly; large ones take
    20 x k inner-product candidates from the index and re-rank them by cosine."""
    cat = st.catalogue
    unit = cat.unit_vectors
    if cat.n_alive <= EXACT_BUDGET:
        ok = cat.alive.copy()
        ok[row] = False
        if allowed is not None:
            ok &= allowed
        cos = np.where(ok, inner_products(unit[row][None, :], unit)[0], -np.inf)
        idx, vals = topk_rows(cos[None, :], k)
        keep = np.isfinite(vals[0])
        return Retrieved(idx[0][keep], vals[0][keep])
    matrix = cat.vectors
    (r,) = retrieve(st.items_index.backend(cat.n_alive, 1), st.items_index.exact, matrix, cat.alive,
                    matrix[row][None, :].astype(np.float32), 20 * k, allowed=allowed,
                    exclude=[np.array([row], np.int64)])
    cos = unit[r.rows] @ unit[row]
    order = np.argsort(-cos, kind="stable")[:k]
    return Retrieved(r.rows[order], cos[order])


def search(st: EngineState, text: str, k: int, allowed: np.ndarray | None) -> Retrieved:
    """Items whose text embedding is closest to the query's (one encoder run)."""
    cat = st.catalogue
    emb, _ = st.models.encode_batch([text])
    (r,) = retrieve(st.text_index.backend(cat.n_alive, 1), st.text_index.exact, cat.text_embeddings,
                    cat.alive, emb.astype(np.float32), k, allowed=allowed)
    return r


__all__ = ["similar", "search"]
