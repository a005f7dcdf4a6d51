"""recengine inside the quality bench: fit on the bench's split, export a bundle, score every variant.

The models are trained with `recengine.export.fit.fit` on exactly the split the baselines see
(`Protocol.split`, early stopping on its validation events; like SASRec, the early-stopped model reads the
train+valid history at test time; in the cold protocol it is refitted on every warm interaction, as every
baseline is, with `recengine.export.fit.refit`); the fitted models are written to a real bundle
(`export_models_and_arrays`), and the `fp32`/`int8`/`fp16` variants of that bundle are scored by
`recengine.Engine` itself (`Engine.score_catalogue`: the serving pipeline with exact retrieval), as served:
stored vectors for items with training interactions, the variant's encoder for items without any (the ones a
live system adds later). `recengine_torch` is the torch fp32 model before export, kept as a reference for
what the ONNX path costs. Scores are full rows over the catalogue so
the foundation's `evaluate_full_ranking` ranks them like any baseline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recengine.data.schema import Dataset
from recengine.split import Split, leave_last_out

from .baselines.base import TrainData

RowScoreFn = Callable[[np.ndarray], np.ndarray]
VARIANTS = ("fp32", "int8", "fp16")
FRESH_SHARE, FRESH_K = 0.2, 20
"""The bench's `recengine_fp32_fresh` row: `recommend(k=20, fresh=0.2)` (4 of the 20 slots for items with
fewer than 5 interactions); its top 10 changes only where fresh items earned a place there."""


@dataclass(frozen=True)
class QuerySet:
    """Who is scored, from which history, in which scene, with which items excluded (one row per query)."""

    users: np.ndarray
    history: TrainData
    context: dict[str, np.ndarray]
    exclude_indptr: np.ndarray
    exclude_indices: np.ndarray

    def excluded(self, rows: np.ndarray) -> list[np.ndarray]:
        return [self.exclude_indices[self.exclude_indptr[r]: self.exclude_indptr[r + 1]] for r in rows]


def _encode_scene(vocab: Any, context: dict[str, np.ndarray], n: int) -> np.ndarray:
    """Scene codes [n, slots]; no context (e.g. cold queries) = all `<unk>`."""
    if not context or not vocab.columns:
        return np.zeros((n, max(1, vocab.slots)), np.int64)
    return vocab.encode(context, n)


def _rerank(base_fn: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], fuse: Callable[..., np.ndarray] | None,
            item_vecs: np.ndarray, qs: QuerySet, n_candidates: int) -> RowScoreFn:
    """Retrieval scores u·v, with the top `n_candidates` (known items skipped) re-scored by `fuse`."""
    from recengine.export.fusion import rerank_scores, top_candidates

    def score(rows: np.ndarray) -> np.ndarray:
        u, base = base_fn(rows)
        if fuse is None:
            return base
        cands = top_candidates(u, item_vecs, qs.excluded(rows), n_candidates)
        return rerank_scores(base, cands, fuse(rows, u, cands))

    return score


def torch_scorer(fitted: Any, qs: QuerySet) -> RowScoreFn:
    """Row scores of the torch fp32 model (before ONNX export)."""
    import torch

    from recengine.export.fusion import FusionInputs

    scene = _encode_scene(fitted.scene_vocab, qs.context, len(qs.users))
    u_all = fitted.user_vectors(qs.users, qs.history.indptr, qs.history.indices, scene)
    arrays = fitted.item_arrays()
    v = arrays["vectors"]
    profile = fitted.profiles[qs.users]
    inputs = FusionInputs(v, arrays["item_feats"], fitted.pop_bucket)

    def fuse(rows: np.ndarray, u: np.ndarray, cands: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            iv, f, p = inputs.gather(torch.from_numpy(cands))
            return fitted.fusion(torch.from_numpy(u), iv, f, p, torch.from_numpy(scene[rows]),
                                 torch.from_numpy(profile[rows])).numpy()

    return _rerank(lambda rows: (u_all[rows], u_all[rows] @ v.T), fuse if fitted.use_fusion else None, v, qs,
                   int(fitted.config.fusion.n_candidates))


def onnx_scorer(bundle: Path, variant: str, qs: QuerySet, threads: int = 0,
                cold_items: np.ndarray | None = None, fresh: float = 0.0, k: int = 10,
                cooccur_weight: float | None = None, item_variant: str | None = None) -> RowScoreFn:
    """Row scores of a bundle's ONNX `variant` as served, through `recengine.Engine.score_catalogue` (the
    serving pipeline with exact retrieval: the same code as `Engine.recommend`).

    As served: catalogue items keep their stored vectors; `cold_items` (rows nobody interacted with in
    training: the cold items of the cold protocol) are what a live system adds later, so a quantised
    variant re-encodes them (`Engine.reencode_items`) through its item encoder (`item_variant`; None: the
    engine's default, fp32 beside an INT8 serving encoder: `recengine.models`). `fresh`/`k`: the
    fresh-item policy (`recommend(..., fresh=)`) over the first k slots. `cooccur_weight`: override the
    bundle's co-occurrence weight (0: the user tower alone)."""
    from recengine.engine import Engine
    from recengine.evaluation import engine_row_scorer
    # a model whose `variant` failed parity at export runs fp32 (recengine.models.pick_variant)
    engine = Engine.open(bundle, device="cpu", threads=threads or None, variant=variant, retrieval="exact",
                         cooccur_weight=cooccur_weight, item_variant=item_variant)
    if variant != "fp32" and cold_items is not None and len(cold_items):
        ids = engine.item_ids()
        engine.reencode_items([ids[int(r)] for r in cold_items])
    scene = engine.encode_scenes(qs.context, len(qs.users)) if qs.context else \
        np.zeros((len(qs.users), engine.scene_slots), np.int64)
    return engine_row_scorer(engine, [qs.history.indices[qs.history.indptr[u]:qs.history.indptr[u + 1]]
                                      for u in qs.users],
                             scene, engine.user_profiles(qs.users), qs.excluded(np.arange(len(qs.users))),
                             fresh=fresh, k=k)


@dataclass
class RecengineFit:
    """One training of recengine on a split, its bundle, and how long each part took."""

    fitted: Any
    bundle: Path | None
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class RecengineRunner:
    """Trains recengine the way `recengine export` does (same config and code) on a given split."""

    dataset: Dataset
    config: Any
    """recengine.export.ExportConfig."""
    workdir: Path
    variants: tuple[str, ...] = VARIANTS
    quiet: bool = False
    adapted: dict[str, Any] = field(default_factory=dict)
    """Per fit tag ("main", "cold"): what `recengine.export.adapt` decided (`Adapted.to_manifest()`)."""
    cooccur: dict[str, Any] = field(default_factory=dict)
    """Per fit tag: the co-occurrence `Choice` its bundle serves (`recengine.export.cooccur`)."""

    def source(self) -> Any:
        from recengine.export.align import resolve_source

        if not hasattr(self, "_source"):
            self._source = resolve_source(self.config.encoder, self.workdir, self.config.seed)
        return self._source

    def fit(self, split: Split, tag: str, refit_all: bool = False) -> RecengineFit:
        """Fit on `split` (early stopping on its validation part) and, when ONNX variants are requested,
        export the models to a bundle in workdir/<tag>.

        Like the bench's other history-reading model (SASRec), the early-stopped model is kept and reads the
        train+valid history at test time. With `refit_all` (the cold-item protocol, where every baseline is
        refitted on all warm interactions) the user tower is then refitted on every event of `split` for the
        early-stopped epoch count (`recengine.export.fit.refit`)."""
        from recengine.bundle import BundleWriter
        from recengine.export.adapt import adapt_to_data
        from recengine.export.fit import fit, refit, train_valid_split
        from recengine.export.pipeline import add_cooccur, export_models_and_arrays, refit_cooccur_stage
        from recengine.progress import Progress

        seconds: dict[str, float] = {}
        progress = Progress(self.quiet)
        t = time.perf_counter()
        # the export's own defaults-from-the-data step on this split: the bench scores what `export` would ship
        config, adapted = adapt_to_data(self.config, self.dataset, split, self.source(), progress)
        self.adapted[tag] = adapted.to_manifest()
        fitted = fit(self.dataset, split, config, progress, workdir=self.workdir, text_source=self.source())
        seconds["fit"] = time.perf_counter() - t
        if refit_all:
            t = time.perf_counter()
            fitted = refit(fitted, progress, include_test=True)
            seconds["refit"] = time.perf_counter() - t
        bundle = None
        notes: list[str] = []
        if self.variants:
            t = time.perf_counter()
            out = self.workdir / f"bundle-{tag}"
            cfg = config
            with BundleWriter(out, force=True) as w:
                timings = dict(fitted.timings)
                manifest = export_models_and_arrays(w, self.dataset, fitted, cfg, timings, progress)
                manifest["metrics"]["training"] = {k: float(v) for k, v in fitted.metrics.items()}
                manifest["adapt"] = self.adapted[tag]
                # the export's co-occurrence stage; the cold fit (refitted on every warm event) reuses the
                # settings the main fit chose on clean validation, with lists over every warm event
                fixed = self.cooccur.get("main") if refit_all else None
                events = train_valid_split(split, include_test=True).train if refit_all else None
                written, choice = add_cooccur(w, w.preview(manifest), manifest, self.dataset, split, cfg,
                                              progress, timings, fixed=fixed, events=events)
                if not refit_all:  # as the export: the chosen lists rebuilt from train + valid events
                    refit_cooccur_stage(w, written, manifest, self.dataset, split, cfg, progress, timings, choice)
                if choice is not None:
                    self.cooccur[tag] = choice
                manifest["timings"] = {k: round(float(v), 3) for k, v in timings.items()}
                bundle = w.commit(manifest)
                notes = [f"recengine ({tag} fit): the {variant} {model} failed its parity check and was dropped; "
                         f"recengine_{variant} serves that model in fp32 ({reason})"
                         for model, checks in manifest["metrics"]["parity"].items() if isinstance(checks, dict)
                         for variant, reason in checks.get("dropped", {}).items()]
            seconds["export"] = time.perf_counter() - t
        return RecengineFit(fitted, bundle, seconds, notes)

    def scorers(self, fit_result: RecengineFit, qs: QuerySet, threads: int = 0) -> dict[str, Callable[[], RowScoreFn]]:
        """Factories (built lazily: each re-encodes the catalogue) of `recengine_torch` and of
        `recengine_<variant>` for every exported variant, plus `recengine_fp32_fresh`, `recengine_fp32_tower`
        and `recengine_int8_int8items` (items without training interactions encoded by the INT8 encoder,
        `Engine.open(item_variant="int8")`, where the default encodes them in fp32)."""
        out: dict[str, Callable[[], RowScoreFn]] = {"recengine_torch": lambda: torch_scorer(fit_result.fitted, qs)}
        if fit_result.bundle is not None:
            bundle = fit_result.bundle
            for variant in self.variants:
                cold = np.flatnonzero(np.asarray(fit_result.fitted.popularity) <= 0)
                out[f"recengine_{variant}"] = (lambda v=variant, c=cold: onnx_scorer(bundle, v, qs, threads, c))
                if variant == "int8":  # items added live through the INT8 encoder (the opt-in); in every fit,
                    # so the cold protocol's figures have a row to go to
                    out["recengine_int8_int8items"] = (lambda c=cold: onnx_scorer(bundle, "int8", qs, threads, c,
                                                                                 item_variant="int8"))
                if variant == "fp32":  # the fresh-item policy as a host would switch it on: 4 of 20 slots
                    out["recengine_fp32_fresh"] = (lambda c=cold: onnx_scorer(bundle, "fp32", qs, threads, c,
                                                                             fresh=FRESH_SHARE, k=FRESH_K))
                    if (bundle / "items" / "cooccur_indices.npy").exists():  # what the co-occurrence blend adds
                        out["recengine_fp32_tower"] = (lambda c=cold: onnx_scorer(bundle, "fp32", qs, threads, c,
                                                                                 cooccur_weight=0.0))
        return out


def warm_split(cold_warm: Any, n_users: int, n_items: int, seed: int) -> Split:
    """The leave-last-out split of the warm interactions (recengine early-stops on its validation part)."""
    return leave_last_out(cold_warm, n_users, n_items, seed=seed)
