"""`recengine bench quality`: every baseline and recengine trained and evaluated on one split, in one run.

Flow: load the data -> `Protocol.build` (leave-last-out split) -> per baseline: grid on validation, refit
(or history swap for sequence models), test -> recengine: fit once with the export code, export a bundle,
score torch fp32 and every ONNX variant -> both cold-item protocols (hybrid and cold-only; every model
refitted on the warm items) -> per-scene breakdown -> ratios to the best baseline. The report schema is
documented in `report.py`.

Tuning never sees test events: grid points are fitted on `protocol.train` and ranked by `protocol.valid`
only; `protocol.test` is read once, by the selected setting (tests/bench/test_quality.py poisons the test
split and checks that the tuned settings do not move). `tune_budget_s` caps each model's grid by time: grid
points are tried in order (the most promising first) and the grid stops once the model's tuning time
exceeds the budget; the report records how many points ran.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recengine.errors import DependencyError, RequestError
from recengine.progress import Progress

from .baselines import BASELINES, Recommender, create
from .baselines.base import BaselineSkipped
from .machine import load_average, machine_info, utc_now
from .protocol import ColdProtocol, Protocol, cold_protocol, evaluate, evaluate_rows, scene_metrics

BASELINE_NAMES: tuple[str, ...] = ("popularity", "itemknn", "ease", "als", "bpr", "lightgcn", "sasrec",
                                   "frozen_text")
RECENGINE_VARIANTS: tuple[str, ...] = ("fp32", "int8", "fp16")
MODEL_CHOICES: tuple[str, ...] = BASELINE_NAMES + ("recengine",)
REPORT_METRICS: tuple[str, ...] = (
    "hr@10", "ndcg@10", "hr@20", "ndcg@20", "mrr", "coverage@10", "tail_share@10",
    "cold_recall@20", "cold_ndcg@20", "coldonly_recall@20", "coldonly_ndcg@20",
)
COLD_METRICS: tuple[str, ...] = ("cold_recall@20", "cold_ndcg@20", "coldonly_recall@20", "coldonly_ndcg@20")
"""Hybrid (`cold_*`: all items ranked) and cold-only (`coldonly_*`: only the cold items ranked) protocols."""
NDCG_TARGET = 1.10
"""Issue #5 quality target: recengine NDCG@10 >= 1.10x the best baseline."""


@dataclass
class QualityConfig:
    """Knobs of a quality run (the CLI maps its options onto these)."""

    data: str | None = None
    """Data directory (None = the embedded MovieLens ml-latest-small)."""
    profile: str = "standard"
    """standard: tuning grids + recengine's standard export profile; quick: tiny grids, tiny encoder (tests)."""
    models: tuple[str, ...] = MODEL_CHOICES
    variants: tuple[str, ...] = RECENGINE_VARIANTS
    seed: int = 0
    encoder: str | None = None
    """Encoder directory for recengine and the frozen-text baseline (None = the profile's default)."""
    cold: bool = True
    cold_fraction: float = 0.1
    cold_min_interactions: int = 5
    threads: int = 0
    """torch intra-op threads and ONNX Runtime threads (0 = library default)."""
    export_overrides: dict[str, Any] = field(default_factory=dict)
    """Dotted ExportConfig overrides for recengine (`{"user.epochs": 50}`)."""
    workdir: Path | None = None
    """Where recengine's bundles are written (kept); None = a temporary directory (deleted)."""
    jobs: int = 1
    """2 = train recengine in a second process while the baselines train (same split, same run)."""
    tune_budget_s: float = 0.0
    """Per-model tuning time budget in seconds (0 = the whole grid): grid points run in order and the grid
    stops once the model's tuning time exceeds it (the report says how many points ran)."""
    quiet: bool = False
    command: str = ""

    def validate(self) -> None:
        if self.profile not in ("quick", "standard"):
            raise RequestError(f"--profile must be quick or standard, got {self.profile!r}")
        unknown = [m for m in self.models if m not in MODEL_CHOICES]
        if unknown:
            raise RequestError(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODEL_CHOICES)}")
        bad = [v for v in self.variants if v not in RECENGINE_VARIANTS]
        if bad:
            raise RequestError(f"unknown variant(s) {', '.join(bad)}; choose from {', '.join(RECENGINE_VARIANTS)}")
        if self.jobs not in (1, 2):
            raise RequestError(f"--jobs must be 1 or 2, got {self.jobs}")
        if self.tune_budget_s < 0:
            raise RequestError(f"--tune-budget must be >= 0 seconds, got {self.tune_budget_s}")
        if not 0.0 < self.cold_fraction < 1.0:
            raise RequestError(f"--cold-fraction must be in (0, 1), got {self.cold_fraction}")


class TextEmbeddingCache:
    """The untuned encoder's item embeddings, computed once per run and shared by every frozen-text fit."""

    def __init__(self, encoder_dir: Path, texts: list[str], max_length: int, progress: Progress) -> None:
        self.encoder_dir, self.texts, self.max_length, self.progress = Path(encoder_dir), texts, max_length, progress
        self._emb: np.ndarray | None = None
        self.seconds = 0.0

    def item_text_embeddings(self) -> np.ndarray:
        if self._emb is None:
            from .textenc import MeanPoolEncoder

            t = time.perf_counter()
            self.progress.message(f"frozen_text: encoding {len(self.texts)} item texts with {self.encoder_dir.name}")
            enc = MeanPoolEncoder(self.encoder_dir, max_length=self.max_length)
            self._emb = enc.encode(self.texts, batch_size=64, progress=not self.progress.quiet)
            self.seconds = time.perf_counter() - t
        return self._emb


@dataclass
class ModelOutcome:
    """One model's test metrics, cold recall, tuning trials and costs."""

    name: str
    kind: str
    metrics: dict[str, float]
    params: dict[str, Any] = field(default_factory=dict)
    valid_ndcg: float | None = None
    trials: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    scenes: dict[str, Any] = field(default_factory=dict)
    query_ndcg: np.ndarray | None = None
    """NDCG@10 of every test query (same query order for every model): standard errors and paired
    bootstrap intervals of ratios between models."""
    grid_size: int | None = None
    """Points in the model's grid (more than `len(trials)` when the tuning budget cut it)."""

    def entry(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: float(self.metrics[k]) for k in REPORT_METRICS if k in self.metrics}
        out["n_queries"] = int(self.metrics.get("n_queries", 0))
        if self.query_ndcg is not None and len(self.query_ndcg) > 1:
            out["ndcg@10_se"] = float(np.std(self.query_ndcg, ddof=1) / np.sqrt(len(self.query_ndcg)))
        out["kind"] = self.kind
        out["params"] = self.params
        out["valid_ndcg@10"] = self.valid_ndcg
        if self.grid_size is not None:
            out["grid_points"] = {"tried": len(self.trials), "in_grid": self.grid_size}
        out["seconds"] = {k: round(v, 2) for k, v in self.seconds.items()}
        return out


SIMD_FLAGS: tuple[str, ...] = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
                               "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "neon",
                               "asimd", "sve")


def instruction_sets() -> list[str]:
    """The CPU's SIMD instruction sets that matter to BLAS and ONNX Runtime kernels (Linux /proc/cpuinfo
    flags; empty where unavailable): AVX2 vs AVX-512/VNNI/AMX machines run different kernels."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                key = line.split(":", 1)[0].strip().lower()
                if key in ("flags", "features"):
                    flags = set(line.split(":", 1)[1].split())
                    return [f for f in SIMD_FLAGS if f in flags]
    except OSError:
        pass
    return []


def query_ndcg(ranks: np.ndarray, k: int = 10) -> np.ndarray:
    """Per-query NDCG@k from 1-based ranks (the gains `recengine.metrics.ndcg` averages)."""
    return np.where(ranks <= k, 1.0 / np.log2(ranks + 1.0), 0.0)


def paired_bootstrap_ratio(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of mean(a) / mean(b) when the same queries are resampled for both models (the
    test set is a sample of users: with ~600 queries, NDCG@10 ratios move by +-15 % from sampling alone)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(n_boot, len(a)))
    num, den = a[idx].mean(axis=1), b[idx].mean(axis=1)
    ratios = num[den > 0] / den[den > 0]
    if not len(ratios):
        return float("nan"), float("nan")
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return float(lo), float(hi)


def _export_config(cfg: QualityConfig) -> Any:
    from recengine.export.config import ExportConfig

    ecfg = ExportConfig.from_profile(cfg.profile)
    values: dict[str, Any] = {"seed": cfg.seed, "threads": cfg.threads, "quiet": cfg.quiet,
                              "variants": tuple(cfg.variants) or ("fp32",)}
    if cfg.encoder is not None:
        values.update({"encoder.path": str(cfg.encoder), "encoder.tiny": False})
    ecfg = ecfg.override(values, source="bench")
    if cfg.export_overrides:
        ecfg = ecfg.override(dict(cfg.export_overrides), source="bench --set")
    ecfg.validate()
    return ecfg


class QualityRun:
    """State of one quality run; `run()` returns the report dictionary (see report.py for the schema)."""

    def __init__(self, cfg: QualityConfig) -> None:
        cfg.validate()
        self.cfg = cfg
        self.progress = Progress(cfg.quiet)
        self.notes: list[str] = []
        self.outcomes: dict[str, ModelOutcome] = {}
        self.cold_recall: dict[str, float] = {}
        self.timings: dict[str, float] = {}

    # ------------------------------------------------------------------ baselines
    def _validate_fn(self, protocol: Protocol):
        return lambda score: evaluate(score, protocol.valid).metrics["ndcg@10"]

    def run_baseline(self, name: str, protocol: Protocol, cold: ColdProtocol | None, text: Any) -> None:
        cls = BASELINES[name]
        validate = self._validate_fn(protocol)
        trials: list[dict[str, Any]] = []
        best: Recommender | None = None
        t0 = time.perf_counter()
        grid = cls.grid(self.cfg.profile)
        budget = self.cfg.tune_budget_s
        for params in self.progress.bar(grid, f"{name} grid", total=len(grid)):
            if budget and trials and time.perf_counter() - t0 > budget:
                self.notes.append(f"{name}: tuning budget {budget:g} s reached after {len(trials)} of {len(grid)} "
                                  "grid points; the rest were not tried")
                break
            t = time.perf_counter()
            model = create(name, params, text).fit(protocol.train, validate)
            value = model.info.best_valid
            if value is None:
                value = validate(model.score)
                model.info.best_valid = value
            trials.append({"params": params, "valid_ndcg@10": float(value), "best_epoch": model.info.best_epoch,
                           "epochs_run": model.info.epochs_run, "fit_seconds": round(time.perf_counter() - t, 2)})
            if best is None or value > (best.info.best_valid or -1.0):
                best = model
        assert best is not None
        tune_s = time.perf_counter() - t0
        t = time.perf_counter()
        if cls.reads_history:
            best.use_history(protocol.train_valid)
            test_model = best
        else:
            test_model = create(name, best.refit_params(), text).fit(protocol.train_valid)
        result = evaluate(test_model.score, protocol.test)
        test_s = time.perf_counter() - t
        outcome = ModelOutcome(name, "baseline", dict(result.metrics), best.refit_params(), best.info.best_valid,
                               trials, {"tune": tune_s, "refit_and_test": test_s},
                               scene_metrics(result, protocol.test), query_ndcg(result.ranks))
        outcome.grid_size = len(grid)
        if cold is not None:
            t = time.perf_counter()
            cold_model = create(name, best.refit_params(), text).fit(cold.data)
            outcome.metrics.update(cold.evaluate(cold_model.score, k=20))
            outcome.seconds["cold"] = time.perf_counter() - t
        self.outcomes[name] = outcome
        self.progress.message(
            f"{name}: valid NDCG@10 {best.info.best_valid:.4f} -> test NDCG@10 {result.metrics['ndcg@10']:.4f}"
            f" (params {best.refit_params()})"
        )

    # ------------------------------------------------------------------ recengine
    def run_recengine(self, protocol: Protocol, cold: ColdProtocol | None, runner: Any) -> None:
        from .recengine_eval import QuerySet, warm_split

        t = time.perf_counter()
        self.progress.message("recengine: fitting on the bench split (export code, "
                              f"profile {self.cfg.profile}, encoder {runner.source().name})")
        fit = runner.fit(protocol.split, "main")
        self.notes.extend(fit.notes)
        qs = QuerySet(protocol.test.users, protocol.train_valid, protocol.test.context,
                      protocol.test.exclude_indptr, protocol.test.exclude_indices)
        valid = float(fit.fitted.metrics.get("fusion_val_ndcg@10", float("nan")))
        if not np.isfinite(valid) or not fit.fitted.use_fusion:
            valid = float(fit.fitted.metrics.get("user_tower_val_ndcg@10", float("nan")))
        params = {"profile": self.cfg.profile, "encoder": runner.source().name,
                  "use_fusion": bool(fit.fitted.use_fusion), "config": "see the export config of the profile",
                  "adapt": [{"key": d["key"], "value": d["value"]} for d in runner.adapted["main"]["decisions"]]}
        if "main" in runner.cooccur:  # what the export chose on validation (the grid: the bundle's manifest)
            choice = runner.cooccur["main"]
            params["cooccur"] = {k: v for k, v in choice.to_manifest().items() if k != "grid"}
            if choice.chosen:  # the served model's validation figure: the chosen blend's
                valid = float(choice.best)
        factories = runner.scorers(fit, qs, threads=self.cfg.threads)
        for name, factory in factories.items():
            t_eval = time.perf_counter()
            self.progress.message(f"{name}: scoring the test queries")
            result = evaluate_rows(factory(), protocol.test)
            self.outcomes[name] = ModelOutcome(
                name, "recengine", dict(result.metrics), params, valid, [],
                {"fit": fit.seconds.get("fit", 0.0), "export": fit.seconds.get("export", 0.0),
                 "test": time.perf_counter() - t_eval},
                scene_metrics(result, protocol.test), query_ndcg(result.ranks),
            )
            self.progress.message(f"{name}: test NDCG@10 {result.metrics['ndcg@10']:.4f}")
        self.timings["recengine_main"] = time.perf_counter() - t
        if cold is None:
            return
        t = time.perf_counter()
        self.progress.message("recengine: fitting on the warm items for the cold-item protocol")
        wsplit = warm_split(cold.split.warm, protocol.dataset.n_users, protocol.dataset.n_items, self.cfg.seed)
        cold_fit = runner.fit(wsplit, "cold", refit_all=True)  # baselines refit on every warm interaction
        self.notes.extend(cold_fit.notes)
        cqs = QuerySet(cold.users, cold.data, {}, cold.exclude_indptr, cold.exclude_indices)
        for name, factory in runner.scorers(cold_fit, cqs, threads=self.cfg.threads).items():
            if name in self.outcomes:  # full score rows: the cold-only protocol ranks their cold columns
                self.outcomes[name].metrics.update(cold.evaluate_rows(factory(), k=20))
        self.timings["recengine_cold"] = time.perf_counter() - t

    # ------------------------------------------------------------------ run
    def prepare(self) -> tuple[Any, Protocol, ColdProtocol | None]:
        """Load the data and derive the split and the cold protocol (deterministic under the seed)."""
        from recengine.data import load_dataset

        cfg = self.cfg
        if cfg.threads:
            try:
                import torch

                torch.set_num_threads(cfg.threads)
            except ImportError:
                pass
        dataset = load_dataset(cfg.data)
        protocol = Protocol.build(dataset, seed=cfg.seed)
        cold = None
        if cfg.cold:
            cold = cold_protocol(dataset, cfg.cold_fraction, cfg.cold_min_interactions, cfg.seed)
            if not len(cold.users):
                self.notes.append("cold-item protocol skipped: no item qualifies for the cold share")
                cold = None
        return dataset, protocol, cold

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        t_start = time.perf_counter()
        started = utc_now()
        machine = machine_info()
        machine.setdefault("instruction_sets", instruction_sets())
        dataset, protocol, cold = self.prepare()
        self.progress.message(f"quality bench: {dataset.name}: {dataset.n_items} items, {dataset.n_users} users, "
                              f"{len(dataset.interactions)} interactions; {len(protocol.valid)} validation and "
                              f"{len(protocol.test)} test queries")
        tmp = None
        workdir = cfg.workdir
        if workdir is None:
            tmp = tempfile.TemporaryDirectory(prefix="recengine-bench-")
            workdir = Path(tmp.name)
        workdir.mkdir(parents=True, exist_ok=True)
        pool = future = None
        try:
            runner, text = self._text_and_runner(dataset, workdir)
            if "recengine" in cfg.models and runner is not None and cfg.jobs > 1:
                import multiprocessing
                from concurrent.futures import ProcessPoolExecutor

                pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
                future = pool.submit(recengine_job, cfg, str(workdir / "recengine"), _split_digest(protocol))
            for name in cfg.models:
                if name == "recengine":
                    continue
                t = time.perf_counter()
                try:
                    self.run_baseline(name, protocol, cold, text)
                except (DependencyError, BaselineSkipped) as exc:
                    self.notes.append(f"{name} omitted: {exc}")
                self.timings[name] = time.perf_counter() - t
            if "recengine" in cfg.models:
                if runner is None:
                    self.notes.append("recengine_* omitted: the export extra (torch) is not installed")
                elif future is not None:
                    self.progress.message("waiting for the recengine worker process")
                    outcomes, timings, notes = future.result()
                    self.outcomes.update(outcomes)
                    self.timings.update(timings)
                    self.notes.extend(notes)
                    self.notes.append("recengine was trained in a second process concurrently with the baselines "
                                      "(--jobs 2), on the identical split (checked by digest)")
                else:
                    self.run_recengine(protocol, cold, runner)
            if text is not None and getattr(text, "seconds", 0.0):
                self.timings["frozen_text_encode"] = text.seconds
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
            if tmp is not None:
                tmp.cleanup()
        self.timings["total"] = time.perf_counter() - t_start
        machine["load_average_at_end"] = load_average()
        return self._report(dataset, protocol, cold, started, machine)

    def _text_and_runner(self, dataset: Any, workdir: Path) -> tuple[Any, Any]:
        """The recengine runner (export extra) and the frozen-text embedding source (same encoder)."""
        needs = "recengine" in self.cfg.models or "frozen_text" in self.cfg.models
        if not needs:
            return None, None
        try:
            from .recengine_eval import RecengineRunner

            ecfg = _export_config(self.cfg)
            variants = tuple(v for v in self.cfg.variants)
            runner = RecengineRunner(dataset, ecfg, workdir, variants, quiet=self.cfg.quiet)
            source = runner.source()
        except (ImportError, DependencyError) as exc:
            self.notes.append(f"torch/export extra unavailable ({exc}): frozen_text and recengine omitted")
            return None, None
        text = TextEmbeddingCache(source.path, list(dataset.items.texts), ecfg.encoder.max_length, self.progress)
        return runner, text

    # ------------------------------------------------------------------ report
    def _report(self, dataset: Any, protocol: Protocol, cold: ColdProtocol | None, started: str,
                machine: dict[str, Any]) -> dict[str, Any]:
        models = {name: o.entry() for name, o in self.outcomes.items()}
        baselines = {n: m for n, m in models.items() if m["kind"] == "baseline"}
        # every baseline run (ease, the widened grids included) competes for "best baseline"
        best_name = max(baselines, key=lambda n: baselines[n]["ndcg@10"]) if baselines else None
        ratios: dict[str, dict[str, float | None]] = {}
        if best_name is not None:
            best = baselines[best_name]
            for name, m in models.items():
                ratios[name] = {k: (m[k] / best[k] if best.get(k) and k in m else None) for k in REPORT_METRICS}
        scenes: dict[str, dict[str, dict[str, Any]]] = {}
        for name, o in self.outcomes.items():
            for column, values in o.scenes.items():
                for value, metrics in values.items():
                    scenes.setdefault(column, {}).setdefault(value, {})[name] = metrics
        for variant in RECENGINE_VARIANTS:
            if "recengine" in self.cfg.models and variant not in self.cfg.variants:
                self.notes.append(f"recengine_{variant} omitted: not requested (--variants)")
        if "recengine_torch" in models:
            self.notes.append("recengine_torch is the torch fp32 model before ONNX export (reference only); "
                              "recengine_fp32/int8/fp16 are the exported ONNX pipelines as served")
        if any(n.startswith("recengine") for n in models):
            self.notes.append("recengine is tuned like SASRec, the other model that reads histories: fitted on "
                              "split.train with early stopping on split.valid, the early-stopped model reading the "
                              "train+valid history at test time, and its co-occurrence lists, chosen on "
                              "split.valid, rebuilt from train+valid as EASE and ItemKNN are refitted "
                              "(recengine.export.cooccur.refit_cooccur); for the cold protocol it early-stops on a "
                              "leave-last-out split of the warm interactions and its user tower is then refitted on "
                              "all of them for the early-stopped epoch count (recengine.export.fit.refit), as every "
                              "baseline is refitted on all warm interactions")
            self.notes.append("recengine_int8/fp16 serve the stored catalogue vectors; items without training "
                              "interactions (the cold items) are re-encoded as items added at serving time are, by "
                              "the engine's item encoder (fp32 beside an INT8 serving encoder, the default; "
                              "recengine_int8_int8items: by the INT8 encoder, Engine.open(item_variant='int8'))")
        target = None
        if best_name is not None and "recengine_fp32" in models:
            ratio = ratios["recengine_fp32"]["ndcg@10"]
            target = {"metric": "ndcg@10", "target_ratio": NDCG_TARGET, "recengine_fp32_ratio": ratio,
                      "met": bool(ratio is not None and ratio >= NDCG_TARGET)}
            ours, theirs = self.outcomes["recengine_fp32"].query_ndcg, self.outcomes[best_name].query_ndcg
            if ours is not None and theirs is not None and len(ours) == len(theirs):
                lo, hi = paired_bootstrap_ratio(ours, theirs, seed=self.cfg.seed)
                target["ratio_ci95"] = [lo, hi]
                self.notes.append(f"recengine_fp32 / {best_name} NDCG@10 ratio: 95% interval [{lo:.3f}, {hi:.3f}] "
                                  "(paired bootstrap over the test queries, 2000 resamples)")
        protocol_block: dict[str, Any] = {**protocol.describe(), "profile": self.cfg.profile}
        if cold is not None:
            protocol_block["cold"] = {**cold.describe(), "fraction": self.cfg.cold_fraction,
                                      "min_interactions": self.cfg.cold_min_interactions}
        return {
            "schema": "recengine-bench-quality/1",
            "kind": "quality",
            "created_at": started,
            "command": self.cfg.command,
            "machine": machine,
            "data": {"name": dataset.name, "fingerprint": dataset.fingerprint, "n_users": dataset.n_users,
                     "n_items": dataset.n_items, "n_interactions": len(dataset.interactions),
                     "context_columns": sorted(dataset.interactions.context)},
            "protocol": protocol_block,
            "models": models,
            "best_baseline": {"name": best_name, "ndcg@10": baselines[best_name]["ndcg@10"] if best_name else None},
            "ratios": ratios,
            "target": target,
            "tuning": {name: o.trials for name, o in self.outcomes.items() if o.trials},
            "tune_budget_s": self.cfg.tune_budget_s,
            "scenes": scenes,
            "notes": self.notes,
            "timings": {k: round(v, 2) for k, v in self.timings.items()},
        }


def _split_digest(protocol: Protocol) -> str:
    """A digest of the split (users, targets, exclusions) to prove two processes evaluate the same queries."""
    import hashlib

    h = hashlib.sha256()
    for arr in (protocol.valid.users, protocol.valid.targets, protocol.test.users, protocol.test.targets,
                protocol.test.exclude_indptr, protocol.test.exclude_indices):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def recengine_job(cfg: QualityConfig, workdir: str, digest: str) -> tuple[dict[str, ModelOutcome], dict[str, float],
                                                                         list[str]]:
    """Worker-process entry (--jobs 2): rebuild the same split, train and score recengine, return outcomes."""
    run = QualityRun(cfg)
    dataset, protocol, cold = run.prepare()
    if _split_digest(protocol) != digest:
        raise RuntimeError("the recengine worker derived a different split than the main process")
    from .recengine_eval import RecengineRunner

    path = Path(workdir)
    path.mkdir(parents=True, exist_ok=True)
    runner = RecengineRunner(dataset, _export_config(cfg), path, tuple(cfg.variants), quiet=cfg.quiet)
    run.run_recengine(protocol, cold, runner)
    return run.outcomes, run.timings, run.notes


def run_quality(cfg: QualityConfig) -> dict[str, Any]:
    """Run the quality bench and return its report (JSON-able dict)."""
    return QualityRun(cfg).run()


__all__ = ["QualityConfig", "QualityRun", "run_quality", "BASELINE_NAMES", "COLD_METRICS", "MODEL_CHOICES",
           "REPORT_METRICS", "RECENGINE_VARIANTS", "instruction_sets"]
