"""Everything the engine serves from, loaded from one bundle: models, catalogue, users, indexes, vocab.

`reload` builds a complete new `EngineState` next to the running one and swaps a single reference, so
requests never see half of two bundles.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .bundle import BundleReader, open_bundle
from .catalogue import Catalogue
from .errors import BundleError
from .models import ModelSet
from .retrieval import Backend, ExactBackend, HnswBackend, OnnxExactBackend, choose_backend
from .sessions import SessionConfig, resolve_device
from .users import Users
from .vocab import SlotVocab

log = logging.getLogger(__name__)

AUGMENT_MAX_ITEMS = 100_000

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
    augment_index: bool | None = None
    """Plain inner-product HNSW graphs over vectors of varying norm lose recall badly (measured on a
    MovieLens-small bundle: recall@10 0.48-0.71 vs 0.98-1.0 augmented, see `HnswBackend`). None: rebuild
    such an item index MIPS-augmented on its first use when the catalogue has at most
    `AUGMENT_MAX_ITEMS` items (~0.1 ms per item at M=16); True: always; False: never."""


@dataclass
class SpaceIndex:
    """One retrieval space (item vectors or text embeddings): exact backend + optional HNSW (+ ONNX)."""

    name: str
    exact: ExactBackend
    hnsw: HnswBackend | None
    onnx: OnnxExactBackend | None
    params: dict[str, Any]
    requested: str
    device: str
    augment: bool = False
    """Rebuild a plain inner-product HNSW index MIPS-augmented on first use (see `ServeOptions`)."""
    _augment_lock: threading.Lock = field(default_factory=threading.Lock)

    def backend(self, n_live: int, batch: int) -> Backend:
        choice = choose_backend(self.requested, self.device, n_live, batch, has_hnsw=self.hnsw is not None,
                                onnx_ok=self.onnx is not None)
        if choice == "hnsw" and self.hnsw is not None:
            if self.augment and self.hnsw.max_norm is None:
                self._augment_now()
            return self.hnsw
        if choice == "onnx" and self.onnx is not None:
            return self.onnx
        return self.exact

    def _augment_now(self) -> None:
        """Build the augmented index beside the plain one and swap the reference (readers that still
        hold the old index finish on it). Runs under the engine's read lock, so no writer interleaves."""
        with self._augment_lock:
            if self.hnsw is None or self.hnsw.max_norm is not None:
                return
            matrix, alive = self.exact._matrix, self.exact._alive
            started = time.perf_counter()
            built = HnswBackend.build(matrix, np.flatnonzero(alive), M=int(self.params.get("M", 16)),
                                      ef_construction=int(self.params.get("ef_construction", 200)),
                                      ef=self.hnsw.ef, augment=True)
            self.hnsw = built
            log.info("index.%s: rebuilt MIPS-augmented (%d items, %.2f s)", self.name, alive.sum(),
                     time.perf_counter() - started)

    def refresh(self, matrix: np.ndarray, alive: np.ndarray, added: np.ndarray | None, removed: np.ndarray | None) -> None:
        self.exact.refresh(matrix, alive, added, removed)
        if self.hnsw is not None:
            self.hnsw.refresh(matrix, alive, added, removed)
        if self.onnx is not None:
            self.onnx.refresh(matrix, alive, added, removed)


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


def _space(reader: BundleReader, name: str, matrix: np.ndarray, alive: np.ndarray, options: ServeOptions,
           device: str) -> SpaceIndex:
    spec = reader.manifest.get("index", {}).get(name)
    exact = ExactBackend(matrix, alive)
    hnsw = None
    params: dict[str, Any] = {}
    if isinstance(spec, dict) and spec.get("path"):
        params = dict(spec)
        max_norm = None
        width = matrix.shape[1]
        if spec.get("transform") is not None:
            if spec.get("transform") != "mips_augment" or not isinstance(spec.get("max_norm"), (int, float)):
                raise BundleError(f"{reader.root}: index.{name}: unknown transform {spec.get('transform')!r} "
                                  "(this runtime knows 'mips_augment' with a numeric max_norm)")
            max_norm = float(spec["max_norm"])
            width += 1
        if int(spec.get("dim", width)) != width:
            raise BundleError(f"{reader.root}: index.{name}.dim {spec.get('dim')} does not fit vectors of width "
                              f"{matrix.shape[1]}" + (" (+1 for mips_augment)" if max_norm is not None else ""))
        if options.retrieval in ("auto", "hnsw"):
            ef = int(options.ef or spec.get("ef_search", 100))
            hnsw = HnswBackend.load(str(reader.path(spec["path"])), width, ef, int(alive.sum()), max_norm=max_norm)
            count = int(hnsw.index.get_current_count())
            if count != matrix.shape[0]:
                raise BundleError(f"{reader.root}: index.{name} holds {count} items, the catalogue {matrix.shape[0]}")
    onnx = None
    if options.retrieval == "onnx" or (options.retrieval == "auto" and device == "cuda"):
        try:
            onnx = OnnxExactBackend(matrix, alive, device=device, threads=options.threads)
        except Exception as exc:  # onnx not installed or graph refused: exact numpy remains
            if options.retrieval == "onnx":
                raise
            log.info("ONNX exact search unavailable (%s); using numpy", exc)
    augment = False
    if hnsw is not None and hnsw.max_norm is None and options.augment_index is not False:
        norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))
        varied = norms.size > 0 and float(norms.max()) > 1.01 * float(norms.min())
        augment = bool(options.augment_index) or (varied and matrix.shape[0] <= AUGMENT_MAX_ITEMS)
    return SpaceIndex(name, exact, hnsw, onnx, params, options.retrieval, device, augment=augment)


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
    if catalogue.array("vectors").shape[1] != int(dims["item"]):
        raise BundleError(f"{reader.root}: items/vectors.npy width {catalogue.array('vectors').shape[1]} != dims.item {dims['item']}")
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
    feats = catalogue.array("item_feats")
    names = fusion_spec.get("item_feature_names")
    if cold is not None:
        cold_feats = np.asarray(cold, dtype=np.float32).reshape(feats.shape[1])
    elif isinstance(names, list) and len(names) == feats.shape[1] and set(names) <= set(COLD_FEATURES):
        cold_feats = np.asarray([COLD_FEATURES[n] for n in names], dtype=np.float32)
    elif np.any(catalogue.array("popularity") == 0):
        # Items nobody interacted with are exactly what a newly added item looks like to the fusion head.
        cold_feats = feats[catalogue.array("popularity") == 0].mean(axis=0).astype(np.float32)
    else:
        cold_feats = np.zeros(feats.shape[1], dtype=np.float32)
    text_columns = tuple(reader.manifest.get("data", {}).get("text_columns", ()) or ())
    items_index = _space(reader, "item", catalogue.array("vectors"), catalogue.alive, options, device)
    text_index = _space(reader, "text", catalogue.array("text_embeddings"), catalogue.alive, options, device)
    return EngineState(
        root=reader.root, manifest=reader.manifest, models=models, catalogue=catalogue, users=users,
        scene=scene, profile=profile, items_index=items_index, text_index=text_index, use_fusion=use_fusion,
        text_columns=text_columns, cold_item_feats=cold_feats, options=options,
        default_candidates=max(1, int(fusion_spec.get("n_candidates", 200) or 200)),
        pop_bucket_edges=(np.asarray(vocab["pop_bucket_edges"], dtype=np.float64)
                          if isinstance(vocab.get("pop_bucket_edges"), list) else None),
    )
