"""The item co-occurrence lists and their blend settings, learned from the training interactions and chosen on
validation through the serving pipeline (`recengine.cooccur` serves them).

Similarity: the item x user matrix of training interactions (binary), BM25-weighted as implicit's
`bm25_weight` does (K1 1.2, B 0.75: rare users' votes count more, long item rows are length-normalised),
then cosine with a shrinkage term, sim(i, j) = w_i . w_j / (|w_i| |w_j| + shrink), the `k` best j per i.
Measured on the embedded MovieLens (2026-11-30, the standard export's tower): BM25 weighting beat binary
cosine at every shrink/decay/weight tried (validation NDCG@10 of the blend 0.066-0.074 vs 0.059-0.064).

Cost: the products are computed in chunks of item rows sized by the co-occurring pairs they hold
(`PAIR_BUDGET`), so memory stays bounded whatever the catalogue; time grows with sum over users of
history length squared.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

PAIR_BUDGET = 20_000_000
"""Most item pairs one chunk of the similarity product holds (~0.5 GB of COO arrays at the peak)."""
STANDIN_TOLERANCE = 0.02
"""The text stand-in is kept at the largest strength (`cooccur.standin_strengths`) that lowers validation
NDCG@10 by at most this share against the blend without it, and dropped when even the first does: the warm
accuracy the cold-start work may spend (issue 10: warm NDCG@10 >= 0.98x). Why not any drop: it moves only
items without training interactions, few of the validation targets, so the change is mostly noise;
MovieLens's standard export measured 0.07872 with it against 0.07883 without (one user), and a strict rule
then dropped it and with it the cold items' place in users' lists (hybrid Recall@20 0.012 against 0.054 with
it). With 1 % MovieLens-100K dropped it for a 1.14 % validation dip whose test cost was 0.08 % (0.1129 ->
0.1128) while hybrid cold Recall@20 went 0.030 -> 0.081 (bench/results/2026-11-30-standin-cpu-2core). The
quick profile's tiny encoder on the test fixture loses 23 %: dropped."""
SPREAD_USERS = 500
"""Validation users whose score spread sets the weight scale."""
TEXT_MAP_ITEMS = 2000
"""Warm items whose nearest neighbours align the text stand-in with the lists (`text_map`)."""


WEIGHTINGS = ("bm25", "tfidf", "binary")
"""Weightings of the cosine lists (`binary`: the plain 0/1 item x user matrix, the classic ItemKNN); `ease` and
`ease_text` lists (`ease_neighbours`) are the other kinds `fit_cooccur` tries."""
EASE_MAX_ITEMS = 20_000
"""EASE lists need a dense inverse of the Gram matrix of the items with interactions, one items^2 x 8-byte
matrix at a time (3.2 GB at 20,000 items); its cost grows with items^3 (measured on 2 cores, one lambda:
5 s at 6,000 items, 26 s at 12,000; past 4,096 items the factorisation runs on one BLAS thread, since
OpenBLAS's threaded one crashed the process past ~16,000, `recengine.export.ease.THREADED_MAX_ITEMS`: 142 s at
19,600). Larger catalogues use the cosine lists only.
Raised from 12,000: EASE was the best baseline on Book-Crossing and on the 14,190-item Instacart sample,
whose export then fell back to cosine lists."""


def bm25_items(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int, k1: float = 1.2,
               b: float = 0.75, weighting: str = "bm25") -> Any:
    """Item x user CSR of weighted binary interactions (duplicates counted once): `bm25` as implicit's
    `bm25_weight`, `tfidf` as its `tfidf_weight` (on binary data: each user's idf alone, no length norm),
    `binary` unweighted (the tuned ItemKNN of the Instacart sample chose it,
    bench/results/2026-12-01-full-blend-cpu-2core)."""
    from recengine._deps import require

    sp = require("scipy.sparse", "The export's item co-occurrence lists")

    x = sp.csr_matrix((np.ones(len(items), np.float64), (np.asarray(items), np.asarray(users))),
                      shape=(n_items, n_users))
    x.sum_duplicates()
    x.data[:] = 1.0
    idf = np.maximum(np.log(max(n_items, 1)) - np.log1p(np.bincount(x.indices, minlength=n_users)), 0.0)
    length = np.diff(x.indptr).astype(np.float64)
    norm = (1.0 - b) + b * length / max(length.mean(), 1e-12)
    rows = np.repeat(np.arange(n_items), np.diff(x.indptr))
    if weighting == "tfidf":
        x.data = idf[x.indices]
    elif weighting == "bm25":
        x.data = x.data * (k1 + 1.0) / (k1 * norm[rows] + x.data) * idf[x.indices]
    elif weighting != "binary":
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    x.eliminate_zeros()
    return x


def item_neighbours(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int, k: int,
                    shrinks: tuple[float, ...], weighting: str = "bm25") -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """For each shrink: (indices int32 [n_items, k] best first, -1 padded; scores float32 [n_items, k])."""
    x = bm25_items(users, items, n_users, n_items, weighting=weighting)
    xt = x.T.tocsr()
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    # pairs per item row: sum over its users of their item counts (what its row of the product can hold)
    user_len = np.diff(xt.indptr).astype(np.int64)
    cum = np.concatenate([[0], np.cumsum(user_len[x.indices])])
    ends = np.cumsum(cum[x.indptr[1:]] - cum[x.indptr[:-1]])
    out = {s: (np.full((n_items, k), -1, np.int32), np.zeros((n_items, k), np.float32)) for s in shrinks}
    start = 0
    while start < n_items:
        before = ends[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(ends, before + PAIR_BUDGET, side="right")))
        prod = (x[start:stop] @ xt).tocoo()
        r, c, v = prod.row.astype(np.int64), prod.col.astype(np.int64), prod.data
        off = r + start != c
        r, c, v = r[off], c[off], v[off]
        for s in shrinks:
            sim = v / (norms[r + start] * norms[c] + s + 1e-12)
            order = np.lexsort((-sim, r))
            rr, cc, ss = r[order], c[order], sim[order]
            first = np.searchsorted(rr, np.arange(stop - start))
            rank = np.arange(rr.size) - first[rr]
            keep = (rank < k) & (ss > 0)
            idx, sc = out[s]
            idx[rr[keep] + start, rank[keep]] = cc[keep]
            sc[rr[keep] + start, rank[keep]] = ss[keep]
        start = stop
    return out


TEXT_TOKEN_MAX_SHARE = 0.5
"""`text_tokens` drops words in more than this share of the items (field names, "the"): they tie everything."""


def text_tokens(texts: list[str]) -> Any:
    """The item x word incidence (scipy CSR, float64 0/1, [n_items, n_words]) of the item texts, tokenised
    as `search`'s BM25 tokenises them (`recengine.lexical.tokens`), field names ("title: ") left out; only
    words of at least 2 items and at most `TEXT_TOKEN_MAX_SHARE` of them (a word of one item co-occurs with
    nothing). The side information of `ease_neighbours`."""
    from recengine._deps import require
    from recengine.data.text import line_value
    from recengine.lexical import tokens

    sp = require("scipy.sparse", "The export's item co-occurrence lists")
    vocab: dict[str, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    for i, text in enumerate(texts):
        words = set()
        for line in str(text).split("\n"):
            words.update(tokens(line_value(line)))
        for w in words:
            rows.append(i)
            cols.append(vocab.setdefault(w, len(vocab)))
    f = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(texts), len(vocab)))
    df = np.asarray(f.sum(axis=0)).ravel()
    keep = np.flatnonzero((df >= 2) & (df <= TEXT_TOKEN_MAX_SHARE * max(len(texts), 1)))
    return f[:, keep].tocsr()


def ease_neighbours(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int, k: int,
                    lambdas: tuple[float, ...], chunk: int = 1024, side: Any = None, alpha: float = 0.0
                    ) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """EASE^R lists (`recengine.export.ease.ease_weights` of the binary interactions): for each lambda, row i
    holds the k largest positive B[i, j] (what item i adds to item j's EASE score), best first; the signal of
    a history is then EASE's score with the negative weights left out (and, with decay < 1, recency).
    Empty when more than `EASE_MAX_ITEMS` items have interactions.

    `side` (item x feature, e.g. `text_tokens`) with `alpha` > 0: EASE with side information (Jeunen, Van
    Balen, Goethals 2020, "Closed-form models for collaborative filtering with side-information"): the
    features enter as pseudo-users weighted `alpha`, i.e. the Gram matrix gains alpha^2 F F^T, so items that
    share words co-occur a little even where few users link them. Book-Crossing (books: titles, authors,
    publishers), full EASE at lambda 100: validation NDCG@10 0.0885 -> 0.0934 and test 0.0885 -> 0.0925 at
    alpha 1 (bench/results/2026-11-30-ease-text-cpu-2core)."""
    from recengine._deps import require

    from .ease import ease_weights

    sp = require("scipy.sparse", "The export's item co-occurrence lists")
    x = sp.csr_matrix((np.ones(len(items), np.float64), (np.asarray(users), np.asarray(items))),
                      shape=(n_users, n_items))
    x.sum_duplicates()
    x.data[:] = 1.0
    active = np.flatnonzero(np.diff(x.tocsc().indptr) > 0)
    if active.size > EASE_MAX_ITEMS or active.size < 2:
        return {}
    sub = x[:, active]
    gram_sparse = (sub.T @ sub).tocsr()
    feats = side[active] if side is not None and alpha > 0 and side.shape[1] else None
    kk = min(k, active.size - 1)
    out = {}
    for lam in lambdas:
        # a fresh dense Gram per lambda, inverted in place: one items^2 matrix alive at a time
        gram = np.asarray(gram_sparse.todense(), dtype=np.float64, order="C")
        if feats is not None:  # + alpha^2 F F^T, a block of rows at a time (F F^T may be far denser than F)
            for start in range(0, active.size, chunk):
                gram[start:start + chunk] += (alpha * alpha) * (feats[start:start + chunk] @ feats.T).toarray()
        b = ease_weights(gram, float(lam), overwrite=True)
        idx = np.full((n_items, k), -1, np.int32)
        sc = np.zeros((n_items, k), np.float32)
        for start in range(0, active.size, chunk):
            block = b[start:start + chunk]
            top = np.argpartition(-block, kk - 1, axis=1)[:, :kk]
            vals = np.take_along_axis(block, top, axis=1)
            order = np.argsort(-vals, axis=1, kind="stable")
            top, vals = np.take_along_axis(top, order, axis=1), np.take_along_axis(vals, order, axis=1)
            keep = vals > 0
            rows = active[start:start + chunk]
            idx[rows, :kk] = np.where(keep, active[top], -1)
            sc[rows, :kk] = np.where(keep, vals, 0.0)
        out[float(lam)] = (idx, sc)
        del b, block, gram  # `block` is a view of `b`: it too would keep the whole matrix alive
    return out


def text_map(indices: np.ndarray, scores: np.ndarray, text: np.ndarray, seed: int = 0,
             chunk: int = 64, query: np.ndarray | None = None) -> dict[str, list[float]] | None:
    """The text stand-in's map (docs/bundle.md `cooccur.text_map`): for items without a list (new items, items
    nobody interacted with), the similarity a history item at cosine c lends them, aligned on warm items
    (ALDI-style distribution alignment, no cold data needed): over a sample of warm items, the mean cosine
    of their r-th nearest warm item against the mean similarity at rank r of their lists, r = 1..K. An item
    below the K-th cosine gets nothing, as it would sit outside every list. `text`: the rows cosines are
    taken in, the ones the runtime uses (the catalogue's item vectors: a new item's comes from its text).
    `query`: the sampled items' rows on the cold side of each cosine (default: `text` itself); with the
    vectors their text alone gives them (`text_vectors`), the map sees the cosines a new item will have.
    None when fewer than two warm items have lists."""
    warm = np.flatnonzero(indices[:, 0] >= 0)
    k = indices.shape[1]
    if warm.size < 2:
        return None
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(warm, size=min(TEXT_MAP_ITEMS, warm.size), replace=False))
    unit = text[warm].astype(np.float32)
    unit /= np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    pos = np.searchsorted(warm, sample)
    asked = unit[pos] if query is None else query[sample].astype(np.float32)
    asked /= np.maximum(np.linalg.norm(asked, axis=1, keepdims=True), 1e-12)
    kk = min(k, warm.size - 1)
    cos_sum = np.zeros(kk)
    for start in range(0, sample.size, chunk):
        block = asked[start:start + chunk] @ unit.T
        block[np.arange(block.shape[0]), pos[start:start + chunk]] = -np.inf  # not itself
        top = -np.sort(-np.partition(block, block.shape[1] - kk, axis=1)[:, -kk:], axis=1)
        cos_sum += top.sum(axis=0)
    cos = cos_sum / sample.size
    sims = -np.sort(-scores[sample].astype(np.float64), axis=1)[:, :kk].mean(axis=0)
    # ascending x, non-decreasing y (means of sorted columns are sorted; clip float noise)
    x, y = cos[::-1], np.maximum.accumulate(np.maximum(sims[::-1], 0.0))
    if not np.all(np.diff(x) >= 0) or x[0] == x[-1]:
        return None
    return {"cos": [float(v) for v in x], "sim": [float(v) for v in y]}


def scaled_map(mapping: dict[str, list[float]], strength: float) -> dict[str, list[float]]:
    """`mapping` (a `text_map`) with its similarities times `strength`."""
    return {"cos": list(mapping["cos"]), "sim": [float(v) * strength for v in mapping["sim"]]}


def choose_standin(engine: Any, idx: np.ndarray, sc: np.ndarray, section: dict[str, Any],
                   mapping: dict[str, list[float]], strengths: Sequence[float], evaluate: Any,
                   choice: Choice) -> float | None:
    """The text stand-in's strength, measured like every other setting through the serving pipeline: the
    strengths in ascending order, each the validation NDCG@10 of the chosen blend with `mapping`'s
    similarities times it (`choice.grid` rows with `text_standin` = the strength), up to the first that
    lowers validation by more than `STANDIN_TOLERANCE` against the blend without it (`choice.best`); the
    largest before it is kept (`choice.best` becomes its figure), None when the first already does.

    Why the largest and not the best: validation barely sees what the stand-in is for (its targets without
    training interactions are few), so within the tolerance the choice gives new items the most exposure
    the warm accuracy allows. Measured post hoc on three bench runs' bundles (bench/results/
    2026-11-30-standin-strength-cpu-2core): on MovieLens validation moved -0.1 % at 1x and -0.9 % at 2x and
    4x while hybrid cold Recall@20 went 0.027 -> 0.045 -> 0.060 (test NDCG@10 0.0608 -> 0.0615 -> 0.0614);
    on MovieLens-100K -1.1 % at 1x, -2.5 % at 1.5x: 1x."""
    from recengine.cooccur import Cooccur
    from recengine.engine import Engine

    kept: float | None = None
    kept_ndcg = 0.0
    for strength in sorted(float(x) for x in strengths):
        m = scaled_map(mapping, strength)
        served = Cooccur(indices=idx, scores=sc, weight=section["weight"], decay=section["decay"],
                         max_history=section["max_history"], text_cos=np.asarray(m["cos"]),
                         text_sim=np.asarray(m["sim"]))
        ndcg = float(evaluate(Engine(dataclasses.replace(engine._state, cooccur=served)))["ndcg@10"])
        choice.grid.append({"weighting": choice.weighting, "shrink": choice.shrink,  # type: ignore[dict-item]
                            "decay": choice.decay, "relative_weight": choice.relative_weight, "k": choice.k,
                            "pop_exponent": choice.pop_exponent, "text_standin": strength, "ndcg@10": ndcg})
        if choice.best is not None and ndcg < choice.best * (1.0 - STANDIN_TOLERANCE):
            break
        kept = strength
        kept_ndcg = ndcg
    if kept is not None:
        choice.best = kept_ndcg
    return kept


def item_users(events: Any, n_items: int) -> np.ndarray:
    """int64 [n_items]: distinct users of each item in `events` (the popularity `popularity_scaled` divides by;
    duplicates count once, as they do in the lists)."""
    pairs = np.unique(np.stack([np.asarray(events.item, np.int64), np.asarray(events.user, np.int64)]), axis=1)
    return np.bincount(pairs[0], minlength=n_items)


def popularity_scaled(indices: np.ndarray, scores: np.ndarray, users: np.ndarray, beta: float
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The lists with each neighbour j's similarity times max(users[j], 1)^-beta, each row re-sorted best first
    (-1 pads stay last), then all scores times one factor that brings the largest back to the input's largest
    (the served signal is divided by its largest value per history, so one factor changes no ranking; it keeps
    the scores in the range of float16, the bundle's storage, however large beta): a popularity discount on
    what the lists recommend, as RP3beta divides by popularity^beta and practitioners rescale EASE's scores.
    Why: every list names the few most popular items, so summed over
    a history they take the top of nearly every user's ranking; the discount lets the items each history
    specifically points to through. Only the neighbours already listed are rescaled (no rebuild: an item just
    past the K-th that the discount would lift is not added). beta 0 returns the lists unchanged.

    Measured with full EASE alone (no tower, order-blind; `bench/results/2026-12-01-popularity-cpu-2core/
    popadj.py`), validation / test NDCG@10 at beta 0 -> 0.1: Book-Crossing 0.0934 -> 0.0939 / 0.0925 ->
    0.0942, MovieLens 0.0446 -> 0.0476 / 0.0408 -> 0.0422; MovieLens-100K's validation fell (0.0893 ->
    0.0874): hence a choice on validation, not a default."""
    if beta == 0.0:
        return indices, scores
    listed = indices >= 0
    discount = np.maximum(users, 1).astype(np.float64) ** -float(beta)
    scaled = np.full(indices.shape, -np.inf, np.float32)  # float32: n x K arrays, 1M items x 50 is 200 MB each
    scaled[listed] = scores[listed] * discount[indices[listed]]
    order = np.argsort(-scaled, axis=1, kind="stable")
    idx = np.take_along_axis(indices, order, axis=1)
    sc = np.take_along_axis(scaled, order, axis=1)
    del scaled, order
    sc[idx < 0] = 0.0
    top, new_top = (float(scores.max()), float(sc.max())) if sc.size else (0.0, 0.0)
    if new_top > 0:
        sc *= np.float32(top / new_top)
    return np.ascontiguousarray(idx), np.ascontiguousarray(sc.astype(scores.dtype, copy=False))


def score_spread(rows: np.ndarray) -> float:
    """Median over score rows of (best - 100th best) finite score: the scale of the weight grid (the tower's
    inner products or the fusion head's scores, whatever the bundle serves with the blend off)."""
    spreads = []
    for row in rows:
        finite = np.sort(row[np.isfinite(row)])[::-1]
        if finite.size >= 100:
            spreads.append(finite[0] - finite[99])
    return float(np.median(spreads)) if spreads else 1.0


@dataclasses.dataclass
class Choice:
    """What `choose` measured and picked (recorded in `manifest.metrics.cooccur`)."""

    base: float
    """Validation NDCG@10 of the tower alone (weight 0)."""
    spread: float
    grid: list[dict[str, Any]]
    weighting: str | None = None
    """The lists' kind: `bm25` or `tfidf` (cosine lists), `ease` or `ease_text` (EASE with the item words)."""
    shrink: float | None = None
    """The cosine lists' shrink, or EASE's lambda."""
    decay: float | None = None
    relative_weight: float | None = None
    best: float | None = None
    """Validation NDCG@10 of the chosen point (with the stand-in when kept), measured on the lists from the
    training events: what the bundle serves unless `refit_events` says its lists were rebuilt since."""
    text_standin: bool | None = None
    """Whether the text stand-in is kept (None: not measured): kept unless it lowers validation NDCG@10 by
    more than `STANDIN_TOLERANCE`."""
    standin_strength: float | None = None
    """The factor the kept stand-in's similarities were multiplied by (`cooccur.standin_strengths`: the
    largest within `STANDIN_TOLERANCE`); None when it is not kept or not measured."""
    pop_exponent: float | None = None
    """The popularity exponent beta of the served lists (`popularity_scaled`; 0: none); None when not chosen."""
    k: int | None = None
    """Neighbours per list served (the lists cut to their best k when that did not lower validation)."""
    refit_events: int | None = None
    """Events the served lists were rebuilt from after the choice (`refit_cooccur`: train + validation);
    None when they are the lists the choice measured."""

    @property
    def chosen(self) -> bool:
        return self.shrink is not None

    def to_manifest(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


WEIGHT_STEPS = 3
"""Halvings (or doublings) of the relative weight `choose` tries past its best point, each kept while
validation rises: the last search step, on the lists with their popularity exponent, which shifts how much of
the blend the signal should carry, and past the ends of `cooccur.weights` (MovieLens-100K chose its lowest
point, 0.25; bench/results/2026-12-01-popularity-cpu-2core)."""


def choose(engine: Any, lists: dict[tuple[str, float], tuple[np.ndarray, np.ndarray]], cfg: Any, evaluate: Any,
           spread: float, users: np.ndarray | None = None) -> Choice:
    """Lists (weighting, shrink) x decay at the middle weight, then the weight for the best pair, then the
    decay again at that weight, then the popularity exponents (`cfg.pop_exponents`, with `users`, each item's
    users in the events the lists were built from), then the weight halved or doubled while validation rises
    (at most `WEIGHT_STEPS` times, past the grid's ends too), then the lists cut to fewer neighbours (`cfg.cuts`); every
    point is the validation NDCG@10 of `engine` serving those lists (`evaluate(engine) -> metrics`). Picks the
    best point measured (a cut only when it does not lower it), and nothing unless it beats the tower alone."""
    from recengine.cooccur import Cooccur
    from recengine.engine import Engine

    base_state = engine._state
    base = float(evaluate(engine)["ndcg@10"])
    choice = Choice(base=base, spread=spread, grid=[])
    measured: dict[tuple[Any, ...], float] = {}
    full_k = next(iter(lists.values()))[0].shape[1]
    last: dict[tuple[tuple[str, float], float], tuple[np.ndarray, np.ndarray]] = {}  # one scaled copy at a time

    def served(key: tuple[str, float], beta: float) -> tuple[np.ndarray, np.ndarray]:
        if not beta:
            return lists[key]
        if (key, beta) not in last:
            last.clear()
            last[(key, beta)] = popularity_scaled(*lists[key], users, beta)
        return last[(key, beta)]

    def point(key: tuple[str, float], decay: float, rel: float, k: int = full_k, beta: float = 0.0) -> float:
        at = (key, decay, rel, k, beta)
        if at not in measured:
            idx, sc = served(key, beta)
            co = Cooccur(indices=idx[:, :k], scores=sc[:, :k], weight=rel * spread, decay=decay,
                         max_history=cfg.max_history)
            ndcg = float(evaluate(Engine(dataclasses.replace(base_state, cooccur=co)))["ndcg@10"])
            measured[at] = ndcg
            choice.grid.append({"weighting": key[0], "shrink": key[1], "decay": decay, "relative_weight": rel,
                                "k": k, "pop_exponent": beta, "ndcg@10": ndcg})
        return measured[at]

    weights = sorted(cfg.weights)
    mid = weights[(len(weights) - 1) // 2 + (len(weights) % 2 == 0)]
    pairs = [(key, d) for key in lists for d in cfg.decays]
    best_pair = max(pairs, key=lambda p: (point(p[0], p[1], mid), -pairs.index(p)))
    best_w = max(weights, key=lambda w: (point(*best_pair, w), -weights.index(w)))
    for d in cfg.decays:  # the decay again at the chosen weight: the two interact (a faster decay wants more)
        point(best_pair[0], d, best_w)
    order = list(measured)
    top = max(order, key=lambda p: (measured[p], -order.index(p)))
    if users is not None:
        for beta in sorted(float(b) for b in cfg.pop_exponents):
            point(top[0], top[1], top[2], full_k, beta)
        order = list(measured)
        top = max(order, key=lambda p: (measured[p], -order.index(p)))
    for factor in (0.5, 2.0):  # the weight again on the lists chosen, halved or doubled while validation rises
        moved = False
        for _ in range(WEIGHT_STEPS):
            rel = top[2] * factor
            if point(top[0], top[1], rel, full_k, top[4]) <= measured[top]:
                break
            top, moved = (top[0], top[1], rel, full_k, top[4]), True
        if moved:
            break
    for k in sorted(c for c in cfg.cuts if c < full_k):  # fewer neighbours: a smaller bundle, often as good
        if point(top[0], top[1], top[2], k, top[4]) >= measured[top]:
            top = (top[0], top[1], top[2], k, top[4])
            break
    if measured[top] > base:
        (choice.weighting, choice.shrink), choice.decay, choice.relative_weight, choice.k, choice.pop_exponent = top
        choice.best = measured[top]
    return choice


def build_lists(combos: dict[str, tuple[float, ...]], events: Any, dataset: Any, split: Any, co: Any
                ) -> dict[tuple[str, float], tuple[np.ndarray, np.ndarray]]:
    """Neighbour lists of every kind in `combos` (kind -> its shrinks or EASE lambdas) learned from `events`:
    {(kind, shrink or lambda): (indices, scores)}; `ease_text` is skipped where no word is shared by two items
    (ids as text: the same lists as `ease`) or where EASE does not run."""
    lists: dict[tuple[str, float], tuple[np.ndarray, np.ndarray]] = {}
    # the words only where EASE runs at all (its dense inverse stops at EASE_MAX_ITEMS items with interactions)
    side = text_tokens(list(dataset.items.texts)) if "ease_text" in combos and \
        np.unique(np.asarray(events.item)).size <= EASE_MAX_ITEMS else None
    for w, params in combos.items():
        if w == "ease_text" and (side is None or side.shape[1] == 0):
            continue
        if w in ("ease", "ease_text"):
            built = ease_neighbours(events.user, events.item, split.n_users, split.n_items, co.k, params,
                                    side=side if w == "ease_text" else None, alpha=co.ease_text_alpha)
        else:
            built = item_neighbours(events.user, events.item, split.n_users, split.n_items, co.k, params,
                                    weighting=w)
        lists.update({(w, param): pair for param, pair in built.items()})
    return lists


def fit_cooccur(writer: Any, bundle: Any, dataset: Any, split: Any, cfg: Any, fixed: Choice | None = None,
                events: Any = None) -> tuple[dict[str, Any] | None, Choice]:
    """Learn the lists from `events` (default `split.train`), choose the settings on `split`'s validation with
    the bundle `bundle` (sealed by `writer.preview`, served in fp32 as the export's validation serves it), and
    write the chosen lists into the bundle being written. Returns (the manifest's `cooccur` section or None,
    what was measured).

    `fixed`: settings chosen before (the bench's cold-item fit reuses those its main fit chose on clean
    validation, since its own models were refitted on the validation events); only the weight scale (the
    spread of this bundle's scores) is measured again."""
    from recengine.cooccur import FILES
    from recengine.evaluation import csr_rows, engine_row_scorer, histories, make_queries

    from .eval_sample import sample_queries
    from .validation import check_same_data, evaluate_engine_sample, open_variant

    co = cfg.cooccur
    if fixed is not None and not fixed.chosen:
        return None, fixed
    events = split.train if events is None else events
    if fixed is not None:
        combos = {str(fixed.weighting): (float(fixed.shrink),)}  # type: ignore[arg-type]
    else:
        combos = {w: tuple(dict.fromkeys(float(x) for x in (co.ease_lambdas if w.startswith("ease") else co.shrinks)))
                  for w in dict.fromkeys(co.weightings)}
    lists = build_lists(combos, events, dataset, split, co)
    engine = open_variant(bundle, "fp32")
    check_same_data(engine, dataset)
    scenes = engine.encode_scenes(split.valid.context, len(split.valid))

    def evaluate(e: Any) -> dict[str, float]:
        return evaluate_engine_sample(e, split, "valid", scenes)

    q = sample_queries(make_queries(split, "valid"), SPREAD_USERS)
    indptr, indices = histories(split, "valid")
    scorer = engine_row_scorer(engine, csr_rows(indptr, indices, q.users), np.asarray(scenes)[q.scene_rows],
                               engine.user_profiles(q.users), [q.excluded(i) for i in range(len(q.users))])
    spread = score_spread(scorer(np.arange(len(q.users))))
    users = item_users(events, split.n_items)
    if fixed is None:
        choice = choose(engine, lists, co, evaluate, spread, users)
    else:
        choice = dataclasses.replace(fixed, spread=spread, grid=[], base=float(evaluate(engine)["ndcg@10"]),
                                     best=None, refit_events=None)
    if not choice.chosen:
        return None, choice
    idx, sc = popularity_scaled(*lists[(choice.weighting, choice.shrink)], users,  # type: ignore[index]
                                float(choice.pop_exponent or 0.0))
    k = int(choice.k or idx.shape[1])
    idx, sc = np.ascontiguousarray(idx[:, :k]), np.ascontiguousarray(sc[:, :k])
    writer.write_npy(FILES["indices"], idx)
    writer.write_npy(FILES["scores"], sc.astype(np.float16))
    section: dict[str, Any] = {"indices": FILES["indices"], "scores": FILES["scores"], "k": k,
               "weight": float(choice.relative_weight * spread),  # type: ignore[operator]
               "decay": float(choice.decay),  # type: ignore[arg-type]
               "max_history": int(co.max_history), "pop_exponent": float(choice.pop_exponent or 0.0)}
    if choice.weighting == "ease":
        section.update({"similarity": "ease", "lambda": float(choice.shrink)})  # type: ignore[arg-type]
    elif choice.weighting == "ease_text":
        section.update({"similarity": "ease-text", "lambda": float(choice.shrink),  # type: ignore[arg-type]
                        "text_alpha": float(co.ease_text_alpha)})
    else:
        section.update({"similarity": f"{choice.weighting}-cosine", "shrink": float(choice.shrink)})  # type: ignore[arg-type]
    if co.text_standin:
        mapping = text_map(idx, sc, engine._state.catalogue.unit_vectors)
        if mapping is not None:
            if fixed is not None and fixed.text_standin is not None:  # what the main fit chose (1x if unrecorded)
                strength = (fixed.standin_strength or 1.0) if fixed.text_standin else None
            else:
                strength = choose_standin(engine, idx, sc, section, mapping, co.standin_strengths, evaluate, choice)
            choice.text_standin = strength is not None
            choice.standin_strength = strength
            if strength is not None:
                section["text_map"] = scaled_map(mapping, strength)
    return section, choice


def refit_cooccur(writer: Any, bundle: Any, section: dict[str, Any], choice: Choice, dataset: Any, split: Any,
                  cfg: Any) -> dict[str, Any]:
    """Rebuild the chosen lists from the training and validation events together, once everything is chosen,
    and write them over the lists `fit_cooccur` wrote; returns the `cooccur` section to serve them with.

    Why: the lists are a closed-form statistic, not a trained model with an epoch count to early-stop, and
    what they leave out is each user's latest event before the test one; every co-occurrence baseline of the
    bench (EASE, ItemKNN) is refitted on train + validation before it is tested, and a bundle should learn
    from the same events. Measured with full EASE over Book-Crossing's words (lambda 100, alpha 1; test
    NDCG@10, histories train + valid): lists from train 0.0891 (top 50, positive) against 0.0910 from train +
    valid; MovieLens-100K 0.0728 against 0.0721 (bench/results/2026-11-30-cooccur-refit-cpu-2core). The
    settings (kind, lambda or shrink, decay, weight, k, popularity exponent, the stand-in's strength) stay those
    validation chose on the lists from train alone (the popularity the exponent divides by is recounted over
    the same events as the lists), and the weight keeps its meaning: the signal is normalised by its largest
    value per history. The test events are never read. Where the rebuilt kind cannot be built (EASE past
    `EASE_MAX_ITEMS` once the validation events' items join), the measured lists stay and `refit_events` stays
    None."""
    from recengine.cooccur import FILES

    from .fit import train_valid_split
    from .validation import open_variant

    events = train_valid_split(split).train
    kind, param = str(choice.weighting), float(choice.shrink)  # type: ignore[arg-type]
    built = build_lists({kind: (param,)}, events, dataset, split, cfg.cooccur).get((kind, param))
    if built is None:  # EASE past its item cap once the validation events' items joined: serve what was measured
        return dict(section)
    idx, sc = popularity_scaled(*built, item_users(events, split.n_items), float(choice.pop_exponent or 0.0))
    k = int(section["k"])
    idx, sc = np.ascontiguousarray(idx[:, :k]), np.ascontiguousarray(sc[:, :k])
    # the sealed bundle is read before its lists are overwritten (after, its checksums no longer match)
    unit = open_variant(bundle, "fp32")._state.catalogue.unit_vectors if "text_map" in section else None
    writer.write_npy(FILES["indices"], idx)
    writer.write_npy(FILES["scores"], sc.astype(np.float16))
    out = dict(section)
    if unit is not None:  # re-aligned on the lists served, at the strength validation chose
        mapping = text_map(idx, sc, unit)
        if mapping is None:  # (no warm item with a list left to align on)
            out.pop("text_map")
            choice.text_standin, choice.standin_strength = False, None
        else:
            out["text_map"] = scaled_map(mapping, float(choice.standin_strength or 1.0))
    choice.refit_events = int(len(events))
    return out


__all__ = ["bm25_items", "item_neighbours", "ease_neighbours", "text_tokens", "EASE_MAX_ITEMS", "text_map",
           "score_spread", "choose", "fit_cooccur", "Choice", "PAIR_BUDGET", "WEIGHTINGS", "choose_standin",
           "scaled_map", "STANDIN_TOLERANCE", "build_lists", "refit_cooccur", "item_users", "popularity_scaled",
           "WEIGHT_STEPS"]
