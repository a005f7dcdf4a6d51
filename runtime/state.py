"""Everything the engine serves from, loaded from one bundle: models, catalogue, users, indexes, vocab.

`reload` builds a complete new `EngineState` next to the running one and swaps a single reference, so
requests never see half of two bundles.
"""

from __future__ import annotations

import ctypes
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from .bundle import BundleReader, open_bundle
from .bundle.format import MEDIA_FILES, IndexSpec, wants_augment
from .catalogue import Catalogue
from .cooccur import Cooccur, load_cooccur
from .errors import BundleError
from .hnsw_file import check_hnsw_file, read_header
from .index_io import DeferredIndex, open_deferred, open_index
from .lexical import LexicalIndex
from .models import ModelSet
from .overlap import Helper
from .retrieval import TEXT_SCAN_DIM, Backend, ExactBackend, HnswBackend, OnnxExactBackend, choose_backend
from .scan import Scanner
from .sessions import SessionConfig, resolve_device
from .users import Users
from .vocab import SlotVocab

log = logging.getLogger(__name__)

COLD_FEATURES = {"text_graph_agreement": 0.0, "no_graph": 1.0, "graph_gate": 0.0}
"""Fusion item features of an item with no graph vector (docs/bundle.md `models.fusion.item_feature_names`)."""


@dataclass(frozen=True)
class ServeOptions:
    """Engine-wide settings chosen at `Engine.open` (kept across `reload`)."""

    device: str = "auto"
    threads: int | None = None
    variant: str | dict[str, str] | None = None
    item_variant: str | None = None
    """Encoder variant for items to be stored (add/re-encode); None: `models.item_encoder_variant`'s rule."""
    retrieval: str = "auto"
    ef: int | None = None
    rescore: bool | None = None
    verify: bool = True
    gpu_mem_limit: int = 2 * 1024**3
    cuda_graphs: bool = True
    compaction_threshold: float = 0.2
    fresh_below: int = 5
    """An item with fewer interactions than this (every item added live starts at 0) is "fresh": what a
    request's `fresh` share of the k slots is reserved for."""
    cooccur_weight: float | None = None
    """Weight of the co-occurrence signal in `recommend` (`recengine.cooccur`); None: the bundle's (chosen on
    validation by the export), 0: the user tower alone."""
    overlap: bool = True
    """Let `search` run its lexical half on a helper thread while the encoder runs (`recengine.overlap`;
    only where the ONNX `threads` leave a CPU idle)."""


@dataclass
class SpaceIndex:
    """One retrieval space (item vectors or text embeddings): exact backend + optional HNSW (+ ONNX)."""

    name: str
    exact: ExactBackend
    hnsw: HnswBackend | DeferredIndex | None
    onnx: OnnxExactBackend | None
    spec: IndexSpec | None
    requested: str
    device: str

    def within_scan_budget(self, n_live: int) -> bool:
        """Whether one query over `n_live` rows is within the exact scan's budget (what `auto` scans on the
        CPU, whatever backend this engine was asked for): the one rule for where `recommend` ranks its
        co-occurrence blend over the whole catalogue (`pipeline._blended`), so that serving and
        `score_catalogue` take the same path on every backend and device."""
        auto = choose_backend("auto", "cpu", n_live, 1, has_hnsw=True, onnx_ok=False, dim=self._budget_dim)
        return auto == "exact"

    @property
    def _budget_dim(self) -> int:
        """The width the scan budget is counted at: the text space's in items, at the item space's width
        (`TEXT_SCAN_DIM`)."""
        return TEXT_SCAN_DIM if self.name == "text" else self.exact.dim

    def backend(self, n_live: int, batch: int) -> Backend:
        choice = choose_backend(self.requested, self.device, n_live, batch, has_hnsw=self.hnsw is not None,
                                onnx_ok=self.onnx is not None, dim=self._budget_dim)
        if choice == "hnsw" and self.hnsw is not None:
            return self.hnsw
        if choice == "onnx" and self.onnx is not None:
            return self.onnx
        return self.exact

    def refresh(self, matrix: np.ndarray, alive: np.ndarray, added: np.ndarray | None,
                removed: np.ndarray | None) -> None:
        self.exact.refresh(matrix, alive, added, removed)
        if self.hnsw is not None:
            self.hnsw.refresh(matrix, alive, added, removed)
        if self.onnx is not None:
            self.onnx.refresh(matrix, alive, added, removed)


@dataclass(frozen=True)
class MediaProjection:
    """The bundle's optional media projection (docs/bundle.md `items.media_projection`): an item added with a
    media `vector` m gets `projection @ ((m - mean) / scale)` on top of the encoder's `item_vector`."""

    projection: np.ndarray
    """float32 [dims.item, d_media]"""
    mean: np.ndarray
    """float32 [d_media]"""
    scale: np.ndarray
    """float32 [d_media], > 0"""

    @property
    def dim(self) -> int:
        return int(self.projection.shape[1])


def load_media(reader: BundleReader, item_dim: int) -> MediaProjection | None:
    """The media projection named in the manifest's `items` section (all three arrays, or none of them)."""
    spec = reader.manifest.get("items", {})
    named = [key for key in MEDIA_FILES if spec.get(key) is not None]
    if not named:
        return None
    missing = [key for key in MEDIA_FILES if key not in named]
    if missing:
        raise BundleError(f"{reader.root}: manifest items names {', '.join(named)} but not {', '.join(missing)} "
                          f"(the media projection needs all three)")
    rels = {}
    for key in MEDIA_FILES:
        if not isinstance(spec[key], str):
            raise BundleError(f"{reader.root}: manifest items.{key} must be a path string")
        rels[key] = spec[key]
    proj = reader.load_npy(rels["media_projection"]).astype(np.float32, copy=False)
    mean = reader.load_npy(rels["media_mean"]).astype(np.float32, copy=False)
    scale = reader.load_npy(rels["media_scale"]).astype(np.float32, copy=False)
    if proj.ndim != 2 or proj.shape[0] != item_dim or proj.shape[1] == 0:
        raise BundleError(f"{reader.root}: {rels['media_projection']} has shape {proj.shape}, expected "
                          f"[dims.item={item_dim}, d_media]")
    for key, arr in (("media_mean", mean), ("media_scale", scale)):
        if arr.shape != (proj.shape[1],):
            raise BundleError(f"{reader.root}: {rels[key]} has shape {arr.shape}, expected [{proj.shape[1]}] "
                              f"(the width of {rels['media_projection']})")
    if not (scale > 0).all():
        raise BundleError(f"{reader.root}: {rels['media_scale']} holds values <= 0")
    return MediaProjection(proj, mean, scale)


@dataclass
class EngineState:
    root: Path
    manifest: dict[str, Any]
    models: ModelSet
    catalogue: Catalogue
    users: Users
    scene: SlotVocab
    profile: SlotVocab
    items_index: SpaceIndex
    text_index: SpaceIndex
    use_fusion: bool
    text_columns: tuple[str, ...]
    cold_item_feats: np.ndarray
    options: ServeOptions
    pop_bucket_edges: np.ndarray | None = None
    """vocab.pop_bucket_edges of the bundle (None when absent): live popularity updates re-bucket with it."""
    default_candidates: int = 200
    extra: dict[str, Any] = field(default_factory=dict)
    media: MediaProjection | None = None
    """The bundle's media projection (None: the bundle has none; add_items then refuses a `vector`)."""
    lexical: LexicalIndex | None = None
    """BM25 over the live item texts (`search` fuses it with the text space); built at load on a background
    thread (a `Background` stands in for it until then: the first touch waits), kept current by live
    adds/removes, rebuilt by compaction. None: `search` is dense only."""
    cooccur: Cooccur | None = None
    """The bundle's item co-occurrence lists and blend settings (None: the bundle has none; `recommend`
    ranks by the user tower alone)."""
    helper: Helper | None = None
    """The thread `search` overlaps its lexical half with the encoder on (`recengine.overlap`; None: none)."""


def _space(reader: BundleReader, name: str, matrix: np.ndarray, alive: np.ndarray, options: ServeOptions,
           device: str, scanner: Scanner) -> SpaceIndex:
    """One retrieval space. Its HNSW index file is checked whole here (or was, while the rows it holds were
    read: `BundleReader.index_rows`), so a malformed index is refused at open. hnswlib loads the item space's
    index here when a single query would use it (`choose_backend` at batch 1: a catalogue past `EXACT_BUDGET`
    items, or `retrieval="hnsw"`), else on first use (`DeferredIndex`: a MovieLens-sized catalogue is searched
    exactly and never pays the index's memory). The text space's index always loads on first use (a
    `search`, a live update, `Engine.warmup`): `recommend` never reads it, and at 1M items its load was
    ~0.7-0.9 s of a 5.0 s `Engine.open`."""
    node = reader.manifest.get("index", {}).get(name)
    exact = ExactBackend(matrix, alive, scanner)
    onnx = None
    if options.retrieval == "onnx" or (options.retrieval == "auto" and device == "cuda"):
        try:
            onnx = OnnxExactBackend(matrix, alive, device=device, threads=options.threads)
        except Exception as exc:  # onnx not installed or graph refused: exact numpy remains
            if options.retrieval == "onnx":
                raise
            log.info("ONNX exact search unavailable (%s); using numpy", exc)
    hnsw: HnswBackend | DeferredIndex | None = None
    spec = IndexSpec.from_manifest(name, node, matrix.shape[1]) if node is not None else None
    if spec is not None and options.retrieval in ("auto", "hnsw"):
        path = reader.path(spec.path)
        checked = spec.path in reader.checked_indexes
        count = read_header(path).count if checked else check_hnsw_file(path, spec.dim, spec.count, spec.M).count
        if count != matrix.shape[0]:
            raise BundleError(f"{reader.root}: index.{name} holds {count} items, the catalogue {matrix.shape[0]}")
        n_live = int(alive.sum())
        if name != "text" and choose_backend(options.retrieval, device, n_live, 1, onnx_ok=onnx is not None,
                                             dim=matrix.shape[1]) == "hnsw":
            hnsw = open_index(str(path), spec, options.ef, n_live, checked=True)
        else:
            hnsw = open_deferred(str(path), spec, options.ef, n_live)
        if hnsw.max_norm is None and name == "item" and wants_augment(matrix):
            log.warning("index.%s: a plain inner-product graph over vectors of varying norm loses recall; "
                        "re-export the bundle (exports since 0.1 store it MIPS-augmented)", name)
    return SpaceIndex(name, exact, hnsw, onnx, spec, options.retrieval, device)


def load_state(bundle: str | Path, options: ServeOptions) -> EngineState:
    """Open, verify and load a bundle for serving.

    The checksums are computed on background threads while the bundle loads (`BundleReader.start_verify`)
    and checked before the state is returned; a checksum mismatch is reported in preference to whatever
    error the damaged content caused. The BM25 index is built on a background thread once everything else
    is loaded (`Background`): `search` waits for it, nothing else does."""
    reader = open_bundle(bundle, verify=options.verify, background_verify=True)
    try:
        state = _load(reader, options)
    except BundleError:
        reader.finish_verify()  # a damaged file explains the error better than its symptom
        raise
    reader.finish_verify()
    release_free_memory()
    state.lexical = _lexical(state.catalogue)  # last: its thread would slow the loading above (the GIL)
    return state


def release_free_memory() -> None:
    """Hand the heap memory freed while loading back to the OS (glibc `malloc_trim`; nothing elsewhere).

    Why: loading frees as much as it keeps (JSON text, index file chunks, the BM25 build's token lists),
    and glibc keeps freed heap pages mapped: measured on the MiniLM MovieLens bundle, 7-9 MiB after
    `Engine.open` and 9 MiB after the BM25 build stayed in the serving process's RSS without it."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (e.g. musl has no malloc_trim)
        pass


class Background:
    """A value built on a background thread; reading any attribute waits for it (and re-raises the error
    the build raised). Stands in for the value itself (`EngineState.lexical`), so readers and writers need
    not know it is late: a writer's first touch waits for the build, then updates the finished value."""

    def __init__(self, build: Callable[[], Any], name: str) -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(build,), name=name, daemon=True)
        self._thread.start()

    def _run(self, build: Callable[[], Any]) -> None:
        try:
            self._value = build()
        except BaseException as exc:  # noqa: BLE001 - re-raised in every caller that needs the value
            self._error = exc

    def wait(self, timeout: float | None = None) -> bool:
        """Block until built (True), or until `timeout` seconds have passed (False)."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def get(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.get(), name)


def _lexical(catalogue: Catalogue) -> LexicalIndex:
    """The BM25 index over the catalogue as it is now, built on a background thread: over a snapshot of the
    text list and the alive flags (live updates append to both; they wait for the build before they change
    the index, so the rows they add must not be in the snapshot)."""
    texts, alive = list(catalogue.texts), catalogue.alive.copy()

    def build() -> LexicalIndex:
        index = LexicalIndex.build(texts, alive)
        release_free_memory()
        return index

    return cast(LexicalIndex, Background(build, "recengine-bm25"))


def _load(reader: BundleReader, options: ServeOptions) -> EngineState:
    device = resolve_device(options.device)
    config = SessionConfig(device=options.device, threads=options.threads, gpu_mem_limit=options.gpu_mem_limit,
                           cuda_graphs=options.cuda_graphs)
    models = ModelSet.load(reader, device, config, options.variant, options.item_variant)
    device = models.device  # the provider actually active (auto may have fallen back)
    catalogue = Catalogue.from_bundle(reader)
    users = Users.from_bundle(reader)
    dims = reader.section("dims")
    if catalogue.vectors.shape[1] != int(dims["item"]):
        raise BundleError(f"{reader.root}: items/vectors.npy width {catalogue.vectors.shape[1]} != "
                          f"dims.item {dims['item']}")
    if users.vectors.shape[1] != int(dims["item"]):
        raise BundleError(f"{reader.root}: users/vectors.npy width != dims.item {dims['item']}")
    hist_items = users.csr()[1]
    if hist_items.size and (hist_items.min() < 0 or hist_items.max() >= catalogue.n_rows):
        raise BundleError(f"{reader.root}: users/history_items.npy refers to item rows outside the catalogue")
    vocab = reader.manifest.get("vocab", {})
    scene = SlotVocab.from_manifest("scene", "ctx_", vocab.get("scene"), int(dims.get("scene_slots", 1)))
    profile = SlotVocab.from_manifest("profile", "attr_", vocab.get("profile"), int(dims.get("profile_slots", 1)))
    fusion_spec = reader.section("models", "fusion")
    use_fusion = bool(fusion_spec.get("use_by_default", True)) if options.rescore is None else bool(options.rescore)
    cold = reader.manifest.get("items", {}).get("cold_item_feats")
    feats = catalogue.item_feats
    names = fusion_spec.get("item_feature_names")
    if cold is not None:
        cold_feats = np.asarray(cold, dtype=np.float32).reshape(feats.shape[1])
    elif isinstance(names, list) and len(names) == feats.shape[1] and set(names) <= set(COLD_FEATURES):
        cold_feats = np.asarray([COLD_FEATURES[n] for n in names], dtype=np.float32)
    elif np.any(catalogue.popularity == 0):
        # Items nobody interacted with are exactly what a newly added item looks like to the fusion head.
        cold_feats = feats[catalogue.popularity == 0].mean(axis=0).astype(np.float32)
    else:
        cold_feats = np.zeros(feats.shape[1], dtype=np.float32)
    text_columns = tuple(reader.manifest.get("data", {}).get("text_columns", ()) or ())
    media = load_media(reader, int(dims["item"]))
    scanner = Scanner.create()  # one per engine: both spaces' exact scans (`recengine.scan`)
    items_index = _space(reader, "item", catalogue.vectors, catalogue.alive, options, device, scanner)
    text_index = _space(reader, "text", catalogue.text_embeddings, catalogue.alive, options, device, scanner)
    return EngineState(
        root=reader.root, manifest=reader.manifest, models=models, catalogue=catalogue, users=users,
        scene=scene, profile=profile, items_index=items_index, text_index=text_index, use_fusion=use_fusion,
        text_columns=text_columns, cold_item_feats=cold_feats, options=options,
        default_candidates=max(1, int(fusion_spec.get("n_candidates", 200) or 200)),
        pop_bucket_edges=(np.asarray(vocab["pop_bucket_edges"], dtype=np.float64)
                          if isinstance(vocab.get("pop_bucket_edges"), list) else None),
        media=media, cooccur=load_cooccur(reader, catalogue.n_rows, options.cooccur_weight),
        helper=Helper.create(options.threads, options.overlap),
    )
