"""Everything the engine serves from, loaded from one bundle: models, catalogue, users, indexes, vocab.

`reload` builds a complete new `EngineState` next to the running one and swaps a single reference, so
requests never see half of two bundles.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .bundle import BundleReader, open_bundle
from .bundle.format import MEDIA_FILES, IndexSpec, wants_augment
from .catalogue import Catalogue
from .errors import BundleError
from .index_io import open_index
from .lexical import LexicalIndex
from .models import ModelSet
from .retrieval import Backend, ExactBackend, HnswBackend, OnnxExactBackend, choose_backend
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


@dataclass
class SpaceIndex:
    """One retrieval space (item vectors or text embeddings): exact backend + optional HNSW (+ ONNX)."""

    name: str
    exact: ExactBackend
    hnsw: HnswBackend | None
    onnx: OnnxExactBackend | None
    spec: IndexSpec | None
    requested: str
    device: str

    def backend(self, n_live: int, batch: int) -> Backend:
        choice = choose_backend(self.requested, self.device, n_live, batch, has_hnsw=self.hnsw is not None,
                                onnx_ok=self.onnx is not None)
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
    """BM25 over the live item texts (`search` fuses it with the text space); built at load, kept current by
    live adds/removes, rebuilt by compaction. None: `search` is dense only."""


def _space(reader: BundleReader, name: str, matrix: np.ndarray, alive: np.ndarray, options: ServeOptions,
           device: str) -> SpaceIndex:
    node = reader.manifest.get("index", {}).get(name)
    exact = ExactBackend(matrix, alive)
    hnsw = None
    spec = IndexSpec.from_manifest(name, node, matrix.shape[1]) if node is not None else None
    if spec is not None and options.retrieval in ("auto", "hnsw"):
        hnsw = open_index(str(reader.path(spec.path)), spec, options.ef, int(alive.sum()))
        count = int(hnsw.index.get_current_count())
        if count != matrix.shape[0]:
            raise BundleError(f"{reader.root}: index.{name} holds {count} items, the catalogue {matrix.shape[0]}")
        if hnsw.max_norm is None and name == "item" and wants_augment(matrix):
            log.warning("index.%s: a plain inner-product graph over vectors of varying norm loses recall; "
                        "re-export the bundle (exports since 0.1 store it MIPS-augmented)", name)
    onnx = None
    if options.retrieval == "onnx" or (options.retrieval == "auto" and device == "cuda"):
        try:
            onnx = OnnxExactBackend(matrix, alive, device=device, threads=options.threads)
        except Exception as exc:  # onnx not installed or graph refused: exact numpy remains
            if options.retrieval == "onnx":
                raise
            log.info("ONNX exact search unavailable (%s); using numpy", exc)
    return SpaceIndex(name, exact, hnsw, onnx, spec, options.retrieval, device)


def load_state(bundle: str | Path, options: ServeOptions) -> EngineState:
    """Open, verify and load a bundle for serving."""
    reader = open_bundle(bundle, verify=options.verify)
    device = resolve_device(options.device)
    config = SessionConfig(device=options.device, threads=options.threads, gpu_mem_limit=options.gpu_mem_limit,
                           cuda_graphs=options.cuda_graphs)
    models = ModelSet.load(reader, device, config, options.variant)
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
    items_index = _space(reader, "item", catalogue.vectors, catalogue.alive, options, device)
    text_index = _space(reader, "text", catalogue.text_embeddings, catalogue.alive, options, device)
    return EngineState(
        root=reader.root, manifest=reader.manifest, models=models, catalogue=catalogue, users=users,
        scene=scene, profile=profile, items_index=items_index, text_index=text_index, use_fusion=use_fusion,
        text_columns=text_columns, cold_item_feats=cold_feats, options=options,
        default_candidates=max(1, int(fusion_spec.get("n_candidates", 200) or 200)),
        pop_bucket_edges=(np.asarray(vocab["pop_bucket_edges"], dtype=np.float64)
                          if isinstance(vocab.get("pop_bucket_edges"), list) else None),
        media=media, lexical=LexicalIndex.build(catalogue.texts, catalogue.alive),
    )
