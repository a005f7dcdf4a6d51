"""The serving pipeline: the one scoring path of recengine.

    prepare (request -> rows and codes) -> user vectors (+ co-occurrence signal) -> retrieve candidates
    (the user vector's nearest items + the items the history co-occurs with) -> fuse -> finish

`serve` runs it for `Engine.recommend`/`recommend_batch`; `score_catalogue` runs the same stages with exact
retrieval and returns full score rows over the catalogue (candidates re-scored by the fusion head and
ranked above every other item, as served), which is what the export's validation of every variant and
`recengine bench quality` measure. A change to how recengine scores is made here, once.

Every function reads an `EngineState` under the engine's read lock (the caller holds it) and writes
nothing to it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .cooccur import Signal, blend_term, dense_signal
from .errors import RequestError
from .filters import build_mask
from .requests import (
    MAX_CANDIDATES,
    MAX_K,
    Recommendation,
    Recommendations,
    RecommendRequest,
    RowQuery,
    check_flag,
    check_float,
    check_id,
    check_ids,
    check_int,
)
from .rerank import explain, long_tail_boost, mmr
from .retrieval import ExactBackend, OnnxExactBackend, Retrieved, retrieve, topk_rows
from .scan import inner_products
from .state import EngineState


class Counters:
    """Thread-safe request counters (`Engine.stats` is the dict they fill)."""

    def __init__(self) -> None:
        self.data: dict[str, int] = {"requests": 0, "unknown_history_items": 0, "cold_requests": 0}
        self._lock = threading.Lock()

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.data[key] = self.data.get(key, 0) + n

    def merge(self, other: Counters) -> None:
        """Add every count of `other` (a call's own counters, kept apart until the call succeeded)."""
        with other._lock:
            items = list(other.data.items())
        with self._lock:
            for key, n in items:
                self.data[key] = self.data.get(key, 0) + n


@dataclass
class Query:
    """One request resolved to catalogue rows and codes; `vector` is filled by `user_vectors`."""

    scene: np.ndarray
    profile: np.ndarray
    history: np.ndarray
    exclude: np.ndarray
    k: int = 10
    cands: int = 200
    allowed: np.ndarray | None = None
    skipped: tuple[Any, ...] = ()
    vector: np.ndarray | None = None
    source: str = "stored"
    needs_tower: bool = False
    long_tail: float = 0.0
    diversity: float = 0.0
    explain: bool = False
    fresh: float = 0.0
    cooc: Signal | None = None
    """The history's co-occurrence signal, filled by `cooccur_signals`."""
    blended: bool = False
    """Set by `candidates` when the co-occurrence blend was scored over the whole catalogue (`_blended`): the
    candidates' scores already hold it, and `fuse` adds nothing."""


def _rows(vectors: list[np.ndarray]) -> np.ndarray:
    """Stack per-query vectors into a batch (no copy for the common single query)."""
    return vectors[0][None, :] if len(vectors) == 1 else np.stack(vectors)


# ---------------------------------------------------------------------------------------------- prepare
def prepare(st: EngineState, req: RecommendRequest, counters: Counters | None = None) -> Query:
    """Validate a request and resolve it to rows and codes (which user vector it needs, what to exclude)."""
    cat = st.catalogue
    k = check_int("k", req.k, 1, MAX_K)
    cands = st.default_candidates if req.candidates is None else check_int("candidates", req.candidates, 1,
                                                                            MAX_CANDIDATES)
    long_tail = check_float("long_tail", req.long_tail, 0.0, 100.0)
    diversity = check_float("diversity", req.diversity, 0.0, 1.0)
    fresh = check_float("fresh", req.fresh, 0.0, 1.0)
    exclude_seen = check_flag("exclude_seen", req.exclude_seen)
    want_explain = check_flag("explain", req.explain)
    scene = st.scene.encode(req.scene)
    user_row = None
    if req.user_id is not None:
        user_row = st.users.row_of.get(check_id("user_id", req.user_id))
    profile = st.users.profiles[user_row].copy() if user_row is not None else np.zeros(st.profile.slots, np.int64)
    if req.profile is not None:
        override = st.profile.encode(req.profile)
        given = [st.profile.columns.index(st.profile.column_for(key)) for key in req.profile]
        profile[given] = override[given]
    # stored histories name rows as they were when written: an item re-added since has a new row
    stored = cat.current_rows(st.users.history(user_row)) if user_row is not None else np.zeros(0, np.int64)
    skipped: tuple[Any, ...] = ()
    if req.history is not None:
        ids = check_ids("history", req.history)
        history, unknown = cat.rows_of(ids)
        skipped = tuple(unknown)
        if unknown and counters is not None:
            counters.add("unknown_history_items", len(unknown))
    else:
        history = stored[cat.alive[stored]] if stored.size else stored
    if not exclude_seen:
        exclude = np.zeros(0, np.int64)
    elif req.history is None:
        exclude = stored
    else:
        exclude = np.unique(np.concatenate([stored, history]))
    q = Query(scene=scene, profile=profile, history=history, exclude=exclude, k=k, cands=cands,
              allowed=build_mask(req.filter, cat.row_of, cat.attrs, cat.n_rows), skipped=skipped,
              long_tail=long_tail, diversity=diversity, explain=want_explain, fresh=fresh)
    contextual = bool(req.scene) or bool(req.profile)
    if req.history is not None:
        q.source, q.needs_tower = "history", True
        if history.size == 0 and not contextual:
            q.source, q.needs_tower = "popular", False
    elif user_row is not None:
        if contextual:  # stored vectors assume an unknown scene: recompute with this one
            q.source, q.needs_tower = "history", True
        else:
            q.vector = st.users.vectors[user_row]
    elif contextual:
        q.source, q.needs_tower = "cold", True
    else:
        q.source = "popular"
    return q


def prepare_rows(st: EngineState, rq: RowQuery) -> Query:
    """A `RowQuery` (rows and codes given) as a query for the user tower: what `prepare` makes of a request
    with `history`, `scene` and `profile`, for hosts and evaluations that hold rows, not ids."""
    cat = st.catalogue
    history = np.asarray(rq.history, dtype=np.int64)
    exclude = np.asarray(rq.exclude, dtype=np.int64)
    for name, rows in (("history", history), ("exclude", exclude)):
        if rows.size and (rows.min() < 0 or rows.max() >= cat.n_rows):
            raise RequestError(f"{name} rows must lie in [0, {cat.n_rows}), got {rows.min()}..{rows.max()}")
    scene = np.asarray(rq.scene, dtype=np.int64).reshape(-1)
    profile = np.asarray(rq.profile, dtype=np.int64).reshape(-1)
    if scene.size != st.scene.slots or profile.size != st.profile.slots:
        raise RequestError(f"scene/profile codes must have {st.scene.slots}/{st.profile.slots} slots, got "
                           f"{scene.size}/{profile.size}")
    history = history[cat.alive[history]] if history.size else history
    return Query(scene=scene, profile=profile, history=history, exclude=exclude,
                 k=check_int("k", rq.k, 1, MAX_K), cands=st.default_candidates, source="history", needs_tower=True,
                 fresh=check_float("fresh", rq.fresh, 0.0, 1.0),
                 long_tail=check_float("long_tail", rq.long_tail, 0.0, 100.0))


# ---------------------------------------------------------------------------------------------- stages
def user_vectors(st: EngineState, queries: Sequence[Query], independent: bool = False) -> None:
    """Fill `vector` of every query that needs the user tower (one run for all, or one per query when
    `independent`: an INT8 tower quantizes its activations with one scale per run and pads histories to the
    longest, so a shared run's vectors depend on the other queries in the last bits); a tower output that
    is zero or not finite leaves the query on the popularity fallback."""
    todo = [q for q in queries if q.needs_tower]
    if not todo:
        return
    models, items = st.models, st.catalogue.vectors
    if independent and len(todo) > 1:
        vectors = np.concatenate([models.user_vectors([q.history], items, q.scene[None, :], q.profile[None, :])
                                  for q in todo])
    else:
        vectors = models.user_vectors([q.history for q in todo], items, _rows([q.scene for q in todo]),
                                      _rows([q.profile for q in todo]))
    for q, v in zip(todo, vectors):
        if np.all(np.isfinite(v)) and float(np.abs(v).sum()) > 0:
            q.vector = v
        else:
            q.source = "popular"


def cooccur_signals(st: EngineState, queries: Sequence[Query]) -> None:
    """Fill `cooc` of every query that has a user vector and a history, when the bundle blends co-occurrence
    into its scores (`recengine.cooccur`)."""
    co = st.cooccur
    if co is None or co.weight <= 0:
        return
    alive = st.catalogue.alive
    for q in queries:
        if q.vector is not None and q.history.size and q.cooc is None:
            q.cooc = co.signal(q.history, alive)


def candidates(st: EngineState, queries: Sequence[Query], exact: bool = False,
               scores: dict[int, np.ndarray] | None = None, independent: bool = False) -> dict[int, Retrieved]:
    """Top max(cands, k) live rows per query, filters and exclusions applied. Where the catalogue is within
    the scan budget and the bundle blends co-occurrence without a fusion head, by the blended score over the
    whole catalogue (`_blended`); otherwise by inner product, plus as many of the items the history co-occurs
    with most (`_with_cooccur`). Queries without a filter are retrieved as one batch. `exact` scans the whole
    catalogue (evaluation); `scores` (query index -> its retrieval scores over every row, what the exact scan
    computes) lets it reuse scores the caller already has. `independent`: the backend is the one a single
    query would get (`choose_backend` at batch 1), so a batch never trades a query's exact scan for HNSW;
    where that backend is approximate (HNSW, past the scan budget), each query is searched on its own, since
    an index search's fetch depth follows the batch's largest k and exclusion list (an exact backend's deeper
    fetch only adds to the same top)."""
    cat = st.catalogue
    space = st.items_index
    matrix = cat.vectors
    out: dict[int, Retrieved] = {}
    with_vec = [i for i, q in enumerate(queries) if q.vector is not None]
    plain = [i for i in with_vec if queries[i].allowed is None]
    backend = space.exact if exact else space.backend(cat.n_alive, 1 if independent else len(plain))
    exact_backend = isinstance(backend, (ExactBackend, OnnxExactBackend))
    whole = _blended_candidates(st, queries, with_vec, scores if exact else None)
    out.update(whole)
    plain = [i for i in plain if i not in whole]
    for group in ([plain] if plain and (exact_backend or not independent) else [[i] for i in plain]):
        n_fetch = max(max(queries[i].cands, queries[i].k) for i in group)
        vecs = _rows([queries[i].vector for i in group]).astype(np.float32, copy=False)  # type: ignore[misc]
        known = np.stack([scores[i] for i in group]) if exact and scores is not None and \
            all(i in scores for i in group) else None  # a new array: retrieve may write into it
        got = retrieve(backend, space.exact, matrix, cat.alive, vecs, n_fetch,
                       exclude=[queries[i].exclude for i in group], scores=known)
        for i, r in zip(group, got):
            c = max(queries[i].cands, queries[i].k)
            out[i] = Retrieved(r.rows[:c], r.scores[:c])
    for i in with_vec:
        q = queries[i]
        if q.allowed is not None and i not in whole:
            backend = space.exact if exact else space.backend(cat.n_alive, 1)
            (out[i],) = retrieve(backend, space.exact, matrix, cat.alive,
                                 q.vector[None, :].astype(np.float32), max(q.cands, q.k),  # type: ignore[index]
                                 allowed=q.allowed, exclude=[q.exclude])
    for i in with_vec:
        if i in whole:
            continue
        c = queries[i].cooc
        if c is not None and c.rows.size:
            out[i] = _with_cooccur(st, queries[i], out[i])
        if queries[i].fresh > 0:
            out[i] = _with_fresh(st, queries[i], out[i], exact)
    return out


def _blended_candidates(st: EngineState, queries: Sequence[Query], with_vec: list[int],
                        scores: dict[int, np.ndarray] | None) -> dict[int, Retrieved]:
    """`_blended` candidates of the queries it applies to: the bundle blends co-occurrence without a fusion
    head (the head scores candidates only), the catalogue is within the scan budget of one query
    (`SpaceIndex.within_scan_budget`: whichever backend serves, so `score_catalogue` ranks as `recommend`),
    and the query has a signal. The tower scores of all of them come from one scan (or `scores`, where the
    caller has them)."""
    co = st.cooccur
    if co is None or co.weight <= 0 or st.use_fusion or not st.items_index.within_scan_budget(st.catalogue.n_alive):
        return {}
    todo = [i for i in with_vec if queries[i].cooc is not None]
    if not todo:
        return {}
    known = scores or {}
    missing = [i for i in todo if i not in known]
    scanned = st.items_index.exact.scores(_rows([queries[i].vector for i in missing])  # type: ignore[misc]
                                          .astype(np.float32, copy=False)) if missing else None
    base = {i: scanned[j] for j, i in enumerate(missing)} if scanned is not None else {}
    out = {}
    for i in todo:
        queries[i].blended = True
        out[i] = _blended(st, queries[i], known[i] if i in known else base[i])
    return out


def _blended(st: EngineState, q: Query, base: np.ndarray) -> Retrieved:
    """The top max(cands, k) rows by the blended score over the whole catalogue: tower score + weight x the
    co-occurrence signal, and for items without a list the text stand-in instead (`Cooccur.stand_in`),
    taken for the max(cands, k) best of them by the tower score (it is a scan per row; on a catalogue grown
    by `add_items` most rows can be listless). With `fresh`, the best fresh items by the same score join
    (as many as the reserved slots). Why the whole catalogue: the union of the tower's and the signal's own
    top lists missed items that are good by both and first by neither (3.6 % of MovieLens's served top 10),
    and ranking once costs less than taking two top lists and merging them
    (bench/results/2026-12-01-recommend-cost-cpu-2core)."""
    cat, co = st.catalogue, st.cooccur
    assert co is not None and q.cooc is not None
    s = base.astype(np.float64)  # a copy: `base` may be the caller's
    s[~cat.alive] = -np.inf
    if q.allowed is not None:
        s[~q.allowed[: cat.n_rows]] = -np.inf
    if q.exclude.size:
        s[q.exclude] = -np.inf
    s[q.cooc.rows] += co.weight * q.cooc.values
    n = max(q.cands, q.k)
    if co.text_cos is not None:
        pool = co.listless_rows(cat.alive)
        pool = pool[np.isfinite(s[pool])]
        if pool.size > n:
            pool = np.sort(pool[np.argpartition(-s[pool], n - 1)[:n]])
        if pool.size:
            s[pool] += co.weight * co.stand_in(q.history, pool, cat.unit_vectors, q.cooc)
    idx, vals = topk_rows(s[None, :], n)
    keep = np.isfinite(vals[0])
    rows, got = idx[0][keep], vals[0][keep]
    want = fresh_slots(q)
    if want:
        ok = fresh_mask(st) & np.isfinite(s)
        ok[rows] = False
        extra = np.flatnonzero(ok)
        if extra.size > want:
            extra = np.sort(extra[np.argpartition(-s[extra], want - 1)[:want]])
        extra = extra[np.argsort(-s[extra], kind="stable")]
        rows, got = np.concatenate([rows, extra]), np.concatenate([got, s[extra]])
    return Retrieved(rows, got)


def _with_cooccur(st: EngineState, q: Query, got: Retrieved) -> Retrieved:
    """The candidates plus the max(cands, k) items with the largest co-occurrence signal that pass the
    filter and exclusions and are not there yet, with their retrieval scores: an item the user's latest
    items point to is scored even when the user vector alone would not have fetched it."""
    rows, vals = q.cooc.rows, q.cooc.values  # type: ignore[union-attr]
    taken = np.zeros(st.catalogue.n_rows, dtype=bool)
    taken[q.exclude] = True
    taken[got.rows] = True
    ok = ~taken[rows]
    if q.allowed is not None:
        ok &= q.allowed[rows]
    rows, vals = rows[ok], vals[ok]
    n = max(q.cands, q.k)
    if rows.size > n:
        rows = np.sort(rows[np.argpartition(-vals, n - 1)[:n]])
    if rows.size == 0:
        return got
    scores = inner_products(q.vector[None, :].astype(np.float32), st.catalogue.vectors[rows],
                            st.items_index.exact.scanner)[0]  # type: ignore[index]
    return Retrieved(np.concatenate([got.rows, rows]), np.concatenate([got.scores.astype(np.float32), scores]))


def fresh_slots(q: Query) -> int:
    """How many of the k slots a `fresh` share reserves (round(fresh * k), at least 1 when fresh > 0)."""
    return 0 if q.fresh <= 0 else min(q.k, max(1, int(q.fresh * q.k + 0.5)))


def fresh_mask(st: EngineState) -> np.ndarray:
    """Live items with fewer than `fresh_below` interactions (items added live start with none)."""
    cat = st.catalogue
    return cat.alive & (cat.popularity < st.options.fresh_below)


def _with_fresh(st: EngineState, q: Query, got: Retrieved, exact: bool) -> Retrieved:
    """The candidates plus the best fresh items by retrieval score (as many as the reserved slots, not
    already there), so the fusion head scores them with the rest and `finish` can keep its reservation."""
    cat = st.catalogue
    allowed = fresh_mask(st) if q.allowed is None else fresh_mask(st) & q.allowed[: cat.n_rows]
    space = st.items_index
    backend = space.exact if exact else space.backend(cat.n_alive, 1)
    (pool,) = retrieve(backend, space.exact, cat.vectors, cat.alive,
                       q.vector[None, :].astype(np.float32), fresh_slots(q) + got.rows.size,  # type: ignore[index]
                       allowed=allowed, exclude=[np.concatenate([q.exclude, got.rows])])
    extra = pool.rows[: fresh_slots(q)]
    return Retrieved(np.concatenate([got.rows, extra]), np.concatenate([got.scores, pool.scores[: extra.size]]))


def fusion_scores(st: EngineState, users: np.ndarray, rows: np.ndarray, scene: np.ndarray,
                  profile: np.ndarray) -> np.ndarray:
    """The fusion head's scores [B, C] of candidate `rows` [B, C] for `users` [B, d]."""
    cat = st.catalogue
    return st.models.fusion_scores(users.astype(np.float32, copy=False), cat.vectors[rows],
                                   cat.item_feats[rows], cat.pop_bucket[rows], scene, profile)


def fuse(st: EngineState, queries: Sequence[Query], retrieved: dict[int, Retrieved],
         independent: bool = False) -> dict[int, np.ndarray]:
    """Candidate scores per query: the fusion head's (one run over all queries, candidates padded to the
    longest list; one run per query when `independent`, see `user_vectors`) when the bundle uses it, else
    the retrieval scores; plus the co-occurrence blend."""
    scored = {i: r.scores.astype(np.float64) for i, r in retrieved.items()}
    todo = [i for i, r in retrieved.items() if r.rows.size]
    if st.use_fusion and todo:
        for group in ([[i] for i in todo] if independent else [todo]):
            _fusion(st, queries, retrieved, group, scored)
    co = st.cooccur
    if co is not None and co.weight > 0:
        for i, r in retrieved.items():
            c = queries[i].cooc
            if c is not None and r.rows.size and not queries[i].blended:
                scored[i] = scored[i] + co.weight * blend_term(co, c, queries[i].history, r.rows,
                                                               st.catalogue.unit_vectors)
    return scored


def _fusion(st: EngineState, queries: Sequence[Query], retrieved: dict[int, Retrieved], todo: list[int],
            scored: dict[int, np.ndarray]) -> None:
    """Replace `scored[i]` of the queries `todo` by the fusion head's scores (one run, lists padded)."""
    width = max(retrieved[i].rows.size for i in todo)
    rows = np.zeros((len(todo), width), dtype=np.int64)
    for j, i in enumerate(todo):
        r = retrieved[i].rows
        rows[j, : r.size] = r
        rows[j, r.size:] = r[0]
    fused = fusion_scores(st, _rows([queries[i].vector for i in todo]), rows,  # type: ignore[misc]
                          _rows([queries[i].scene for i in todo]), _rows([queries[i].profile for i in todo]))
    for j, i in enumerate(todo):
        scored[i] = fused[j, : retrieved[i].rows.size].astype(np.float64)


def popular(st: EngineState, q: Query) -> Retrieved:
    """No usable signal: the most popular live items that pass the filter (score log(1 + interactions))."""
    cat = st.catalogue
    ok = cat.alive.copy()
    if q.allowed is not None:
        ok &= q.allowed
    if q.exclude.size:
        ok[q.exclude] = False
    score = np.where(ok, np.log1p(cat.popularity.astype(np.float64)), -np.inf)
    idx, vals = topk_rows(score[None, :], max(q.cands, q.k))
    keep = np.isfinite(vals[0])
    return Retrieved(idx[0][keep], vals[0][keep])


def adjusted(st: EngineState, q: Query, rows: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Candidate scores after the request's long-tail boost (the order `finish` ranks by, before MMR)."""
    if q.long_tail > 0 and rows.size:
        return long_tail_boost(scores, st.catalogue.popularity[rows], q.long_tail)
    return scores


def served_order(st: EngineState, q: Query, rows: np.ndarray, adj: np.ndarray) -> np.ndarray:
    """Positions (into `rows`) of the k served items, in order: by score, or MMR with `diversity`; then,
    with `fresh`, the reserved slots: when fewer fresh items than reserved made the list, the best other
    fresh candidates replace its last non-fresh items (appended in score order)."""
    order = mmr(adj, st.catalogue.unit_vectors[rows], q.k, q.diversity) if q.diversity > 0 else \
        np.argsort(-adj, kind="stable")[: q.k]
    want = fresh_slots(q)
    if want == 0:
        return order
    is_fresh = fresh_mask(st)[rows]
    need = want - int(is_fresh[order].sum())
    if need <= 0:
        return order
    chosen = set(order.tolist())
    spare = [j for j in np.argsort(-adj, kind="stable").tolist() if is_fresh[j] and j not in chosen][:need]
    if not spare:
        return order
    keep = list(order)
    for _ in spare:  # drop the lowest-ranked non-fresh items while the list is full
        if len(keep) + len(spare) <= q.k:
            break
        drop = max(i for i, j in enumerate(keep) if not is_fresh[j])
        keep.pop(drop)
    return np.asarray(keep + spare, dtype=np.int64)


def finish(st: EngineState, q: Query, rows: np.ndarray, scores: np.ndarray) -> Recommendations:
    """Re-rank (long tail, MMR diversity), cut to k and explain."""
    cat = st.catalogue
    out = Recommendations()
    out.source, out.skipped = q.source, q.skipped
    if rows.size == 0:
        return out
    adj = adjusted(st, q, rows, scores)
    order = served_order(st, q, rows, adj)
    final_rows, final_scores = rows[order], adj[order]
    reasons: list[str | None] = [None] * final_rows.size
    if q.explain:
        if q.history.size and q.source != "popular":
            hist = np.unique(q.history)
            best, sim = explain(cat.unit_vectors[final_rows], cat.unit_vectors[hist])
            reasons = [f"similar to {cat.title(int(hist[b]))!r} in your history (cosine {s:.2f})"
                       for b, s in zip(best.tolist(), sim.tolist())]
        elif q.source == "popular":
            reasons = [f"popular ({int(cat.popularity[r])} interactions)" for r in final_rows.tolist()]
        elif q.source == "cold":
            reasons = ["matches the request's scene/profile"] * final_rows.size
        else:
            reasons = ["matches your taste profile"] * final_rows.size
    for r, s, why in zip(final_rows.tolist(), final_scores.tolist(), reasons):
        out.append(Recommendation(cat.ids[r], float(s), why))
    return out


# ---------------------------------------------------------------------------------------------- entry points
def serve(st: EngineState, queries: list[Query], counters: Counters | None = None,
          independent: bool = False) -> list[Recommendations]:
    """Ranked lists for prepared queries: user vectors -> candidates -> fusion -> finish. `independent`:
    each list is the one its query gets alone (`Engine.recommend_batch`)."""
    user_vectors(st, queries, independent)
    cooccur_signals(st, queries)
    retrieved = candidates(st, queries, independent=independent)
    scored = fuse(st, queries, retrieved, independent)
    out = []
    for i, q in enumerate(queries):
        if q.vector is None:
            if counters is not None:
                counters.add("cold_requests")
            r = popular(st, q)
            out.append(finish(st, q, r.rows, r.scores.astype(np.float64)))
        else:
            out.append(finish(st, q, retrieved[i].rows, scored[i]))
    return out


def score_catalogue(st: EngineState, queries: list[Query]) -> np.ndarray:
    """Full score rows float64 [B, n_rows] that rank the catalogue exactly as `serve` would with exact
    retrieval: the served list first (its k items in served order: score, MMR, fresh slots), then the other
    re-scored candidates by adjusted score, then every other live item by its retrieval score; removed,
    filtered-out and excluded rows are -inf."""
    cat = st.catalogue
    user_vectors(st, queries)
    cooccur_signals(st, queries)
    with_vec = [i for i, q in enumerate(queries) if q.vector is not None]
    # every row's retrieval score, computed once: the exact candidate scan reuses it
    base = st.items_index.exact.scores(_rows([queries[i].vector for i in with_vec]).astype(np.float32)) \
        if with_vec else None  # type: ignore[misc]
    retrieved = candidates(st, queries, exact=True,
                           scores=None if base is None else {i: base[j] for j, i in enumerate(with_vec)})
    scored = fuse(st, queries, retrieved)
    out = np.full((len(queries), cat.n_rows), -np.inf, dtype=np.float64)
    if with_vec:
        out[with_vec] = base
        co = st.cooccur
        for i in with_vec:
            c = queries[i].cooc
            if co is not None and c is not None:
                out[i] += co.weight * dense_signal(c.rows, c.values, cat.n_rows)
    for i, q in enumerate(queries):
        if q.vector is None:
            r = popular(st, q)
            rows, scores = r.rows, r.scores.astype(np.float64)
            out[i] = np.log1p(cat.popularity.astype(np.float64))
        else:
            rows, scores = retrieved[i].rows, scored[i]
        if q.allowed is not None:
            out[i, ~q.allowed[: cat.n_rows]] = -np.inf
        out[i, ~cat.alive] = -np.inf
        if q.exclude.size:
            out[i, q.exclude] = -np.inf
        if not rows.size:
            continue
        adj = adjusted(st, q, rows, scores)
        lifted = _above(out[i], adj)
        out[i, rows] = lifted
        if q.diversity > 0 or q.fresh > 0:  # the served list is a choice, not a sort: put it first as chosen
            order = served_order(st, q, rows, adj)
            out[i, rows[order]] = _above(out[i], -np.arange(order.size, dtype=np.float64))
    return out


def _above(row: np.ndarray, values: np.ndarray) -> np.ndarray:
    """`values` shifted to sit above every finite entry of `row` (order among them kept)."""
    finite = row[np.isfinite(row)]
    offset = (np.abs(finite).max() if finite.size else 0.0) + np.abs(values).max() + 1.0
    return offset + values


def group(st: EngineState, ids: list[str], strategy: str, k: int, cands: int, exclude_seen: bool,
          scene_codes: np.ndarray, with_scene: bool) -> Recommendations:
    """Items for a group: each member's scores (z-normalised) over the union of their candidates,
    aggregated by `strategy`; no known member -> popular items."""
    cat = st.catalogue
    rows_u = [st.users.row_of.get(u) for u in ids]
    known = [r for r in rows_u if r is not None]
    skipped = tuple(u for u, r in zip(ids, rows_u) if r is None)
    if not known:
        q = Query(scene=scene_codes, profile=np.zeros(st.profile.slots, np.int64), history=np.zeros(0, np.int64),
                  exclude=np.zeros(0, np.int64), k=k, cands=cands, skipped=skipped, source="popular")
        r = popular(st, q)
        return finish(st, q, r.rows, r.scores.astype(np.float64))
    histories = [cat.current_rows(st.users.history(r)) for r in known]
    vecs = st.users.vectors[known].astype(np.float32)
    scenes = np.broadcast_to(scene_codes, (len(known), scene_codes.size)).copy()
    if with_scene:  # stored vectors assume an unknown scene: recompute every member's in this one
        alive = [h[cat.alive[h]] for h in histories]
        fresh = st.models.user_vectors(alive, cat.vectors, scenes, st.users.profiles[known]).astype(np.float32)
        usable = np.all(np.isfinite(fresh), axis=1) & (np.abs(fresh).sum(axis=1) > 0)
        vecs = np.where(usable[:, None], fresh, vecs)
    seen = np.unique(np.concatenate(histories)) if exclude_seen else np.zeros(0, np.int64)
    members = [Query(scene=scenes[j], profile=st.users.profiles[r], history=histories[j], exclude=seen, k=k,
                     cands=cands, vector=vecs[j]) for j, r in enumerate(known)]
    cooccur_signals(st, members)
    retrieved = candidates(st, members)
    union = np.unique(np.concatenate([r.rows for r in retrieved.values()]))
    out = Recommendations()
    out.source, out.skipped = "group", skipped
    if union.size == 0:
        return out
    rows = np.ascontiguousarray(np.broadcast_to(union, (len(known), union.size)))
    if st.use_fusion:
        member_scores = fusion_scores(st, vecs, rows, scenes, st.users.profiles[known])
    else:
        member_scores = inner_products(vecs, cat.vectors[union], st.items_index.exact.scanner)
    member_scores = member_scores.astype(np.float64)
    if st.cooccur is not None:
        for j, m in enumerate(members):
            if m.cooc is not None:
                member_scores[j] += st.cooccur.weight * blend_term(st.cooccur, m.cooc, m.history, union,
                                                                   cat.unit_vectors)
    z = np.stack([(s - s.mean()) / (s.std() + 1e-9) for s in member_scores])
    agg = {"average": z.mean(axis=0), "least_misery": z.min(axis=0), "max_pleasure": z.max(axis=0)}[strategy]
    for o in np.argsort(-agg, kind="stable")[:k]:
        out.append(Recommendation(cat.ids[int(union[o])], float(agg[o])))
    return out


__all__ = ["Counters", "Query", "prepare", "prepare_rows", "user_vectors", "cooccur_signals", "candidates",
           "fusion_scores", "fuse", "popular", "finish", "serve", "score_catalogue", "group"]
