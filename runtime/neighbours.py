"""Item-to-item and text-to-item lookups: `similar_items` (retrieval space, cosine) and `search` (text space).

Which space serves what: `similar_items` ranks by cosine of the item retrieval vectors (text + graph, so
"similar" means liked by the same people and described alike; inner products would make the most popular
items similar to everything); `search` ranks by cosine of the encoder's text embeddings (a query has no
graph part) fused with BM25 over the item texts (`recengine.lexical`), so an item named by its words is
found even where the fine-tuned text space has drifted from the pre-trained one. Both read an
`EngineState` under the engine's read lock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .lexical import LexicalQuery
from .overlap import Job
from .retrieval import EXACT_BUDGET, ExactBackend, Retrieved, retrieve, topk_rows
from .scan import inner_products
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
        cos = np.where(ok, inner_products(unit[row][None, :], unit, st.items_index.exact.scanner)[0], -np.inf)
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


SEARCH_CANDIDATES = 100
"""Candidates the lexical ranking contributes to the fusion (at least k)."""
DENSE_CANDIDATES = 30
"""Candidates the dense ranking contributes to the fusion (at least k)."""
RRF_K = 60.0
"""Reciprocal-rank fusion constant: score = sum over rankings of 1 / (RRF_K + rank), rank from 1."""
LEXICAL_WEIGHT = 1.0
"""`sum` fusion: (cosine + LEXICAL_WEIGHT * (bm25 / s) ** LEXICAL_POWER) / (1 + LEXICAL_WEIGHT), s by
`LEXICAL_SCALE`: a score <= 1 like the cosine it replaces (the cosine itself where no query word is in the
catalogue)."""
SCALES = ("best", "full")
LEXICAL_SCALE = "full"
"""What `sum` fusion divides BM25 by. "best": the best candidate's BM25, so the best lexical match counts
fully however little of the query it matches. "full": at least `LexicalQuery.full`, what an average-length
item holding every query word scores, so a partial match counts for the share of the query it matches."""
LEXICAL_POWER = 2.0
"""`sum` fusion raises the scaled BM25 (<= 1) to this power, so lexical evidence counts by the square of the
share of the query an item matches: a whole title typed keeps its full weight, an item sharing one rare word
with a plot description ("toys" in "funny animated movie for kids about toys") a small one, and the
pre-trained encoder's semantics decide. Chosen on MovieLens and MovieLens-100K with the split encoder and
confirmed on Book-Crossing (bench/results/2026-11-30-search-split-cpu-2core): against "best" scale at power 1
(the fusion served before) known-item hit@1 and attribute P@10 within a query or two, plot descriptions
found 9 of 10 on MovieLens instead of 5 (the pre-trained encoder alone: 8)."""
FUSIONS = ("rrf", "sum")
FUSION = "sum"
"""The fusion `search` serves with (chosen by `recengine bench search` on MovieLens, docs/bench.md)."""


def lexical_top(lex: np.ndarray, ok: np.ndarray, n: int) -> np.ndarray:
    """Rows of the `n` best positive scores of a dense BM25 vector among `ok` rows, best first (ties: lower
    row first); the reference for `LexicalQuery.top`, which never builds the dense vector."""
    rows = np.flatnonzero(lex)
    rows = rows[ok[rows]]
    return rows[np.lexsort((rows, -lex[rows]))][:n]


def fuse(dense_rows: np.ndarray, dense_scores: np.ndarray, cosine: Callable[[np.ndarray], np.ndarray],
         lex_rows: np.ndarray, lex_scores: np.ndarray, lexical: Callable[[np.ndarray], np.ndarray], k: int,
         method: str = FUSION, weight: float = LEXICAL_WEIGHT, full: float = 0.0,
         power: float = LEXICAL_POWER, lex_cosine: Callable[[np.ndarray], np.ndarray] | None = None) -> Retrieved:
    """Fuse a dense ranking (`dense_rows` best first, their cosines `dense_scores`) with a lexical one
    (`lex_rows` best first, their BM25 `lex_scores`). `cosine(rows)` gives the cosine of rows outside the
    dense ranking (`lex_cosine(mask)`, when given, instead: the cosine of `lex_rows[mask]`, for a caller that
    holds those rows' vectors already) and `lexical(rows)`
    the BM25 of rows outside the lexical one (`sum` scores every candidate on both, BM25 divided by the
    larger of the best candidate's and `full`: see `LEXICAL_SCALE`)."""
    if method not in FUSIONS:
        raise ValueError(f"fusion must be one of {FUSIONS}, got {method!r}")
    if lex_rows.size == 0:  # no query word in the catalogue: the dense ranking as it is
        return Retrieved(dense_rows[:k].astype(np.int64), dense_scores[:k].astype(np.float32))
    is_extra = ~_member(lex_rows, dense_rows)
    extra = lex_rows[is_extra].astype(np.int64, copy=False)
    rows = np.concatenate([dense_rows.astype(np.int64, copy=False), extra])
    if method == "rrf":
        score = np.zeros(rows.size, np.float64)
        score[: dense_rows.size] = 1.0 / (RRF_K + np.arange(1, dense_rows.size + 1))
        pos = {r: i for i, r in enumerate(rows.tolist())}
        for rank, r in enumerate(lex_rows.tolist()):
            score[pos[r]] += 1.0 / (RRF_K + rank + 1)
    else:
        extra_cos = cosine(extra) if lex_cosine is None else lex_cosine(is_extra)
        cos = np.concatenate([dense_scores.astype(np.float32, copy=False),
                              extra_cos.astype(np.float32, copy=False)]) if extra.size else dense_scores
        lex = np.concatenate([lexical(dense_rows).astype(np.float32, copy=False),
                              lex_scores[is_extra].astype(np.float32, copy=False)])
        score = sum_scores(cos, lex, float(lex_scores[0]), weight, full, power)
    order = np.argsort(-score, kind="stable")[:k]
    return Retrieved(rows[order], score[order].astype(np.float32))


def _member(rows: np.ndarray, among: np.ndarray) -> np.ndarray:
    """Which of `rows` are in `among` (by binary search in it sorted: 2-4x faster than a set or `np.isin`
    for the ~100 x 30 rows of a fusion)."""
    if among.size == 0:
        return np.zeros(rows.size, bool)
    ordered = np.sort(among)
    return ordered.take(np.searchsorted(ordered, rows), mode="clip") == rows


def sum_scores(cos: np.ndarray, lex: np.ndarray, best: float, weight: float = LEXICAL_WEIGHT,
               full: float = 0.0, power: float = LEXICAL_POWER) -> np.ndarray:
    """The `sum` fusion rule, the one place it is written: (cosine + weight * (bm25 / s) ** power) / (1 + weight),
    s the larger of `best` (the best BM25 among the rows that may be returned) and `full` (see `LEXICAL_SCALE`,
    `LEXICAL_POWER`); always <= 1 like a cosine."""
    scale = max(float(best), float(full), 1e-12)
    share = lex.astype(np.float32, copy=False) * np.float32(1.0 / scale)
    if power != 1.0:
        share = share ** np.float32(power)
    return (cos.astype(np.float32, copy=False) + np.float32(weight) * share) / np.float32(1.0 + weight)


def fuse_scanned(cos: np.ndarray, lex: np.ndarray, k: int, weight: float = LEXICAL_WEIGHT,
                 full: float = 0.0, power: float = LEXICAL_POWER) -> Retrieved:
    """`sum` fusion over every row of a scanned space: `cos` the cosine of every row (-inf where a row may not
    be returned: removed, filtered out), `lex` its BM25 (0 where no query word occurs). The exact top k of
    what `fuse` computes over candidates only; on a catalogue small enough to scan, computing it for every
    row is cheaper than gathering candidates (measured on Book-Crossing, 1,928 books: ~0.1 ms less per query,
    bench/results/2026-11-30-search-scanned-cpu-2core), and no row outside both candidate lists is missed."""
    ok = np.isfinite(cos)
    best = float(lex[ok].max()) if ok.any() else 0.0
    score = cos if best <= 0.0 else sum_scores(cos, lex, best, weight, full, power)
    idx, vals = topk_rows(score[None, :], k)
    keep = np.isfinite(vals[0])
    return Retrieved(idx[0][keep], vals[0][keep].astype(np.float32))


@dataclass(frozen=True)
class LexicalHalf:
    """What hybrid search takes from BM25, computed without the query embedding, so `search` can run it on
    the engine's helper thread while the encoder runs (`recengine.overlap`)."""

    query: LexicalQuery
    scanned: bool
    """True: the text space is scanned exactly and `scores` is the BM25 of every row (`fuse_scanned`)."""
    rows: np.ndarray
    """Candidates (`scanned` False): the lexical top max(k, `SEARCH_CANDIDATES`) rows, best first."""
    scores: np.ndarray
    """The BM25 of `rows` (candidates) or of every row (scanned)."""
    vectors: np.ndarray | None
    """Candidates, when the half runs beside the encoder (`gather`): the text embeddings of `rows`, gathered
    there, since fetching ~100 random rows of a large matrix (~45 µs at 110k x 384) costs more than
    multiplying them by the query. None: the fusion fetches the rows it needs (those not among the dense
    candidates) itself."""
    full: float
    """`LexicalQuery.full` when the fusion scale is "full", else 0."""


def scans_text(st: EngineState, fusion: str = FUSION) -> bool:
    """Whether hybrid search over `st` scores every row (`fuse_scanned`: "sum" fusion over a text space
    scanned exactly) rather than fusing candidate lists."""
    return fusion == "sum" and isinstance(st.text_index.backend(st.catalogue.n_alive, 1), ExactBackend)


def lexical_half(st: EngineState, text: str, k: int, allowed: np.ndarray | None, scanned: bool,
                 scale: str = LEXICAL_SCALE, gather: bool = False) -> LexicalHalf:
    """The BM25 side of a hybrid search of `text` (see `search_embedded`); `gather`: also fetch the
    candidates' text embeddings (worth it off the caller's thread only: inline, the fusion fetches just the
    rows it lacks)."""
    assert st.lexical is not None
    cat = st.catalogue
    lq = st.lexical.query(text)
    full = lq.full if scale == "full" and not lq.empty else 0.0
    none = np.zeros(0, np.int64)
    if scanned:  # no query word in the catalogue: an all-zero BM25
        return LexicalHalf(lq, True, none, lq.dense(cat.n_rows), None, full)
    if lq.empty:
        return LexicalHalf(lq, False, none, np.zeros(0, np.float32), None, 0.0)
    if allowed is not None:
        ok: np.ndarray | None = cat.alive & allowed[: cat.n_rows]
    else:  # no filter and no removed row: nothing to mask
        ok = None if cat.n_alive == cat.n_rows and st.lexical.n_rows <= cat.n_rows else cat.alive
    rows, scores = lq.top(max(k, SEARCH_CANDIDATES), ok)
    return LexicalHalf(lq, False, rows, scores, cat.text_embeddings[rows] if gather else None, full)


def search_embedded(st: EngineState, emb: np.ndarray, text: str, k: int, allowed: np.ndarray | None,
                    mode: str = "hybrid", fusion: str = FUSION, weight: float = LEXICAL_WEIGHT,
                    scale: str = LEXICAL_SCALE, power: float = LEXICAL_POWER,
                    half: LexicalHalf | None = None) -> Retrieved:
    """`search` for a query already encoded (`emb`: its `text_embedding`, [text]). mode "dense": cosine over
    the text embeddings only (the search of recengine <= 0.1); "hybrid": that fused with BM25 over the item
    texts (`st.lexical`): `max(k, DENSE_CANDIDATES)` dense and `max(k, SEARCH_CANDIDATES)` lexical candidates
    (the exact BM25 top, pruned: only the rare query words' posting lists are scanned), fused by `fusion`
    ("sum": (cosine + weight * (bm25 / s) ** power) / (1 + weight), s by `scale`, see `LEXICAL_SCALE`; "rrf":
    reciprocal-rank fusion). Where the text space is scanned exactly, "sum" is computed for every row
    instead (`fuse_scanned`: the exact top k of the same rule, and cheaper than gathering candidates).
    `half`: the BM25 side already computed (`lexical_half`, same text, k, filter and scale), else computed
    here."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    cat = st.catalogue
    q = np.ascontiguousarray(emb, dtype=np.float32).reshape(1, -1)
    lexical = st.lexical if mode == "hybrid" else None
    backend = st.text_index.backend(cat.n_alive, 1)
    scanned = lexical is not None and fusion == "sum" and isinstance(backend, ExactBackend)
    if lexical is not None and (half is None or half.scanned != scanned):
        half = lexical_half(st, text, k, allowed, scanned, scale)
    if scanned:
        assert half is not None and isinstance(backend, ExactBackend)
        cos = backend.scores(q)[0]
        if allowed is not None:
            cos[~allowed[: cos.size]] = -np.inf
        bm25 = half.scores if half.scores.size == cos.size else half.query.dense(cos.size)
        return fuse_scanned(cos, bm25, k, weight, half.full, power)
    n = k if lexical is None else max(k, DENSE_CANDIDATES)
    (r,) = retrieve(backend, st.text_index.exact, cat.text_embeddings, cat.alive, q, n, allowed=allowed,
                    margin=lexical is None)
    if lexical is None or half is None:
        return r
    if half.rows.size == 0:
        return fuse(r.rows, r.scores, _no_rows, half.rows, half.scores, _no_rows, k, fusion, weight)
    unit, vectors = cat.text_embeddings, half.vectors
    # the cosine of the lexical rows outside the dense candidates, one product over those rows either way
    # (gathered beside the encoder, or fetched here), so the helper never changes a score by a rounding
    return fuse(r.rows, r.scores, lambda rows: unit[rows] @ q[0], half.rows, half.scores, half.query.score, k,
                fusion, weight, full=half.full, power=power,
                lex_cosine=None if vectors is None else (lambda mask: vectors[mask] @ q[0]))


def _no_rows(rows: np.ndarray) -> np.ndarray:
    return np.zeros(len(rows), np.float32)


def search(st: EngineState, text: str, k: int, allowed: np.ndarray | None, mode: str = "hybrid") -> Retrieved:
    """Items for a text query: the encoder's text embedding (one encoder run) by cosine, fused with BM25
    over the item texts (see `search_embedded`). The BM25 side runs on the engine's helper thread while
    the encoder runs, when the engine has one and it is free (`recengine.overlap`), else after it."""
    helper = st.helper if mode == "hybrid" and st.lexical is not None else None
    if helper is None:
        return search_embedded(st, st.models.encode_queries([text])[0], text, k, allowed, mode)
    jobs: list[Job[LexicalHalf] | None] = []
    scanned = scans_text(st)

    def start() -> None:
        jobs.append(helper.submit(lambda: lexical_half(st, text, k, allowed, scanned, gather=True)))

    try:
        emb = st.models.encode_queries([text], started=start)
    except BaseException:
        if jobs and jobs[0] is not None:  # the job never outlives the read lock this call runs under
            jobs[0].cancel()
        raise
    job = jobs[0] if jobs else None
    return search_embedded(st, emb[0], text, k, allowed, mode, half=None if job is None else job.result())


__all__ = ["similar", "search", "search_embedded", "fuse", "fuse_scanned", "sum_scores", "lexical_top", "FUSION",
           "FUSIONS", "LexicalHalf", "lexical_half", "scans_text"]
