"""`recengine.Engine`: serve a bundle in-process with ONNX Runtime and hnswlib (never torch).

A request goes: user vector (stored, or the user tower over a history + scene + profile) -> candidate
retrieval by inner product (HNSW or exact, filters and exclusions applied) -> fusion-head scores ->
optional re-ranking (long-tail boost, MMR diversity) -> explanations. Live updates (`add_items`,
`remove_items`, `update_user`) take effect for the next request; any number of threads may call the
engine at once (a readers-writer lock guards the catalogue and indexes; writers are serialised and do
their heavy work - encoding, index rebuilds - before taking the lock exclusively).

    engine = Engine.open("demo")
    engine.recommend(user_id="1", k=10)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .attributes import check_item_attrs
from .errors import RequestError
from .filters import build_mask
from .rerank import explain, long_tail_boost, mmr
from .retrieval import EXACT_BUDGET, Retrieved, inner_products, retrieve, topk_rows
from .rwlock import RWLock
from .state import EngineState, ServeOptions, load_state
from .tokenize import TokenBatch

log = logging.getLogger(__name__)

MAX_K = 10_000
GROUP_STRATEGIES = ("average", "least_misery", "max_pleasure")


@dataclass(frozen=True)
class Recommendation:
    """One ranked result: the item id, its score (higher is better) and, with `explain=True`, why."""

    item_id: str
    score: float
    reason: str | None = None


class Recommendations(list):
    """A ranked list of `Recommendation` that also says how it was made.

    `source` is "stored" (the user's stored vector), "history" (user tower over a history), "cold"
    (user tower over scene/profile only) or "popular" (no usable signal: most popular items);
    `skipped` lists history ids that were unknown (or removed) and were ignored.
    """

    source: str = "stored"
    skipped: tuple[Any, ...] = ()


@dataclass(frozen=True)
class RecommendRequest:
    """The arguments of `Engine.recommend`, for `recommend_batch` (plain dicts are accepted too)."""

    user_id: str | None = None
    history: Sequence[str] | None = None
    scene: Mapping[str, Any] | None = None
    profile: Mapping[str, Any] | None = None
    k: int = 10
    exclude_seen: bool = True
    filter: Mapping[str, Any] | None = None
    candidates: int | None = None
    long_tail: float = 0.0
    diversity: float = 0.0
    explain: bool = False


@dataclass
class _Prepared:
    """A validated request with its user vector and exclusions resolved."""

    req: RecommendRequest
    scene: np.ndarray
    profile: np.ndarray
    history: np.ndarray
    exclude: np.ndarray
    skipped: tuple[Any, ...]
    vector: np.ndarray | None = None
    source: str = "stored"
    allowed: np.ndarray | None = None
    needs_tower: bool = False
    k: int = 10
    cands: int = 200


@dataclass(frozen=True)
class UpdateResult:
    """What `update_user` did: events appended, ids skipped (unknown/removed), new history length."""

    user_id: str
    appended: int
    skipped: tuple[Any, ...]
    history_length: int
    created: bool


@dataclass(frozen=True)
class Stages:
    """Per-stage callables over the current bundle, for benchmarks (each runs exactly that stage).

    - `tokenize(texts) -> TokenBatch`
    - `encode(texts) -> (text_embedding, item_vector)` one encoder run, no re-batching
    - `user_tower(user_ids) -> [B, d]` user vectors recomputed from stored histories (unknown scene)
    - `retrieve(vectors, k, backend=None) -> (rows [B, k], scores [B, k])` (`backend`: "hnsw"/"exact"/"onnx")
    - `score(vectors, rows) -> [B, C]` fusion-head scores of candidate rows
    """

    tokenize: Any
    encode: Any
    user_tower: Any
    retrieve: Any
    score: Any


def _rows(vectors: list[np.ndarray]) -> np.ndarray:
    """Stack per-request vectors into a batch (no copy loop for the common single request)."""
    return vectors[0][None, :] if len(vectors) == 1 else np.stack(vectors)


def _check_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise RequestError(f"{name} must be an integer, got {value!r}")
    if not low <= int(value) <= high:
        raise RequestError(f"{name} must be between {low} and {high}, got {value}")
    return int(value)


def _check_float(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise RequestError(f"{name} must be a number, got {value!r}")
    x = float(value)
    if not (low <= x <= high):
        raise RequestError(f"{name} must be between {low} and {high}, got {value}")
    return x


def _check_id(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise RequestError(f"{name} must be a string id, got {type(value).__name__} {value!r}")
    if not value:
        raise RequestError(f"{name} must not be empty")
    return value


def _check_ids(name: str, values: Any) -> list[str]:
    if values is None or isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise RequestError(f"{name} must be a list of string ids, got {values!r}")
    out = list(values)
    for i, v in enumerate(out):
        if not isinstance(v, str):
            raise RequestError(f"{name}[{i}] must be a string id, got {type(v).__name__} {v!r}")
    return out


class Engine:
    """A loaded bundle, ready to serve. Create with `Engine.open`; thread-safe."""

    def __init__(self, state: EngineState) -> None:
        self._state = state
        self._lock = RWLock()
        self._writer = threading.Lock()  # serialises writers (add/remove/update/reload/save)
        self._stats_lock = threading.Lock()
        self.stats: dict[str, int] = {"requests": 0, "unknown_history_items": 0, "cold_requests": 0}

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, bundle: str | Path, device: str = "auto", threads: int | None = None, *,
             variant: str | dict[str, str] | None = None, retrieval: str = "auto", ef: int | None = None,
             rescore: bool | None = None, verify: bool = True, gpu_mem_limit: int = 2 * 1024**3,
             cuda_graphs: bool = True, augment_index: bool | None = None) -> "Engine":
        """Load and verify a bundle.

        device: "auto" (CUDA if it really works, else CPU with a warning), "cpu", or "cuda" (DeviceError
        if CUDA is not really active). threads: ORT intra-op threads on the CPU (None = ORT default).
        variant: "fp32"/"int8"/"fp16" (or a dict per model); default int8 on CPU, fp16 on GPU.
        retrieval: "auto", "hnsw", "exact" or "onnx" (exact MatMul+TopK graph). ef: HNSW ef_search
        (default: the manifest's). rescore: use the fusion head (default: `models.fusion.use_by_default`).
        augment_index: rebuild a plain inner-product item index MIPS-augmented on first HNSW use (None:
        when vector norms vary and the catalogue has <= 100k items; see `recengine.state.ServeOptions`).
        """
        if threads is not None:
            _check_int("threads", threads, 1, 1024)
        if ef is not None:
            _check_int("ef", ef, 1, 100_000)
        options = ServeOptions(device=device, threads=threads, variant=variant, retrieval=retrieval, ef=ef,
                               rescore=rescore, verify=verify, gpu_mem_limit=gpu_mem_limit, cuda_graphs=cuda_graphs,
                               augment_index=augment_index)
        from .retrieval import BACKENDS
        from .sessions import validate_device

        validate_device(device)
        if retrieval not in BACKENDS:
            raise RequestError(f"retrieval must be one of {', '.join(BACKENDS)}, got {retrieval!r}")
        return cls(load_state(bundle, options))

    # ------------------------------------------------------------------ properties
    @property
    def provider(self) -> str:
        """The ONNX Runtime execution provider actually running the models (e.g. CPUExecutionProvider)."""
        return self._state.models.provider

    @property
    def device(self) -> str:
        return self._state.models.device

    @property
    def variants(self) -> dict[str, str]:
        """The model variant loaded per model, e.g. {"encoder": "int8", ...}."""
        return dict(self._state.models.variants)

    @property
    def bundle_path(self) -> Path:
        return self._state.root

    @property
    def manifest(self) -> dict[str, Any]:
        return self._state.manifest

    @property
    def uses_fusion(self) -> bool:
        return self._state.use_fusion

    @property
    def n_items(self) -> int:
        """Live items (removed ones excluded)."""
        return self._state.catalogue.n_alive

    @property
    def n_users(self) -> int:
        return self._state.users.n

    def item_ids(self) -> list[str]:
        """Ids of the live items, in catalogue row order."""
        with self._lock.read():
            cat = self._state.catalogue
            return [i for i, a in zip(cat.ids, cat.alive.tolist()) if a]

    def user_ids(self) -> list[str]:
        with self._lock.read():
            return list(self._state.users.ids)

    def item_title(self, item_id: str) -> str:
        """First line of an item's text without its column prefix (e.g. the movie title); "" if unknown."""
        with self._lock.read():
            cat = self._state.catalogue
            row = cat.row_of.get(item_id) if isinstance(item_id, str) else None
            return cat.title(row) if row is not None else ""

    def history(self, user_id: str) -> list[str]:
        """A known user's history (item ids, oldest first)."""
        _check_id("user_id", user_id)
        with self._lock.read():
            st = self._state
            row = st.users.row_of.get(user_id)
            if row is None:
                raise RequestError(f"unknown user_id {user_id!r}")
            return [st.catalogue.ids[r] for r in st.users.history(row).tolist()]

    def retrieval_backend(self, batch: int = 1) -> str:
        """Name of the retrieval backend a batch of this size uses now ("hnsw", "exact" or "onnx")."""
        st = self._state
        return st.items_index.backend(st.catalogue.n_alive, batch).name

    def _count(self, key: str, n: int = 1) -> None:
        with self._stats_lock:
            self.stats[key] = self.stats.get(key, 0) + n

    # ------------------------------------------------------------------ recommend
    def recommend(self, user_id: str | None = None, history: Sequence[str] | None = None,
                  scene: Mapping[str, Any] | None = None, profile: Mapping[str, Any] | None = None, k: int = 10,
                  exclude_seen: bool = True, filter: Mapping[str, Any] | None = None, candidates: int | None = None,
                  long_tail: float = 0.0, diversity: float = 0.0, explain: bool = False) -> Recommendations:
        """Top-`k` items for a user (stored vector), a history of item ids, or neither (cold path).

        scene: request context, e.g. {"daypart": "evening"} (keys with or without `ctx_`);
        profile: user attributes (keys with or without `attr_`), overriding a known user's stored profile.
        exclude_seen drops items in the user's history (and in `history`). filter: see `recengine.filters`.
        candidates: how many items retrieval hands to the fusion head (default: the number it was trained
        with, `models.fusion.n_candidates`, else 200). long_tail >= 0 penalises popular
        items; diversity in [0, 1] re-ranks by MMR; explain names the history item behind each result.
        """
        req = RecommendRequest(user_id=user_id, history=history, scene=scene, profile=profile, k=k,
                               exclude_seen=exclude_seen, filter=filter, candidates=candidates,
                               long_tail=long_tail, diversity=diversity, explain=explain)
        return self.recommend_batch([req])[0]

    def recommend_batch(self, requests: Sequence[RecommendRequest | Mapping[str, Any]]) -> list[Recommendations]:
        """Serve many requests at once: one user-tower run, batched retrieval and one fusion run."""
        if isinstance(requests, (str, bytes, Mapping)) or not isinstance(requests, Sequence):
            raise RequestError("recommend_batch expects a list of requests (RecommendRequest or dicts)")
        reqs = [self._as_request(r, i) for i, r in enumerate(requests)]
        if not reqs:
            return []
        with self._lock.read():
            st = self._state
            prepared = [self._prepare(st, r) for r in reqs]
            self._user_vectors(st, prepared)
            out = self._serve(st, prepared)
        self._count("requests", len(reqs))
        return out

    @staticmethod
    def _as_request(r: Any, i: int) -> RecommendRequest:
        if isinstance(r, RecommendRequest):
            return r
        if isinstance(r, Mapping):
            unknown = set(r) - set(RecommendRequest.__dataclass_fields__)
            if unknown:
                raise RequestError(f"request {i}: unknown fields {sorted(unknown)}")
            return RecommendRequest(**r)
        raise RequestError(f"request {i} must be a RecommendRequest or a dict, got {type(r).__name__}")

    def _prepare(self, st: EngineState, req: RecommendRequest) -> _Prepared:
        cat = st.catalogue
        k = _check_int("k", req.k, 1, MAX_K)
        cands = st.default_candidates if req.candidates is None else _check_int("candidates", req.candidates, 1, 100_000)
        _check_float("long_tail", req.long_tail, 0.0, 100.0)
        _check_float("diversity", req.diversity, 0.0, 1.0)
        scene = st.scene.encode(req.scene)
        user_row = None
        if req.user_id is not None:
            _check_id("user_id", req.user_id)
            user_row = st.users.row_of.get(req.user_id)
        profile = st.users.profiles[user_row].copy() if user_row is not None else np.zeros(st.profile.slots, np.int64)
        if req.profile:
            override = st.profile.encode(req.profile)
            given = [st.profile.columns.index(st.profile.column_for(key)) for key in req.profile]
            profile[given] = override[given]
        stored = st.users.history(user_row) if user_row is not None else np.zeros(0, np.int64)
        skipped: tuple[Any, ...] = ()
        if req.history is not None:
            ids = _check_ids("history", req.history)
            rows, unknown = cat.rows_of(ids)
            skipped = tuple(unknown)
            if unknown:
                self._count("unknown_history_items", len(unknown))
            history = rows
        else:
            history = stored[cat.alive[stored]] if stored.size else stored
        if not req.exclude_seen:
            exclude = np.zeros(0, np.int64)
        elif req.history is None:
            exclude = stored
        else:
            exclude = np.unique(np.concatenate([stored, history]))
        allowed = build_mask(req.filter, cat.row_of, cat.attrs, cat.n_rows)
        p = _Prepared(req=req, scene=scene, profile=profile, history=history, exclude=exclude, skipped=skipped,
                      allowed=allowed, k=k, cands=cands)
        contextual = bool(req.scene) or bool(req.profile)
        if req.history is not None:
            p.source, p.needs_tower = "history", True
            if history.size == 0 and not contextual:
                p.source, p.needs_tower = "popular", False
        elif user_row is not None:
            if contextual:  # stored vectors assume an unknown scene: recompute with this one
                p.source, p.needs_tower = "history", True
            else:
                p.vector = st.users.vectors[user_row]
        elif contextual:
            p.source, p.needs_tower = "cold", True
        else:
            p.source = "popular"
        return p

    def _user_vectors(self, st: EngineState, prepared: list[_Prepared]) -> None:
        todo = [p for p in prepared if p.needs_tower]
        if not todo:
            return
        vectors = st.models.user_vectors([p.history for p in todo], st.catalogue.array("vectors"),
                                         _rows([p.scene for p in todo]), _rows([p.profile for p in todo]))
        for p, v in zip(todo, vectors):
            if np.all(np.isfinite(v)) and float(np.abs(v).sum()) > 0:
                p.vector = v
            else:
                p.source = "popular"

    def _serve(self, st: EngineState, prepared: list[_Prepared]) -> list[Recommendations]:
        cat = st.catalogue
        matrix = cat.array("vectors")
        results: list[Recommendations | None] = [None] * len(prepared)
        # Retrieval: requests without a filter go through the backend as one batch.
        with_vec = [i for i, p in enumerate(prepared) if p.vector is not None]
        retrieved: dict[int, Retrieved] = {}
        plain = [i for i in with_vec if prepared[i].allowed is None]
        if plain:
            n_fetch = max(max(prepared[i].cands, prepared[i].k) for i in plain)
            queries = _rows([prepared[i].vector for i in plain]).astype(np.float32, copy=False)
            backend = st.items_index.backend(cat.n_alive, len(plain))
            got = retrieve(backend, st.items_index.exact, matrix, cat.alive, queries, n_fetch,
                           exclude=[prepared[i].exclude for i in plain])
            for i, r in zip(plain, got):
                c = max(prepared[i].cands, prepared[i].k)
                retrieved[i] = Retrieved(r.rows[:c], r.scores[:c])
        for i in with_vec:
            p = prepared[i]
            if p.allowed is not None:
                backend = st.items_index.backend(cat.n_alive, 1)
                (r,) = retrieve(backend, st.items_index.exact, matrix, cat.alive, p.vector[None, :].astype(np.float32),
                                max(p.cands, p.k), allowed=p.allowed, exclude=[p.exclude])
                retrieved[i] = r
        # Fusion: one run over all requests, candidates padded to the longest list.
        scored: dict[int, np.ndarray] = {i: r.scores.astype(np.float64) for i, r in retrieved.items()}
        fuse = [i for i in with_vec if retrieved[i].rows.size]
        if st.use_fusion and fuse:
            width = max(retrieved[i].rows.size for i in fuse)
            rows = np.zeros((len(fuse), width), dtype=np.int64)
            for j, i in enumerate(fuse):
                r = retrieved[i].rows
                rows[j, : r.size] = r
                rows[j, r.size :] = r[0]
            fused = self._fusion(st, _rows([prepared[i].vector for i in fuse]), rows,
                                 _rows([prepared[i].scene for i in fuse]), _rows([prepared[i].profile for i in fuse]))
            for j, i in enumerate(fuse):
                scored[i] = fused[j, : retrieved[i].rows.size].astype(np.float64)
        for i, p in enumerate(prepared):
            if p.vector is None:
                results[i] = self._popular(st, p)
                continue
            results[i] = self._finish(st, p, retrieved[i].rows, scored[i])
        return [r for r in results if r is not None]

    @staticmethod
    def _fusion(st: EngineState, users: np.ndarray, rows: np.ndarray, scene: np.ndarray, profile: np.ndarray) -> np.ndarray:
        cat = st.catalogue
        return st.models.fusion_scores(users, cat.array("vectors")[rows], cat.array("item_feats")[rows],
                                       cat.array("pop_bucket")[rows], scene, profile)

    def _popular(self, st: EngineState, p: _Prepared) -> Recommendations:
        """Cold path without any usable signal: the most popular live items that pass the filter."""
        self._count("cold_requests")
        cat = st.catalogue
        ok = cat.alive.copy()
        if p.allowed is not None:
            ok &= p.allowed
        if p.exclude.size:
            ok[p.exclude] = False
        pop = cat.array("popularity").astype(np.float64)
        score = np.where(ok, np.log1p(pop), -np.inf)
        c = max(p.cands, p.k)
        idx, vals = topk_rows(score[None, :], c)
        keep = np.isfinite(vals[0])
        rows, vals = idx[0][keep], vals[0][keep]
        out = self._finish(st, p, rows, vals.astype(np.float64), reason_default="popular")
        return out

    def _finish(self, st: EngineState, p: _Prepared, rows: np.ndarray, scores: np.ndarray,
                reason_default: str | None = None) -> Recommendations:
        cat = st.catalogue
        req = p.req
        out = Recommendations()
        out.source, out.skipped = p.source, p.skipped
        if rows.size == 0:
            return out
        adjusted = scores
        if req.long_tail > 0:
            adjusted = long_tail_boost(scores, cat.array("popularity")[rows], req.long_tail)
        if req.diversity > 0:
            order = mmr(adjusted, cat.unit_vectors[rows], p.k, req.diversity)
        else:
            order = np.argsort(-adjusted, kind="stable")[: p.k]
        final_rows = rows[order]
        final_scores = adjusted[order]
        reasons: list[str | None] = [None] * final_rows.size
        if req.explain:
            if p.history.size and p.source != "popular":
                hist = np.unique(p.history)
                best, sim = explain(cat.unit_vectors[final_rows], cat.unit_vectors[hist])
                reasons = [f"similar to {cat.title(int(hist[b]))!r} in your history (cosine {s:.2f})"
                           for b, s in zip(best.tolist(), sim.tolist())]
            elif reason_default:
                reasons = [f"popular ({int(cat.array('popularity')[r])} interactions)" for r in final_rows.tolist()]
            elif p.source == "cold":
                reasons = ["matches the request's scene/profile"] * final_rows.size
            else:
                reasons = ["matches your taste profile"] * final_rows.size
        for r, s, why in zip(final_rows.tolist(), final_scores.tolist(), reasons):
            out.append(Recommendation(cat.ids[r], float(s), why))
        return out

    # ------------------------------------------------------------------ group, similar, search
    def recommend_group(self, user_ids: Sequence[str], strategy: str = "average", k: int = 10,
                        candidates: int | None = None, exclude_seen: bool = True,
                        scene: Mapping[str, Any] | None = None) -> Recommendations:
        """Items for a group: each member's scores (z-normalised) over the union of their candidates,
        aggregated by "average", "least_misery" (the least happy member decides) or "max_pleasure".
        With a `scene` (e.g. {"daypart": "evening"}: the group's shared context) every member's vector is
        recomputed by the user tower with it, and the fusion head scores in it. Unknown members are skipped
        (listed in `.skipped`); a group with no known member gets popular items."""
        ids = _check_ids("user_ids", user_ids)
        if not ids:
            raise RequestError("recommend_group needs at least one user id")
        if strategy not in GROUP_STRATEGIES:
            raise RequestError(f"strategy must be one of {', '.join(GROUP_STRATEGIES)}, got {strategy!r}")
        k = _check_int("k", k, 1, MAX_K)
        with self._lock.read():
            st = self._state
            candidates = (st.default_candidates if candidates is None
                          else _check_int("candidates", candidates, 1, 100_000))
            scene_codes = st.scene.encode(scene)  # bad scene keys raise RequestError, like recommend
            cat = st.catalogue
            rows_u = [st.users.row_of.get(u) for u in ids]
            known = [r for r in rows_u if r is not None]
            skipped = tuple(u for u, r in zip(ids, rows_u) if r is None)
            if not known:
                p = _Prepared(req=RecommendRequest(k=k, candidates=candidates), scene=st.scene.encode(None),
                              profile=np.zeros(st.profile.slots, np.int64), history=np.zeros(0, np.int64),
                              exclude=np.zeros(0, np.int64), skipped=skipped, source="popular", k=k,
                              cands=candidates)
                out = self._popular(st, p)
                out.skipped = skipped
                return out
            vecs = st.users.vectors[known].astype(np.float32)
            if scene:  # stored vectors assume an unknown scene: recompute every member's in this one
                scenes = np.broadcast_to(scene_codes, (len(known), scene_codes.size)).copy()
                fresh = st.models.user_vectors([st.users.history(r) for r in known], cat.array("vectors"), scenes,
                                               st.users.profiles[known]).astype(np.float32)
                usable = np.all(np.isfinite(fresh), axis=1) & (np.abs(fresh).sum(axis=1) > 0)
                vecs = np.where(usable[:, None], fresh, vecs)
            seen = (np.unique(np.concatenate([st.users.history(r) for r in known]))
                    if exclude_seen else np.zeros(0, np.int64))
            backend = st.items_index.backend(cat.n_alive, len(known))
            got = retrieve(backend, st.items_index.exact, cat.array("vectors"), cat.alive, vecs,
                           max(candidates, k), exclude=[seen] * len(known))
            union = np.unique(np.concatenate([r.rows for r in got]))
            if union.size == 0:
                return Recommendations()
            rows = np.broadcast_to(union, (len(known), union.size))
            if st.use_fusion:
                member_scene = np.broadcast_to(scene_codes, (len(known), scene_codes.size)).copy()
                member_scores = self._fusion(st, vecs, np.ascontiguousarray(rows), member_scene,
                                             st.users.profiles[known])
            else:
                member_scores = inner_products(vecs, cat.array("vectors")[union])
            z = np.stack([(s - s.mean()) / (s.std() + 1e-9) for s in member_scores.astype(np.float64)])
            agg = {"average": z.mean(axis=0), "least_misery": z.min(axis=0), "max_pleasure": z.max(axis=0)}[strategy]
            order = np.argsort(-agg, kind="stable")[:k]
            out = Recommendations(Recommendation(cat.ids[int(union[o])], float(agg[o])) for o in order)
            out.source, out.skipped = "group", skipped
            return out

    def similar_items(self, item_id: str, k: int = 10, filter: Mapping[str, Any] | None = None) -> Recommendations:
        """Items most similar to `item_id`: cosine similarity of retrieval vectors (score = cosine).

        Cosine rather than inner product: with inner products the most popular items (largest vectors)
        would be "similar" to everything. Small catalogues are scanned exactly; large ones take
        20 x k inner-product candidates from the index and re-rank them by cosine.
        """
        _check_id("item_id", item_id)
        k = _check_int("k", k, 1, MAX_K)
        with self._lock.read():
            st = self._state
            cat = st.catalogue
            row = cat.row_of.get(item_id)
            if row is None or not cat.alive[row]:
                raise RequestError(f"unknown item_id {item_id!r}")
            allowed = build_mask(filter, cat.row_of, cat.attrs, cat.n_rows)
            unit = cat.unit_vectors
            me = np.array([row], np.int64)
            if cat.n_alive <= EXACT_BUDGET:
                ok = cat.alive.copy()
                ok[row] = False
                if allowed is not None:
                    ok &= allowed
                cos = np.where(ok, inner_products(unit[row][None, :], unit)[0], -np.inf)
                idx, vals = topk_rows(cos[None, :], k)
                keep = np.isfinite(vals[0])
                rows, scores = idx[0][keep], vals[0][keep]
            else:
                q = cat.array("vectors")[row][None, :].astype(np.float32)
                (r,) = retrieve(st.items_index.backend(cat.n_alive, 1), st.items_index.exact, cat.array("vectors"),
                                cat.alive, q, 20 * k, allowed=allowed, exclude=[me])
                cos = unit[r.rows] @ unit[row]
                order = np.argsort(-cos, kind="stable")[:k]
                rows, scores = r.rows[order], cos[order]
            out = Recommendations(Recommendation(cat.ids[int(i)], float(s)) for i, s in zip(rows, scores))
            out.source = "item"
            return out

    def search(self, text: str, k: int = 10, filter: Mapping[str, Any] | None = None) -> Recommendations:
        """Items whose text is closest to `text` (encoder text embedding, cosine)."""
        if not isinstance(text, str):
            raise RequestError(f"search text must be a string, got {type(text).__name__}")
        if not text.strip():
            raise RequestError("search text is empty")
        k = _check_int("k", k, 1, MAX_K)
        with self._lock.read():
            st = self._state
            cat = st.catalogue
            allowed = build_mask(filter, cat.row_of, cat.attrs, cat.n_rows)
            emb, _ = st.models.encode_batch([text])
            (r,) = retrieve(st.text_index.backend(cat.n_alive, 1), st.text_index.exact, cat.array("text_embeddings"),
                            cat.alive, emb.astype(np.float32), k, allowed=allowed)
            out = Recommendations(Recommendation(cat.ids[int(i)], float(s)) for i, s in zip(r.rows, r.scores))
            out.source = "search"
            return out

    # ------------------------------------------------------------------ live updates
    def add_items(self, items: Sequence[Mapping[str, Any]], batch_size: int = 64) -> list[str]:
        """Encode new items with the ONNX encoder and make them retrievable at once (cold start).

        Each item is a mapping with "item_id" (str), the bundle's text columns (`data.text_columns`, e.g.
        "title", "genres") and optional `attr_*` values; or a prebuilt "text". The item vector is the
        encoder's `item_vector` (text-only, as for catalogue items nobody interacted with). An existing id
        is replaced. Returns the ids added.
        """
        from .data.text import build_item_text

        if isinstance(items, Mapping) or not isinstance(items, Sequence) or isinstance(items, (str, bytes)):
            raise RequestError("add_items expects a list of item mappings")
        if not items:
            return []
        st0 = self._state
        ids, texts, attrs = [], [], []
        seen: set[str] = set()
        for i, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise RequestError(f"item {i} must be a mapping with 'item_id' and text columns")
            item_id = _check_id(f"item {i} item_id", item.get("item_id"))
            if item_id in seen:
                raise RequestError(f"item id {item_id!r} appears twice in add_items")
            seen.add(item_id)
            if "text" in item and item["text"] is not None:
                text = item["text"]
                if not isinstance(text, str):
                    raise RequestError(f"item {item_id!r}: text must be a string")
                text = text.strip()
            else:
                columns = st0.text_columns or tuple(c for c in item if c not in ("item_id",) and not c.startswith("attr_"))
                text = build_item_text(item, columns)
            if not text:
                cols = ", ".join(st0.text_columns) or "text"
                raise RequestError(f"item {item_id!r} has no text (give one of: {cols})")
            ids.append(item_id)
            texts.append(text)
            attrs.append(check_item_attrs(item, f"item {item_id!r}"))  # refuse what save() could not write
        with self._writer:
            st = self._state
            text_emb, item_vec = st.models.encode(texts, batch_size=batch_size)  # outside the exclusive lock
            n = len(ids)
            arrays = {
                "vectors": item_vec,
                "text_vectors": item_vec,
                "text_embeddings": text_emb,
                "popularity": np.zeros(n, np.int64),
                "pop_bucket": np.zeros(n, np.int64),
                "item_feats": np.broadcast_to(st.cold_item_feats, (n, st.cold_item_feats.size)).copy(),
            }
            with self._lock.write():
                cat = st.catalogue
                cat.ensure_attrs({k for a in attrs for k in a})
                replaced = np.asarray([cat.row_of[i] for i in ids if i in cat.row_of and cat.alive[cat.row_of[i]]],
                                      dtype=np.int64)
                new_rows = cat.append(ids, texts, attrs, arrays)  # tombstones the replaced rows
                self._refresh(st, added=new_rows, removed=replaced)
            self._maybe_compact(st)
        return ids

    def remove_items(self, ids: Sequence[str]) -> int:
        """Remove items (they stop being served at once). Returns how many were live. Past ~20 % dead
        rows the indexes are rebuilt without them."""
        wanted = _check_ids("ids", ids)
        with self._writer:
            st = self._state
            with self._lock.write():
                cat = st.catalogue
                rows = np.asarray([cat.row_of[i] for i in wanted if i in cat.row_of], dtype=np.int64)
                removed = cat.remove(rows) if rows.size else rows
                if removed.size:
                    self._refresh(st, added=None, removed=removed)
            self._maybe_compact(st)
        return int(removed.size)

    def update_user(self, user_id: str, events: Sequence[str | Mapping[str, Any]]) -> UpdateResult:
        """Append events (item ids, or mappings with "item_id") to a user's history and refresh the
        stored user vector at once (unknown scene, stored profile). Unknown users are created. Items new to the
        user's history gain one interaction of popularity (as the export counts distinct user-item pairs)."""
        _check_id("user_id", user_id)
        if isinstance(events, (str, bytes, Mapping)) or not isinstance(events, Iterable):
            raise RequestError("events must be a list of item ids (or mappings with 'item_id')")
        item_ids = []
        for i, e in enumerate(events):
            value = e.get("item_id") if isinstance(e, Mapping) else e
            if not isinstance(value, str):
                raise RequestError(f"events[{i}] must be an item id string, got {value!r}")
            item_ids.append(value)
        with self._writer:
            st = self._state
            with self._lock.read():
                rows, unknown = st.catalogue.rows_of(item_ids)
                row = st.users.row_of.get(user_id)
                old = st.users.history(row) if row is not None else np.zeros(0, np.int64)
                profile = st.users.profiles[row] if row is not None else np.zeros(st.profile.slots, np.int64)
                history = np.concatenate([old, rows]).astype(np.int64)
                vector = st.models.user_vectors([history], st.catalogue.array("vectors"),
                                                np.zeros((1, st.scene.slots), np.int64), profile[None, :])[0]
            with self._lock.write():
                created = row is None
                if created:
                    row = st.users.add(user_id, vector, profile)
                else:
                    st.users.set_vector(row, vector)
                st.users.set_history(row, history)
                first_time = np.unique(rows[~np.isin(rows, old)])
                st.catalogue.count_interactions(first_time, st.pop_bucket_edges)
        if unknown:
            self._count("unknown_history_items", len(unknown))
        return UpdateResult(user_id, int(rows.size), tuple(unknown), int(history.size), created)

    def _refresh(self, st: EngineState, added: np.ndarray | None, removed: np.ndarray | None) -> None:
        cat = st.catalogue
        st.items_index.refresh(cat.array("vectors"), cat.alive, added, removed)
        st.text_index.refresh(cat.array("text_embeddings"), cat.alive, added, removed)

    def _maybe_compact(self, st: EngineState) -> None:
        """Rebuild HNSW indexes without tombstones once they pass the threshold (build, then swap)."""
        cat = st.catalogue
        if not cat.compaction_due(st.options.compaction_threshold):
            return
        from .retrieval import HnswBackend

        live = np.flatnonzero(cat.alive)
        rebuilt = {}
        for space, key in ((st.items_index, "vectors"), (st.text_index, "text_embeddings")):
            if space.hnsw is None:
                continue
            params = space.params
            rebuilt[space.name] = HnswBackend.build(cat.array(key), live, M=int(params.get("M", 16)),
                                                    ef_construction=int(params.get("ef_construction", 200)),
                                                    ef=space.hnsw.ef, augment=space.hnsw.max_norm is not None)
        with self._lock.write():
            for space in (st.items_index, st.text_index):
                if space.name in rebuilt:
                    space.hnsw = rebuilt[space.name]
            cat.compacted_dead = cat.n_dead
        log.info("compacted HNSW indexes: %d live items, %d tombstones dropped", live.size, cat.n_dead)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, force: bool = False) -> Path:
        """Write the current state (items added/removed, updated users) as a new bundle, atomically."""
        from .persist import save_state

        with self._writer, self._lock.read():
            return save_state(self._state, path, force=force)

    def reload(self, bundle: str | Path | None = None) -> None:
        """Load `bundle` (default: the current one again) and swap it in; requests in flight finish on
        the old state, the next ones see the new one. On error the current bundle keeps serving."""
        with self._writer:
            target = self._state.root if bundle is None else bundle
            new_state = load_state(target, self._state.options)
            with self._lock.write():
                self._state = new_state

    def warmup(self) -> None:
        """Run every model once and do any deferred index work (the MIPS-augmented rebuild), so the first
        real request pays none of it. Benchmarks call it before timing."""
        with self._lock.read():
            st = self._state
            for space in (st.items_index, st.text_index):
                if space.hnsw is not None and space.augment and space.hnsw.max_norm is None:
                    space._augment_now()
            st.models.encode_batch(["warm up"])
            users = st.users.ids[:1]
        if users:
            self.recommend(user_id=users[0], k=1)
            self.recommend(history=[], scene=None, k=1)
            self.recommend(user_id=users[0], k=1, scene={} if not st.scene.columns else
                           {st.scene.columns[0]: "<unk>"})

    # ------------------------------------------------------------------ benchmarking hooks
    def stages(self) -> Stages:
        """Per-stage callables (see `Stages`) bound to the current bundle, for latency benchmarks."""
        st = self._state

        def tokenize(texts: Sequence[str]) -> TokenBatch:
            return st.models.tokenizer.encode(list(texts))

        def user_tower(user_ids: Sequence[str]) -> np.ndarray:
            rows = [st.users.row_of[u] for u in user_ids]
            return st.models.user_vectors([st.users.history(r) for r in rows], st.catalogue.array("vectors"),
                                          np.zeros((len(rows), st.scene.slots), np.int64), st.users.profiles[rows])

        def retrieve_stage(vectors: np.ndarray, k: int, backend: str | None = None) -> tuple[np.ndarray, np.ndarray]:
            space = st.items_index
            chosen = {"hnsw": space.hnsw, "exact": space.exact, "onnx": space.onnx}.get(backend or "", None)
            if backend is not None and chosen is None:
                raise RequestError(f"retrieval backend {backend!r} is not loaded in this engine")
            b = chosen or space.backend(st.catalogue.n_alive, vectors.shape[0])
            return b.search(np.ascontiguousarray(vectors, dtype=np.float32), k)

        def score(vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
            b = vectors.shape[0]
            return self._fusion(st, vectors.astype(np.float32), rows, np.zeros((b, st.scene.slots), np.int64),
                                np.zeros((b, st.profile.slots), np.int64))

        return Stages(tokenize=tokenize, encode=st.models.encode_batch, user_tower=user_tower,
                      retrieve=retrieve_stage, score=score)

    def __repr__(self) -> str:
        return (f"Engine({str(self._state.root)!r}, provider={self.provider}, items={self.n_items}, "
                f"users={self.n_users}, variants={self.variants})")


__all__ = ["Engine", "Recommendation", "Recommendations", "RecommendRequest", "Stages", "UpdateResult"]
