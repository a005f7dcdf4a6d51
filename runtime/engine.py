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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import live, neighbours, pipeline
from .cooccur import check_weight
from .errors import NotFoundError, RequestError, shown
from .filters import build_mask
from .index_io import DeferredIndex
from .models import VARIANTS
from .requests import (
    GROUP_STRATEGIES,
    MAX_CANDIDATES,
    MAX_K,
    MAX_QUERY_CHARS,
    Recommendation,
    Recommendations,
    RecommendRequest,
    RowQuery,
    UpdateResult,
    as_requests,
    check_flag,
    check_id,
    check_ids,
    check_int,
)
from .rwlock import RWLock
from .state import EngineState, ServeOptions, load_state
from .tokenize import TokenBatch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stages:
    """Per-stage callables over the current bundle, for benchmarks (each runs exactly that stage).

    - `tokenize(texts) -> TokenBatch`
    - `encode(texts) -> (text_embedding, item_vector)` one encoder run (and the item head's, split), no re-batching
    - `encode_query(texts) -> text_embedding [B, text]` the encoder run `search` makes (never the item head)
    - `user_tower(user_ids) -> [B, d]` user vectors recomputed from stored histories (unknown scene)
    - `retrieve(vectors, k, backend=None) -> (rows [B, k], scores [B, k])` (`backend`: "hnsw"/"exact"/"onnx")
    - `score(vectors, rows) -> [B, C]` fusion-head scores of candidate rows
    """

    tokenize: Any
    encode: Any
    encode_query: Any
    user_tower: Any
    retrieve: Any
    score: Any


def _results(source: str, rows: np.ndarray, scores: np.ndarray, ids: list[str]) -> Recommendations:
    out = Recommendations(Recommendation(ids[int(i)], float(s)) for i, s in zip(rows, scores))
    out.source = source
    return out


class Engine:
    """A loaded bundle, ready to serve. Create with `Engine.open`; thread-safe."""

    def __init__(self, state: EngineState) -> None:
        self._state = state
        self._lock = RWLock()
        self._writer = threading.Lock()  # serialises writers (add/remove/update/reencode/reload/save)
        self._counters = pipeline.Counters()
        self.stats: dict[str, int] = self._counters.data
        self._compaction: threading.Thread | None = None
        self._compaction_lock = threading.Lock()

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, bundle: str | Path, device: str = "auto", threads: int | None = None, *,
             variant: str | dict[str, str] | None = None, item_variant: str | None = None,
             retrieval: str = "auto", ef: int | None = None,
             rescore: bool | None = None, verify: bool = True, gpu_mem_limit: int = 2 * 1024**3,
             cuda_graphs: bool = True, fresh_below: int = 5, cooccur_weight: float | None = None,
             overlap: bool = True) -> Engine:
        """Load and verify a bundle.

        device: "auto" (CUDA if it really works, else CPU with a warning), "cpu", or "cuda" (DeviceError
        if CUDA is not really active). threads: ORT intra-op threads on the CPU (None = ORT default).
        variant: "fp32"/"int8"/"fp16" (or a dict per model); default int8 on CPU, fp16 on GPU.
        item_variant: the encoder variant that encodes items to be stored (`add_items`, `reencode_items`);
        default fp32 where the serving encoder is INT8, so an added item's vectors match what the export
        stores for a catalogue item with the same text (`recengine.models`); "int8" adds items faster.
        retrieval: "auto", "hnsw", "exact" or "onnx" (exact MatMul+TopK graph). ef: HNSW ef_search
        (default: the manifest's). rescore: use the fusion head (default: `models.fusion.use_by_default`).
        The HNSW indexes are served in the form the bundle stores them (docs/bundle.md "Indexes").
        fresh_below: items with fewer interactions are "fresh" for a request's `fresh` share of the slots.
        cooccur_weight: weight of the item co-occurrence signal in `recommend` (default: the bundle's, chosen
        on validation by the export; 0: the user tower alone; `recengine.cooccur`).
        overlap: let `search` compute its BM25 half on a helper thread while the encoder runs, when `threads`
        leaves a CPU idle (`recengine.overlap`; False: always in sequence, one thread per call).
        """
        if not isinstance(overlap, bool):
            raise RequestError(f"overlap must be True or False, got {overlap!r}")
        if threads is not None:
            check_int("threads", threads, 1, 1024)
        if ef is not None:
            check_int("ef", ef, 1, 100_000)
        check_int("fresh_below", fresh_below, 1, 2**62)
        if item_variant is not None and item_variant not in VARIANTS:
            raise RequestError(f"item_variant must be one of {', '.join(VARIANTS)} or None, got {item_variant!r}")
        if cooccur_weight is not None:
            cooccur_weight = check_weight(cooccur_weight)
        options = ServeOptions(device=device, threads=threads, variant=variant, item_variant=item_variant,
                               retrieval=retrieval, ef=ef,
                               rescore=rescore, verify=verify, gpu_mem_limit=gpu_mem_limit, cuda_graphs=cuda_graphs,
                               fresh_below=fresh_below, cooccur_weight=cooccur_weight, overlap=overlap)
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
    def item_variant(self) -> str:
        """The encoder variant that encodes items to be stored (`add_items`, `reencode_items`)."""
        return self._state.models.item_variant

    @property
    def variant_reasons(self) -> dict[str, str]:
        """Why each variant was loaded: "requested", or the per-CPU rule of `recengine.cpu_features`."""
        return dict(self._state.models.variant_reasons)

    @property
    def cpu_features(self) -> dict[str, Any] | None:
        """The CPU the variants were chosen for: arch, model, SIMD instruction sets, int8 dot product
        (None on the GPU)."""
        cpu = self._state.models.cpu
        return cpu.describe() if cpu is not None else None

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

    @property
    def scene_slots(self) -> int:
        """Width of the scene codes the user tower and fusion head take (`dims.scene_slots`)."""
        return self._state.scene.slots

    def encode_scenes(self, table: Mapping[str, Any], n: int) -> np.ndarray:
        """int64 [n, scene_slots] codes of `n` scenes given as columns (`ctx_*` name -> n values), by the
        bundle's vocabulary (unknown values -> `<unk>`): the batch form of a request's `scene`."""
        return self._state.scene.encode_table(table, n)

    def user_profiles(self, rows: np.ndarray) -> np.ndarray:
        """int64 [len(rows), profile_slots] stored profile codes of the users at `rows` (bundle user rows)."""
        with self._lock.read():
            return self._state.users.profiles[np.asarray(rows, dtype=np.int64)].copy()

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
        user_id = check_id("user_id", user_id)
        with self._lock.read():
            st = self._state
            row = st.users.row_of.get(user_id)
            if row is None:
                raise NotFoundError(f"unknown user_id {user_id!r}")
            return [st.catalogue.ids[r] for r in st.users.history(row).tolist()]

    def index_forms(self) -> tuple[str, str]:
        """How the item and text HNSW indexes are stored and served: "mips_augment", "plain_ip", or
        "none" (not loaded, e.g. `retrieval="exact"`, or none in the bundle: a catalogue under the text
        space's scan budget has no text index, docs/bundle.md)."""
        st = self._state
        return tuple(("none" if s.hnsw is None else "mips_augment" if s.hnsw.max_norm is not None else "plain_ip")
                     for s in (st.items_index, st.text_index))  # type: ignore[return-value]

    def retrieval_backend(self, batch: int = 1) -> str:
        """Name of the retrieval backend a batch of this size uses now ("hnsw", "exact" or "onnx")."""
        st = self._state
        return st.items_index.backend(st.catalogue.n_alive, batch).name

    # ------------------------------------------------------------------ recommend
    def recommend(self, user_id: str | None = None, history: Sequence[str] | None = None,
                  scene: Mapping[str, Any] | None = None, profile: Mapping[str, Any] | None = None, k: int = 10,
                  exclude_seen: bool = True, filter: Mapping[str, Any] | None = None, candidates: int | None = None,
                  long_tail: float = 0.0, diversity: float = 0.0, explain: bool = False,
                  fresh: float = 0.0) -> Recommendations:
        """Top-`k` items for a user (stored vector), a history of item ids, or neither (cold path).

        scene: request context, e.g. {"daypart": "evening"} (keys with or without `ctx_`);
        profile: user attributes (keys with or without `attr_`), overriding a known user's stored profile.
        exclude_seen drops items in the user's history (and in `history`). filter: see `recengine.filters`.
        candidates: how many items retrieval hands to the fusion head (default: the number it was trained
        with, `models.fusion.n_candidates`, else 200). long_tail >= 0 penalises popular
        items; diversity in [0, 1] re-ranks by MMR; explain names the history item behind each result;
        fresh in [0, 1] reserves that share of the k slots for fresh items (see `RecommendRequest.fresh`).
        """
        req = RecommendRequest(user_id=user_id, history=history, scene=scene, profile=profile, k=k,
                               exclude_seen=exclude_seen, filter=filter, candidates=candidates,
                               long_tail=long_tail, diversity=diversity, explain=explain, fresh=fresh)
        return self.recommend_batch([req])[0]

    def recommend_batch(self, requests: Sequence[RecommendRequest | Mapping[str, Any]], *,
                        independent: bool = False) -> list[Recommendations]:
        """Serve many requests at once: one user-tower run, batched retrieval and one fusion run.

        A large batch may be retrieved from HNSW where one request would be scanned exactly
        (`recengine.retrieval.choose_backend`), and a shared INT8 tower or fusion run quantizes with one
        scale for all, so a request's answer can depend on its batch. `independent=True` gives every request
        the answer `recommend` gives it alone: retrieval as for one query, tower and fusion head run per
        request, an index search (past the scan budget) per request; what the batch still shares is the exact
        scan (one Gemm for all, whose scores differ from a lone scan's only in float rounding, ~1e-6 relative,
        so two items tied to that precision may swap) and the per-call work. This is what a server that
        coalesces concurrent requests wants (`recengine serve`). A request the engine refuses fails the whole
        call (`RequestError`), and then nothing of the call is counted in `stats`."""
        reqs = as_requests(requests)
        if not reqs:
            return []
        counted = pipeline.Counters()  # added to `stats` only once every request has its answer
        with self._lock.read():
            st = self._state
            queries = [pipeline.prepare(st, r, counted) for r in reqs]
            out = pipeline.serve(st, queries, counted, independent=independent)
        counted.add("requests", len(reqs))
        self._counters.merge(counted)
        return out

    def score_catalogue(self, queries: Sequence[RowQuery], batch_size: int = 256) -> np.ndarray:
        """Full score rows float64 [len(queries), catalogue rows] ranking every item as `recommend(history=...,
        scene=..., profile=...)` would with exact retrieval (re-scored candidates first, removed and excluded
        rows -inf). For offline evaluation, where the split is held as catalogue rows and vocabulary codes:
        the export's validation and `recengine bench quality` measure the served scoring path through it."""
        if isinstance(queries, (str, bytes, Mapping)) or not isinstance(queries, Sequence):
            raise RequestError("score_catalogue expects a list of RowQuery")
        for i, q in enumerate(queries):
            if not isinstance(q, RowQuery):
                raise RequestError(f"query {i} must be a RowQuery, got {type(q).__name__}")
        with self._lock.read():
            st = self._state
            out = np.empty((len(queries), st.catalogue.n_rows), dtype=np.float64)
            for start in range(0, len(queries), batch_size):
                chunk = [pipeline.prepare_rows(st, q) for q in queries[start:start + batch_size]]
                out[start:start + len(chunk)] = pipeline.score_catalogue(st, chunk)
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
        ids = check_ids("user_ids", user_ids)
        if not ids:
            raise RequestError("recommend_group needs at least one user id")
        if not isinstance(strategy, str) or strategy not in GROUP_STRATEGIES:
            raise RequestError(f"strategy must be one of {', '.join(GROUP_STRATEGIES)}, got {shown(strategy)}")
        k = check_int("k", k, 1, MAX_K)
        exclude_seen = check_flag("exclude_seen", exclude_seen)
        with self._lock.read():
            st = self._state
            cands = st.default_candidates if candidates is None else check_int("candidates", candidates, 1,
                                                                                MAX_CANDIDATES)
            scene_codes = st.scene.encode(scene)  # bad scene keys raise RequestError, like recommend
            return pipeline.group(st, ids, strategy, k, cands, exclude_seen, scene_codes, bool(scene))

    def similar_items(self, item_id: str, k: int = 10, filter: Mapping[str, Any] | None = None) -> Recommendations:
        """Items most similar to `item_id`: cosine similarity of retrieval vectors (score = cosine); see
        `recengine.neighbours` for why cosine and which space."""
        item_id = check_id("item_id", item_id)
        k = check_int("k", k, 1, MAX_K)
        with self._lock.read():
            st = self._state
            cat = st.catalogue
            row = cat.row_of.get(item_id)
            if row is None or not cat.alive[row]:
                raise NotFoundError(f"unknown item_id {item_id!r}")
            r = neighbours.similar(st, row, k, build_mask(filter, cat.row_of, cat.attrs, cat.n_rows))
            return _results("item", r.rows, r.scores, cat.ids)

    def search(self, text: str, k: int = 10, filter: Mapping[str, Any] | None = None) -> Recommendations:
        """Items whose text best matches `text` (at most `MAX_QUERY_CHARS` = 4,096 characters): hybrid search,
        the encoder's text-embedding cosine fused with BM25 over the item texts (`recengine.lexical`; see
        docs/serving.md "Why search is hybrid"); the BM25 half runs beside the encoder where the engine has a
        helper thread (`recengine.overlap`)."""
        if not isinstance(text, str):
            raise RequestError(f"search text must be a string, got {type(text).__name__}")
        if not text.strip():
            raise RequestError("search text is empty")
        if len(text) > MAX_QUERY_CHARS:
            raise RequestError(f"search text is {len(text)} characters long; at most {MAX_QUERY_CHARS} (the encoder "
                               "reads only its first tokens)")
        k = check_int("k", k, 1, MAX_K)
        with self._lock.read():
            st = self._state
            cat = st.catalogue
            r = neighbours.search(st, text, k, build_mask(filter, cat.row_of, cat.attrs, cat.n_rows))
            return _results("search", r.rows, r.scores, cat.ids)

    # ------------------------------------------------------------------ live updates
    def add_items(self, items: Sequence[Mapping[str, Any]], batch_size: int = 64) -> list[str]:
        """Encode new items with the ONNX encoder and make them retrievable at once (cold start).

        Each item is a mapping with "item_id" (str), the bundle's text columns (`data.text_columns`, e.g.
        "title", "genres") and optional `attr_*` values; or a prebuilt "text"; and, when the bundle was
        exported with media vectors, an optional "vector" (its image/audio vector); `ctx_*` fields are ignored
        (as in an items table) and any other field is a `RequestError` naming it. The item vector is the
        encoder's `item_vector` (plus the media projection of "vector"): what a catalogue item nobody
        interacted with is served. An existing id
        is replaced (users who interacted with it still have it excluded). Returns the ids added.
        """
        ids, texts, attrs = live.parse_items(self._state, items)
        if not ids:
            return []
        self.wait_for_compaction()  # writers queue behind a running rebuild (it copies what they change)
        with self._writer:
            st = self._state
            new = live.encode_items(st, ids, texts, attrs, batch_size)  # outside the exclusive lock
            with self._lock.write():
                live.apply_items(st, new)
            self._compact(st)
        return ids

    def remove_items(self, ids: Sequence[str]) -> int:
        """Remove items (they stop being served at once). Returns how many were live. Past ~20 % dead
        rows the indexes are rebuilt without them."""
        wanted = check_ids("ids", ids)
        self.wait_for_compaction()  # writers queue behind a running rebuild (it copies what they change)
        with self._writer:
            st = self._state
            with self._lock.write():
                n = live.remove(st, wanted)
            self._compact(st)
        return n

    def reencode_items(self, item_ids: Sequence[str] | None = None, batch_size: int = 64) -> int:
        """Re-encode items' text with this engine's item encoder (`item_variant`) and replace their vectors,
        keeping the collaborative part: what each item would be had it been added through this engine. None
        = every live item. Used to measure what a quantised encoder costs items added at serving time. Returns
        how many items were re-encoded."""
        self.wait_for_compaction()  # writers queue behind a running rebuild (it copies what they change)
        with self._writer:
            st = self._state
            cat = st.catalogue
            if item_ids is None:
                rows = np.flatnonzero(cat.alive)
            else:
                rows, unknown = cat.rows_of(check_ids("item_ids", item_ids))
                if unknown:
                    raise NotFoundError(f"unknown item ids: {unknown[:5]}")
            if rows.size == 0:
                return 0
            with self._lock.read():
                planned = live.reencode(st, rows, batch_size)
            with self._lock.write():
                live.apply_reencoded(st, planned)
        return int(rows.size)

    def update_user(self, user_id: str, events: Sequence[str | Mapping[str, Any]]) -> UpdateResult:
        """Append events (item ids, or mappings with "item_id") to a user's history and refresh the
        stored user vector at once (unknown scene, stored profile). Unknown users are created. Items new to the
        user's history gain one interaction of popularity (as the export counts distinct user-item pairs)."""
        user_id = check_id("user_id", user_id)
        item_ids = live.parse_events(events)
        self.wait_for_compaction()  # writers queue behind a running rebuild (it copies what they change)
        with self._writer:
            st = self._state
            with self._lock.read():
                plan = live.plan_user_update(st, user_id, item_ids)
            with self._lock.write():
                created = live.apply_user_update(st, plan)
        if plan.unknown:
            self._counters.add("unknown_history_items", len(plan.unknown))
        return UpdateResult(user_id, int(plan.rows.size), tuple(plan.unknown), int(plan.history.size), created)

    def _compact(self, st: EngineState) -> None:
        """Past the tombstone threshold, rebuild the state without dead rows in a background thread (build,
        then swap): the write that crossed the threshold returns at once, readers keep serving the old state
        until the swap, and later writers queue behind the rebuild (they would otherwise change what is
        being copied). Memory of removed rows is released with the old state."""
        if not live.compaction_due(st):
            return
        with self._compaction_lock:
            if self._compaction is not None and self._compaction.is_alive():
                return
            thread = threading.Thread(target=self._run_compaction, name="recengine-compaction", daemon=True)
            thread.start()
            self._compaction = thread  # published started: other writers join it without this lock

    def _run_compaction(self) -> None:
        try:
            with self._writer:
                st = self._state
                if not live.compaction_due(st):
                    return
                with self._lock.read():
                    new_state = live.compacted(st)
                with self._lock.write():
                    self._state = new_state
        except Exception:  # noqa: BLE001 - a failed rebuild must not kill the host: the old state keeps serving
            log.exception("compaction failed; serving the uncompacted state")

    def wait_for_compaction(self, timeout: float | None = None) -> bool:
        """Block until a running background compaction has swapped in (for tests and orderly shutdown);
        True when none is running any more."""
        thread = self._compaction
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def storage(self) -> dict[str, int]:
        """Catalogue rows held in memory: `rows` (live + removed not yet compacted), `live`, `dead`."""
        cat = self._state.catalogue
        return {"rows": cat.n_rows, "live": cat.n_alive, "dead": cat.n_dead}

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, force: bool = False) -> Path:
        """Write the current state (items added/removed, updated users) as a new bundle, atomically."""
        from .persist import save_state

        self.wait_for_compaction()  # writers queue behind a running rebuild (it copies what they change)
        with self._writer, self._lock.read():
            return save_state(self._state, path, force=force)

    def reload(self, bundle: str | Path | None = None) -> None:
        """Load `bundle` (default: the current one again) and swap it in; requests in flight finish on
        the old state, the next ones see the new one. On error the current bundle keeps serving."""
        self.wait_for_compaction()  # writers queue behind a running rebuild (it copies what they change)
        with self._writer:
            target = self._state.root if bundle is None else bundle
            new_state = load_state(target, self._state.options)
            with self._lock.write():
                self._state = new_state

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until what `Engine.open` left building in the background (the BM25 index `search` uses) is
        built; True when it is, False if `timeout` seconds passed first. Requests never need this (a
        `search` waits by itself); hosts call it before declaring themselves ready, benchmarks before timing."""
        lexical = self._state.lexical
        wait = getattr(type(lexical), "wait", None)
        return True if wait is None else bool(wait(lexical, timeout))

    def warmup(self) -> None:
        """Wait for the background builds (`wait_ready`), load what loads on first use (the text space's HNSW
        index when `search` would use it) and run every model once, so the first real request pays no lazy
        initialisation; the one exception is a separate item encoder (`item_variant`), loaded by the first
        `add_items`/`reencode_items` so hosts that never add items never hold it. Benchmarks and `recengine
        serve` call it before serving."""
        self.wait_ready()
        with self._lock.read():
            st = self._state
            st.models.encode_queries(["warm up"])
            users = st.users.ids[:1]
            chosen = st.text_index.backend(st.catalogue.n_alive, 1)  # what a search would use
            if isinstance(chosen, DeferredIndex):
                chosen.backend()  # hnswlib loads it now rather than in the first search
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
            return st.models.user_vectors([st.users.history(r) for r in rows], st.catalogue.vectors,
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
            return pipeline.fusion_scores(st, vectors.astype(np.float32), rows,
                                          np.zeros((b, st.scene.slots), np.int64),
                                          np.zeros((b, st.profile.slots), np.int64))

        return Stages(tokenize=tokenize, encode=st.models.encode_batch, encode_query=st.models.encode_queries,
                      user_tower=user_tower,
                      retrieve=retrieve_stage, score=score)

    def __repr__(self) -> str:
        return (f"Engine({str(self._state.root)!r}, provider={self.provider}, items={self.n_items}, "
                f"users={self.n_users}, variants={self.variants})")


__all__ = ["Engine", "Recommendation", "Recommendations", "RecommendRequest", "RowQuery", "Stages", "UpdateResult"]
