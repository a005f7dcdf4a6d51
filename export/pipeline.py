"""`run_export`: data set -> trained models -> ONNX (fp32/int8/fp16) -> verified bundle, atomically.

Stages (each timed into `manifest.timings`): load, split, graph, text_align, user_tower, fusion, ablations,
onnx_<model>, arrays, index, cooccur (item co-occurrence lists, blend chosen on validation), eval_<variant>.
The whole export runs inside a `BundleWriter`, so any failure
(bad data, a broken encoder, a parity failure, Ctrl-C) leaves nothing at the output path.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from recengine.bundle import BundleWriter
from recengine.data import load_dataset
from recengine.data.schema import WEIGHT_NOTE, data_warnings
from recengine.errors import ExportError, ParityError
from recengine.progress import Progress
from recengine.split import leave_last_out

from .config import ExportConfig


def _metric_subset(metrics: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if k != "n_queries"}


class StageTimings(dict):
    """`manifest.timings` as it fills, telling `observer(name, seconds)` the moment each stage's time is recorded
    (the stages timed inside `fit` all arrive when it returns). The export cost bench uses it to attribute
    memory samples to stages; the manifest gets a plain copy."""

    def __init__(self, observer: Callable[[str, float], None] | None = None) -> None:
        super().__init__()
        self._observer = observer

    def __setitem__(self, name: str, seconds: float) -> None:
        super().__setitem__(name, seconds)
        if self._observer is not None:
            self._observer(name, float(seconds))

    def update(self, other: Any = (), **kwargs: float) -> None:  # type: ignore[override]
        for name, seconds in dict(other, **kwargs).items():
            self[name] = seconds


def run_export(data: str | Path | None, out: str | Path, config: ExportConfig | None = None,
               force: bool = False, on_stage: Callable[[str, float], None] | None = None) -> Path:
    """Train on `data` (None = embedded MovieLens) and write the bundle to `out`; returns its path.

    `on_stage(name, seconds)` is called as each stage's time is recorded (see `StageTimings`).

    Raises `ExportError` (bad encoder, too little data), `ParityError` (an ONNX variant disagrees),
    `DataError` (bad data) or `BundleError` (`out` exists without `force`); nothing is left at `out` then.
    """
    import torch

    from .adapt import adapt_to_data
    from .align import resolve_source
    from .fit import fit, graph_only_metrics

    cfg = config or ExportConfig.from_profile("standard")
    cfg.validate()
    progress = Progress(cfg.quiet)
    timings = StageTimings(on_stage)
    t_start = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)

    from .fit import resolve_training_device

    resolve_training_device(cfg.device)  # --device cuda without a GPU fails before any work
    # scratch beside the bundle, owner-tagged: a killed export's files are removed by the next write of `out`
    with BundleWriter(out, force=force) as w, w.scratch() as tmp:
        t = time.perf_counter()
        dataset = load_dataset(data)
        timings["load"] = time.perf_counter() - t
        for warning in data_warnings(dataset):  # also kept in the manifest (`data.warnings`)
            if warning == WEIGHT_NOTE:  # not a problem with the data: what training does with it
                progress.message(f"note: {warning}")
            else:
                progress.warn(warning)
        # a broken encoder directory fails here, before any training
        source = resolve_source(cfg.encoder, Path(tmp), cfg.seed)
        t = time.perf_counter()
        split = leave_last_out(dataset.interactions, dataset.n_users, dataset.n_items, seed=cfg.seed)
        timings["split"] = time.perf_counter() - t
        progress.message(f"export: {dataset.name}: {dataset.n_items} items, {dataset.n_users} users, "
                         f"{len(dataset.interactions)} interactions; profile {cfg.profile}, encoder {source.name}")
        if cfg.encoder.tiny and cfg.encoder.path is None:
            progress.message("note: the quick profile's encoder is a tiny random BERT, for smoke tests: text "
                             "similarity, search and explanations carry no meaning; the standard profile (the "
                             "default) trains the real MiniLM")
        cfg, adapted = adapt_to_data(cfg, dataset, split, source, progress)  # defaults from the data's shape

        fitted = fit(dataset, split, cfg, progress, workdir=Path(tmp), text_source=source)
        timings.update(fitted.timings)

        # ---------------------------------------------------------------- ablations (torch, validation)
        t = time.perf_counter()
        ablations: dict[str, dict[str, float]] = {
            "full": _metric_subset(fitted.evaluate("valid")),
            "no_fusion": _metric_subset(fitted.evaluate("valid", use_fusion=False)),
        }
        if "graph_only" in cfg.ablations:
            ablations["graph_only"] = _metric_subset(graph_only_metrics(fitted.graph, split, "valid"))
        for name, kwargs in (("frozen_text", {"finetune": "none"}), ("text_only", {"use_graph": False,
                                                                                   "text": fitted.text})):
            if name in cfg.ablations:
                progress.message(f"ablation {name}")
                other = fit(dataset, split, dataclasses.replace(cfg, quiet=True), Progress(True), workdir=Path(tmp),
                            graph=fitted.graph, text_source=source, train_fusion_head=False, **kwargs)
                ablations[name] = _metric_subset(other.evaluate("valid", use_fusion=False))
        timings["ablations"] = time.perf_counter() - t

        manifest = export_models_and_arrays(w, dataset, fitted, cfg, timings, progress)
        manifest["metrics"]["ablations"] = ablations
        manifest["adapt"] = adapted.to_manifest()
        manifest["metrics"]["training"] = {k: float(v) for k, v in fitted.metrics.items()}
        manifest["metrics"]["test"] = {"torch": _metric_subset(fitted.evaluate("test"))}

        # ---------------------------------------------------------------- ONNX pipelines on validation
        from .validation import evaluate_bundle

        written = w.preview(manifest)  # sealed in place: measured through the real reader and engine
        written, choice = add_cooccur(w, written, manifest, dataset, split, cfg, progress, timings)
        validation: dict[str, dict[str, float]] = {}
        reencoded: dict[str, dict[str, float]] = {}
        for variant in cfg.variants:
            t = time.perf_counter()
            progress.message(f"evaluating the {variant} ONNX pipeline on validation")
            validation[variant] = _metric_subset(evaluate_bundle(written, dataset, split, variant, "valid"))
            if variant in cfg.parity.reencode_variants and variant != "fp32":
                progress.message(f"re-encoding the catalogue with the {variant} encoder")
                # the only heavy evaluation (the encoder over the whole catalogue): every configured thread
                reencoded[variant] = _metric_subset(evaluate_bundle(written, dataset, split, variant, "valid",
                                                                    reencode=True, threads=cfg.threads))
            timings[f"eval_{variant}"] = time.perf_counter() - t
        manifest["metrics"]["validation"] = validation
        manifest["metrics"]["validation_reencoded"] = reencoded
        # validation measured the lists the choice saw; the bundle serves them rebuilt with the validation events
        written = refit_cooccur_stage(w, written, manifest, dataset, split, cfg, progress, timings, choice)
        manifest["metrics"]["test"]["fp32"] = _metric_subset(evaluate_bundle(written, dataset, split, "fp32", "test"))
        failed = check_pipeline_parity(validation, cfg, manifest["metrics"]["parity"], reencoded)
        for variant, reason in failed.items():
            progress.message(f"warning: dropping the {variant} models: {reason}")
            drop_variant(Path(written), manifest, variant)
        drop_untargeted_variants(Path(written), manifest, cfg)  # measured above; the bundle keeps the target's

        timings["total"] = time.perf_counter() - t_start
        manifest["timings"] = {k: round(float(v), 3) for k, v in timings.items()}
        path = w.commit(manifest)
    progress.message(f"bundle written to {path}")
    return path


def add_cooccur(w: BundleWriter, written: Path, manifest: dict[str, Any], dataset: Any, split: Any,
                cfg: ExportConfig, progress: Progress, timings: dict[str, float], fixed: Any = None,
                events: Any = None) -> tuple[Path, Any]:
    """The co-occurrence stage (`recengine.export.cooccur.fit_cooccur`) on the bundle `w` has sealed at
    `written`: records `metrics.cooccur`, adds the `cooccur` section when the lists are kept and seals again.
    Returns (the sealed bundle, the `Choice`; None when `cooccur.enabled` is off). Shared by `run_export`
    and the quality bench's recengine fits, so both serve what the other measures."""
    if not cfg.cooccur.enabled:
        return written, None
    from .cooccur import fit_cooccur

    t = time.perf_counter()
    progress.message("co-occurrence lists; choosing their blend on validation" if fixed is None
                     else "co-occurrence lists (settings given)")
    section, choice = fit_cooccur(w, written, dataset, split, cfg, fixed=fixed, events=events)
    manifest["metrics"]["cooccur"] = choice.to_manifest()
    if section is not None:
        manifest["cooccur"] = section
        written = w.preview(manifest)
    best = f"{choice.best:.4f} " if choice.best is not None else ""
    knob = "lambda" if str(choice.weighting).startswith("ease") else "shrink"  # EASE's lambda rides in `shrink`
    progress.message(f"co-occurrence: validation NDCG@10 {choice.base:.4f} -> "
                     + (f"{best}({choice.weighting} lists, {knob} {choice.shrink:g}, decay {choice.decay:g}, "
                        f"weight {choice.relative_weight:g} x spread {choice.spread:.3g}, "
                        f"popularity exponent {choice.pop_exponent or 0.0:g})" if choice.chosen
                        else "no gain: not used"))
    timings["cooccur"] = time.perf_counter() - t
    return written, choice


def refit_cooccur_stage(w: BundleWriter, written: Path, manifest: dict[str, Any], dataset: Any, split: Any,
                        cfg: ExportConfig, progress: Progress, timings: dict[str, float], choice: Any) -> Path:
    """After `add_cooccur` chose the lists: rebuild them from train + validation events
    (`recengine.export.cooccur.refit_cooccur`, when `cooccur.refit`), update `manifest` and seal again.
    Returns the sealed bundle (`written` unchanged when there is nothing to rebuild). Shared by `run_export`
    and the quality bench's main fit."""
    if choice is None or not choice.chosen or not cfg.cooccur.refit or "cooccur" not in manifest:
        return written
    from .cooccur import refit_cooccur

    t = time.perf_counter()
    progress.message("co-occurrence lists: rebuilt from the training and validation events")
    manifest["cooccur"] = refit_cooccur(w, written, manifest["cooccur"], choice, dataset, split, cfg)
    manifest["metrics"]["cooccur"] = choice.to_manifest()
    timings["cooccur_refit"] = time.perf_counter() - t
    return w.preview(manifest)


def _remove_variant(root: Path, variants: dict[str, Any], variant: str) -> str:
    entry = variants.pop(variant)
    rel = entry["path"] if isinstance(entry, dict) else entry
    (root / rel).unlink(missing_ok=True)
    return str(rel)


def drop_variant(root: Path, manifest: dict[str, Any], variant: str) -> list[str]:
    """Delete `variant` of every model from the bundle being written and from `manifest.models`; returns the
    removed paths. fp32 is never dropped: it is what every host falls back to."""
    if variant == "fp32":
        raise ExportError("the fp32 models are the reference and are never dropped")
    return [_remove_variant(root, spec["variants"], variant) for spec in manifest["models"].values()
            if variant in spec.get("variants", {})]


def drop_untargeted_variants(root: Path, manifest: dict[str, Any], cfg: ExportConfig) -> list[str]:
    """Delete the model files `cfg.target` does not need (`--target cpu`: int8 only, `gpu`: fp16 only) from
    the bundle being written and from `manifest.models.<m>.variants`; returns the removed paths. A model whose
    target variant was dropped for failing parity keeps its fp32 (the host serves that model in fp32). The
    parity and validation metrics stay in the manifest (fp32 is the reference they were measured against)."""
    from .config import TARGET_VARIANTS

    keep = TARGET_VARIANTS[cfg.target]
    removed: list[str] = []
    if keep is None:
        return removed
    models = manifest["models"]
    for name, spec in models.items():
        variants = spec.get("variants", {})
        # a split encoder's two models run as one: they keep the same variant, else neither has the other's
        pair = [models[m].get("variants", {}) for m in ("encoder", "item_head") if m in models] \
            if name in ("encoder", "item_head") else [variants]
        common = set(keep).intersection(*map(set, pair))
        kept = common or {"fp32"} & set(variants)
        for variant in [v for v in variants if v not in kept]:
            removed.append(_remove_variant(root, variants, variant))
    return removed


def check_pipeline_parity(validation: dict[str, dict[str, float]], cfg: ExportConfig, parity: dict[str, Any],
                          reencoded: dict[str, dict[str, float]] | None = None) -> dict[str, str]:
    """INT8/FP16 pipelines must keep their share of the fp32 validation NDCG@10.

    Checked for the pipeline as served (stored catalogue vectors) and, where measured, with every item
    re-encoded by the variant's encoder (the path of items added at serving time; its own, lower floor
    `parity.reencoded_min_ndcg_ratio`); both ratios are recorded in `parity.pipeline` as
    `<variant>_ndcg_ratio` and `<variant>_reencoded_ndcg_ratio`. Returns the failed variants -> reason (also
    recorded in `parity.pipeline.dropped`) for the caller to drop (`parity.drop_failed_variants`); raises
    ParityError instead when that is off.
    """
    base = validation["fp32"]["ndcg@10"]
    floors = {"int8": cfg.parity.int8_min_ndcg_ratio, "fp16": cfg.parity.fp16_min_ndcg_ratio}
    pipe = parity.setdefault("pipeline", {})
    failed: dict[str, str] = {}
    for suffix, table in (("", validation), ("_reencoded", reencoded or {})):
        for variant, floor in floors.items():
            if variant not in table:
                continue
            if suffix:
                floor = min(floor, cfg.parity.reencoded_min_ndcg_ratio)
            got = table[variant]["ndcg@10"]
            ratio = got / base if base > 0 else 1.0
            pipe[f"{variant}{suffix}_ndcg_ratio"] = ratio
            if ratio < floor and cfg.parity.raise_on_failure and variant not in failed:
                how = " with the catalogue re-encoded by its encoder" if suffix else ""
                failure = ParityError(
                    f"parity check failed for the {variant} pipeline{how}: validation NDCG@10 {got:.4f}"
                    f" is {ratio:.3f}x fp32 ({base:.4f}); tolerance >= {floor:g}x"
                )
                if not cfg.parity.drop_failed_variants:
                    raise failure
                failed[variant] = str(failure)
    if failed:
        pipe["dropped"] = dict(failed)
    return failed


def export_models_and_arrays(w: BundleWriter, dataset, fitted, cfg: ExportConfig, timings: dict[str, float],
                             progress: Progress) -> dict[str, Any]:
    """ONNX models (with tensor parity), arrays, indexes; returns the manifest without validation metrics."""
    from .bundle_write import data_section, dims_section, indexed_spaces, write_arrays, write_indexes
    from .encoder import save_tokenizer
    from .encoder.onnx_export import export_encoder
    from .fusion import ITEM_FEATURE_NAMES
    from .onnx_models import fusion_spec, user_tower_spec
    from .onnx_tools import export_variants

    parity_cfg = cfg.parity
    models_dir = w.path("models/.keep").parent
    rng = np.random.default_rng(cfg.seed)
    texts = list(dataset.items.texts)

    t = time.perf_counter()
    indexed = indexed_spaces(dataset.n_items, cfg.index.text)
    arrays = write_arrays(w, dataset, fitted, indexed)
    user_vecs = arrays.pop("_user_vectors")
    item = fitted.item_arrays()
    timings["arrays"] = time.perf_counter() - t

    progress.message("exporting ONNX models (fp32, int8, fp16) and checking parity")
    t = time.perf_counter()
    sample = rng.choice(len(texts), size=min(cfg.parity.sample_items, len(texts)), replace=False)
    encoders = export_encoder(fitted.serving_tower().cpu(), models_dir, fitted.text.tokenizer,
                              fitted.text.tokenizer_info, parity_texts=[texts[i] for i in sorted(sample)],
                              parity=parity_cfg, split=cfg.encoder.split).reports
    timings["onnx_encoder"] = time.perf_counter() - t
    t = time.perf_counter()
    variants = tuple(cfg.variants)
    uspec = user_tower_spec(fitted.tower, fitted.scene_vocab.sizes, fitted.profile_vocab.sizes, parity_cfg, variants,
                            item["vectors"])
    user = export_variants(uspec, fitted.tower, models_dir)
    timings["onnx_user_tower"] = time.perf_counter() - t
    t = time.perf_counter()
    fspec = fusion_spec(fitted.fusion, cfg.item_dim, len(ITEM_FEATURE_NAMES), len(fitted.pop_edges) + 2,
                        fitted.scene_vocab.sizes, fitted.profile_vocab.sizes, parity_cfg, variants, item["vectors"],
                        item["item_feats"], fitted.pop_bucket, user_vecs)
    fusion = export_variants(fspec, fitted.fusion, models_dir)
    timings["onnx_fusion"] = time.perf_counter() - t
    reports = {**encoders, "user_tower": user, "fusion": fusion}
    for report in reports.values():
        for variant, path in report.paths.items():
            if variant not in variants:
                path.unlink(missing_ok=True)
        report.paths = {k: v for k, v in report.paths.items() if k in variants}

    models = {
        **{name: report.manifest_entry(w.root) for name, report in encoders.items()},
        "user_tower": {**user.manifest_entry(w.root), "max_history": int(cfg.user.max_history)},
        "fusion": {**fusion.manifest_entry(w.root), "item_feature_names": list(ITEM_FEATURE_NAMES),
                   "use_by_default": bool(fitted.use_fusion), "n_candidates": int(cfg.fusion.n_candidates)},
    }
    models["encoder"]["source"] = fitted.text.source.describe()
    models["encoder"]["finetune"] = cfg.encoder.finetune
    # what `search` ranks by: the pre-trained model's space unless an unsplit fine-tuned encoder moved it
    split = "item_head" in encoders
    if not split:
        from .encoder.split import encoder_moved

        split = not encoder_moved(fitted.text.tower)  # nothing trained: the encoder is the pre-trained one
    models["encoder"]["search_space"] = "pretrained" if split else "fine-tuned"
    parity: dict[str, Any] = {name: report.parity for name, report in reports.items()}
    for name, report in reports.items():
        dropped = {v: reason for v, reason in report.dropped.items() if v in variants}
        if dropped:
            parity[name] = {**report.parity, "dropped": dropped}
            for v, reason in dropped.items():
                progress.message(f"warning: dropping the {v} {name}, it serves fp32 instead: {reason}")

    save_tokenizer(fitted.text.tokenizer, w.path("tokenizer.json"))
    info = fitted.text.tokenizer_info
    tokenizer = {**info.manifest("tokenizer.json"), "pad_id": int(info.pad_id)}

    t = time.perf_counter()
    probes: dict[str, np.ndarray] = {}
    if cfg.index.min_recall is not None:  # queries like the served ones (`recengine.index_io.calibrate_ef`)
        from recengine.index_io import PROBE_QUERIES, query_like

        from .encoder import encode_texts

        pick = rng.choice(len(user_vecs), size=min(PROBE_QUERIES, len(user_vecs)), replace=False)
        probes["item"] = np.asarray(user_vecs, np.float32)[np.sort(pick)]
        queries = query_like(texts, PROBE_QUERIES, cfg.seed) if "text" in indexed else []
        if queries:
            emb = encode_texts(fitted.search_tower().cpu(), fitted.text.tokenizer, queries,
                               pad_id=fitted.text.tokenizer_info.pad_id)[0]
            probes["text"] = emb.numpy()
    index = write_indexes(w, item["vectors"], fitted.text.search_space, cfg.index.M, cfg.index.ef_construction,
                          cfg.index.ef_search, cfg.seed, min_recall=cfg.index.min_recall, probes=probes,
                          indexed=indexed)
    timings["index"] = time.perf_counter() - t

    return {
        "data": data_section(dataset),
        "dims": dims_section(fitted),
        "tokenizer": tokenizer,
        "models": models,
        "vocab": arrays["vocab"],
        "items": arrays["items"],
        "users": arrays["users"],
        "index": index,
        "metrics": {"parity": parity},
        "config": cfg.to_dict(),
    }


__all__ = ["run_export", "add_cooccur", "refit_cooccur_stage", "check_pipeline_parity", "drop_untargeted_variants",
           "drop_variant", "StageTimings"]

