"""`recengine bench latency BUNDLE`: p50/p95/p99 and throughput per serving stage and end to end.

Every stage is timed through the runtime itself (`Engine.stages()` and `Engine.recommend*`, ONNX Runtime
sessions exactly as served), and the torch-eager baseline is timed in the same run (see `torch_eager.py`).
Batch 1 is measured single-threaded, one request at a time (ORT intra-op threads = 1, torch threads = 1);
larger batches use every core: the two are reported separately (`mode` = "single" / "batched").
Retrieval is timed on the runtime's backends (hnswlib at several ef with recall@k against exact search,
numpy exact search, the ONNX MatMul+TopK graph), optionally over a catalogue padded with synthetic vectors.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recengine.bundle.format import history_inputs, left_pad
from recengine.errors import RecengineError, RequestError
from recengine.progress import Progress

from .machine import load_average, machine_info, utc_now
from .timing import Budget, measure

STAGES: tuple[str, ...] = ("tokenize", "encode", "user_tower", "retrieve", "score", "recommend", "e2e")
DEFAULT_STAGES: tuple[str, ...] = STAGES[:-1]
"""`e2e` (every serving call end to end at batch 1, `Engine.open` time and RSS in fresh processes) is added
to these when the catalogue is synthetic (`--synthetic-items`), or asked for with `--stages`."""
VARIANTS: tuple[str, ...] = ("fp32", "int8", "fp16")
ENCODER_SPEEDUP_TARGET = 4.0
RECOMMEND_P99_TARGET_MS = 3.0
SCALE_RECOMMEND_P99_TARGET_MS = 2.0
"""`recommend` by stored user at 1M items, one CPU thread (issue 14)."""
SCALE_OPEN_TARGET_S = 5.0
"""`Engine.open` of a 1M-item bundle (issue 14)."""
MAX_EXACT_SCORES = 200_000_000
"""Largest batch x catalogue score matrix the exact backends are timed on (float32: 800 MB)."""


@dataclass
class LatencyConfig:
    """Knobs of a latency run (the CLI maps its options onto these)."""

    bundle: Path
    device: str = "cpu"
    batches: tuple[int, ...] = (1, 8, 64, 256)
    budget: Budget = field(default_factory=Budget)
    synthetic_items: int = 0
    """Grow the bundle by this many synthetic items (and users) into a full bundle (`synthetic.py`), written
    to `workdir` and served through `Engine.open` for every stage (0 = the bundle as it is)."""
    workdir: Path | None = None
    """Where the synthetic bundle is written (default: a temporary directory, removed after the run)."""
    index_M: int | None = None
    index_ef_construction: int | None = None
    """HNSW build parameters of the synthetic bundle (default: the source bundle's)."""
    min_recall: float = 0.95
    """The synthetic bundle serves at the smallest swept ef reaching this recall@k against exact search."""
    open_runs: int = 3
    """Fresh processes that time `Engine.open` and measure RSS (stage e2e)."""
    efs: tuple[int, ...] = (16, 32, 64, 128, 256)
    k: int = 10
    variants: tuple[str, ...] = VARIANTS
    stages: tuple[str, ...] = DEFAULT_STAGES
    torch_baseline: bool = True
    reference: bool = True
    """Time reference ORT recipes of the bundle's own fp32 encoder (`ref_*` variants) in the encode stage."""
    torch_encoder: Path | None = None
    """HF directory for the torch-eager encoder baseline (default: the manifest's encoder source)."""
    recall_queries: int = 1000
    seed: int = 0
    command: str = ""
    quiet: bool = False

    def validate(self) -> None:
        if self.device not in ("cpu", "cuda"):
            raise RequestError(f"--device must be cpu or cuda, got {self.device!r}")
        if not self.batches or any(b < 1 for b in self.batches):
            raise RequestError(f"--batch needs positive batch sizes, got {self.batches}")
        bad = [s for s in self.stages if s not in STAGES]
        if bad:
            raise RequestError(f"unknown stage(s) {', '.join(bad)}; choose from {', '.join(STAGES)}")
        bad = [v for v in self.variants if v not in VARIANTS]
        if bad:
            raise RequestError(f"unknown variant(s) {', '.join(bad)}; choose from {', '.join(VARIANTS)}")
        if self.synthetic_items < 0:
            raise RequestError(f"--synthetic-items must be >= 0, got {self.synthetic_items}")
        if any(ef < self.k for ef in self.efs):
            raise RequestError(f"every --ef must be >= k ({self.k}), got {self.efs}")
        if not 0.0 < self.min_recall <= 1.0:
            raise RequestError(f"--min-recall must be in (0, 1], got {self.min_recall}")
        if self.open_runs < 1:
            raise RequestError(f"--open-runs must be >= 1, got {self.open_runs}")
        for name, value in (("--index-m", self.index_M), ("--index-ef-construction", self.index_ef_construction)):
            if value is not None and value < 2:
                raise RequestError(f"{name} must be >= 2, got {value}")
        if self.budget.requests < 1 or self.budget.duration <= 0:
            raise RequestError("--requests must be >= 1 and --duration > 0")


def _mode(batch: int) -> tuple[str, int]:
    """(mode, threads): batch 1 = one request at a time on one thread; batches use every core."""
    return ("single", 1) if batch == 1 else ("batched", os.cpu_count() or 1)


@dataclass
class Fixture:
    """Inputs shared by every measurement, drawn once (seeded) from the bundle."""

    manifest: dict[str, Any]
    texts: list[str]
    item_ids: list[str]
    user_ids: list[str]
    item_vectors: np.ndarray
    user_vectors: np.ndarray
    histories: list[np.ndarray]
    item_feats: np.ndarray
    pop_bucket: np.ndarray
    scene: dict[str, str]
    rng: np.random.Generator

    @classmethod
    def load(cls, bundle: Path, seed: int) -> Fixture:
        from recengine.bundle import open_bundle

        r = open_bundle(bundle)
        m = r.manifest
        indptr = r.load_npy(m["users"]["history_indptr"])
        items = r.load_npy(m["users"]["history_items"])
        hist = [items[indptr[u]: indptr[u + 1]] for u in range(len(indptr) - 1)]
        scene_spec = m.get("vocab", {}).get("scene", {})
        scene = {c: v[1] for c, v in scene_spec.get("values", {}).items() if len(v) > 1}
        return cls(m, r.load_json(m["items"]["texts"]), r.load_json(m["items"]["ids"]), r.load_json(m["users"]["ids"]),
                   r.load_npy(m["items"]["vectors"]), r.load_npy(m["users"]["vectors"]), hist,
                   r.load_npy(m["items"]["item_feats"]), r.load_npy(m["items"]["pop_bucket"]), scene,
                   np.random.default_rng(seed))

    def batches_of(self, n: int, batch: int, count: int = 16) -> list[np.ndarray]:
        """`count` random index batches into range(n) (calls rotate through them)."""
        return [self.rng.choice(n, size=batch, replace=n < batch) for _ in range(count)]


class LatencyRun:
    """One latency run over a bundle; `run()` returns the report dictionary (schema: report.py)."""

    def __init__(self, cfg: LatencyConfig) -> None:
        cfg.validate()
        self.cfg = cfg
        self.progress = Progress(cfg.quiet)
        self.results: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.samples: dict[str, list[float]] = {}
        self.recall_curve: list[dict[str, Any]] = []
        self._engines: dict[tuple[str, int, bool | None], Any] = {}
        self.scale: dict[str, Any] = {}
        self._refs: dict[tuple[str, int], dict[str, Any]] = {}
        self._ref_dir: str | None = None
        self.source_bundle = cfg.bundle

    # ------------------------------------------------------------------ helpers
    def engine(self, variant: str, threads: int, rescore: bool | None = None) -> Any:
        """An Engine per (variant, threads, rescore), opened once (device errors surface here, clearly)."""
        key = (variant, threads, rescore)
        if key not in self._engines:
            from recengine.engine import Engine

            engine = Engine.open(self.cfg.bundle, device=self.cfg.device, threads=threads, variant=variant,
                                 rescore=rescore)
            if hasattr(engine, "warmup"):
                engine.warmup()  # models once + deferred index work: none of it lands in a timed call
            served = getattr(engine, "variants", {})
            for model, got in sorted(served.items()):
                if got != variant:  # the export dropped this model's variant for failing parity
                    note = (f"{variant} rows: the {model} runs {got} "
                            f"({engine.variant_reasons.get(model, 'not in the bundle')})")
                    if note not in self.notes:
                        self.notes.append(note)
            self._engines[key] = engine
        return self._engines[key]

    def record(self, stage: str, variant: str, batch: int, fn: Callable[[int], Any], timing: Any = None,
               **extra: Any) -> dict[str, Any]:
        """Time `fn` (or take the `timing` already measured) and keep its row and samples."""
        mode, threads = _mode(batch)
        timing = timing if timing is not None else measure(fn, batch, self.cfg.budget)
        row = {"stage": stage, "variant": variant, "batch": batch, "mode": mode, "threads": threads,
               **timing.summary(), **extra}
        self.results.append(row)
        self.samples[f"{stage}|{variant}|{batch}"] = [round(x, 4) for x in timing.samples_ms.tolist()]
        return row

    def _set_torch_threads(self, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)

    # ------------------------------------------------------------------ stages
    def stage_tokenize(self, fx: Fixture) -> None:
        variant = self.cfg.variants[0]
        for b in self.progress.bar(self.cfg.batches, "tokenize"):
            stages = self.engine(variant, _mode(b)[1]).stages()
            batches = [[fx.texts[i] for i in idx] for idx in fx.batches_of(len(fx.texts), b)]
            self.record("tokenize", "tokenizers", b, lambda i: stages.tokenize(batches[i % len(batches)]))

    def stage_encode(self, fx: Fixture, torch_encoder: Any) -> None:
        """The bundle's variants and the `ref_*` recipes are timed interleaved (`measure_interleaved`), so
        their ratios hold on a loaded machine; torch eager runs after them (its threads would disturb ORT)."""
        from .timing import measure_interleaved

        for b in self.progress.bar(self.cfg.batches, "encode"):
            mode, threads = _mode(b)
            batches = [[fx.texts[i] for i in idx] for idx in fx.batches_of(len(fx.texts), b)]
            fns: dict[str, Callable[[int], Any]] = {}
            for variant in self.cfg.variants:
                stages = self.engine(variant, threads).stages()
                fns[variant] = lambda i, stages=stages: stages.encode_query(batches[i % len(batches)])
            refs = self._reference_encoders(fx, threads) if self.cfg.reference else {}
            if refs:
                tokenize = self.engine(self.cfg.variants[0], threads).stages().tokenize
                for name, sess in refs.items():
                    def run_ref(i: int, sess: Any = sess, tokenize: Any = tokenize,
                                batches: list[list[str]] = batches) -> Any:
                        tb = tokenize(batches[i % len(batches)])  # the runtime's tokenisation, as in encode
                        return sess.run(["text_embedding"],  # what a search query reads
                                        {"input_ids": tb.input_ids, "attention_mask": tb.attention_mask})

                    fns[name] = run_ref
            for name, timing in measure_interleaved(fns, b, self.cfg.budget).items():
                self.record("encode", name, b, lambda i: None, timing=timing)
            if torch_encoder is not None:
                self._set_torch_threads(threads)
                self.record("encode", "torch_eager", b, lambda i: torch_encoder(batches[i % len(batches)]))

    def _reference_encoders(self, fx: Fixture, threads: int) -> dict[str, Any]:
        """ORT sessions of plain reference recipes built here from the bundle's own fp32 encoder (same
        weights), timed beside the bundle's variants so the ratio shows what is left on this CPU:
        `ref_int8` = `quantize_dynamic(per_channel=True, reduce_range=False, QInt8 weights)` of the fp32
        graph (the recipe of docs/export.md's reference measurement), `ref_fp32` = the fp32 graph; both
        in a session with the runtime's options (ORT_ENABLE_ALL, sequential, `threads` intra-op)."""
        key = ("_ref", threads)
        if key in self._refs:
            return self._refs[key]
        variants = fx.manifest.get("models", {}).get("encoder", {}).get("variants", {})
        entry = variants.get("fp32")
        out: dict[str, Any] = {}
        if entry is None:
            self.notes.append("reference encoders not measured: the bundle has no fp32 encoder to build them from")
            self._refs[key] = out
            return out
        import logging
        import tempfile

        import onnx
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic

        from recengine.bundle import open_bundle

        fp32 = open_bundle(self.cfg.bundle).path(entry["path"] if isinstance(entry, dict) else entry)
        if self._ref_dir is None:
            self._ref_dir = tempfile.mkdtemp(prefix="recengine-ref-")
        ref_int8 = Path(self._ref_dir) / "encoder.ref_int8.onnx"
        if not ref_int8.exists():
            root = logging.getLogger()
            level, root.level = root.level, logging.ERROR  # the quantiser's pre-processing advice
            try:
                quantize_dynamic(str(fp32), str(ref_int8), per_channel=True, reduce_range=False,
                                 weight_type=QuantType.QInt8,
                                 extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
            finally:
                root.setLevel(level)
            self.notes.append("ref_int8 = onnxruntime quantize_dynamic(per_channel=True, reduce_range=False, "
                              "weight_type=QInt8) of the bundle's fp32 encoder; ref_fp32 = that fp32 graph; both "
                              "in sessions with the runtime's options, tokenisation by the runtime's tokenizer")
        for name, path in (("ref_fp32", fp32), ("ref_int8", ref_int8)):
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            opts.inter_op_num_threads = 1
            opts.intra_op_num_threads = threads
            opts.log_severity_level = 3
            out[name] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self._refs[key] = out
        return out

    def reference_ratios(self) -> list[dict[str, Any]]:
        """Bundle variant p50 / reference p50 per encode batch (1.0 = as fast as the plain recipe)."""
        index = {(r["stage"], r["variant"], r["batch"]): r for r in self.results if r["stage"] == "encode"}
        out = []
        for (_stage, variant, batch), row in index.items():
            if not variant.startswith("ref_"):
                continue
            mine = index.get(("encode", variant[4:], batch))
            if mine and row["p50_ms"] > 0:
                out.append({"variant": variant[4:], "reference": variant, "batch": batch,
                            "ratio_p50": round(mine["p50_ms"] / row["p50_ms"], 3)})
        return out

    def stage_user_tower(self, fx: Fixture, tower: Any) -> None:
        from .torch_eager import run_module

        max_len = int(fx.manifest["dims"]["max_history"])
        scene_slots, profile_slots = int(fx.manifest["dims"]["scene_slots"]), int(fx.manifest["dims"]["profile_slots"])
        for b in self.progress.bar(self.cfg.batches, "user_tower"):
            mode, threads = _mode(b)
            user_batches = fx.batches_of(len(fx.user_ids), b)
            id_batches = [[fx.user_ids[u] for u in idx] for idx in user_batches]
            for variant in self.cfg.variants:
                stages = self.engine(variant, threads).stages()
                self.record("user_tower", variant, b, lambda i: stages.user_tower(id_batches[i % len(id_batches)]))
            if tower is not None:
                self._set_torch_threads(threads)

                def eager(i: int, batches: list[np.ndarray] = user_batches) -> Any:
                    hist, mask = history_inputs(left_pad([fx.histories[u] for u in batches[i % len(batches)]],
                                                         max_len), fx.item_vectors)
                    n = hist.shape[0]
                    return run_module(tower, {"history": hist, "history_mask": mask,
                                              "scene": np.zeros((n, scene_slots), np.int64),
                                              "profile": np.zeros((n, profile_slots), np.int64)})

                self.record("user_tower", "torch_eager", b, eager)

    def stage_score(self, fx: Fixture, head: Any) -> None:
        from .torch_eager import run_module

        n_cand = int(fx.manifest.get("models", {}).get("fusion", {}).get("n_candidates", 50))
        n_cand = min(n_cand, len(fx.item_ids))
        dims = fx.manifest["dims"]
        for b in self.progress.bar(self.cfg.batches, "score"):
            mode, threads = _mode(b)
            idx_batches = fx.batches_of(len(fx.user_ids), b)
            cands = [fx.rng.choice(len(fx.item_ids), size=(b, n_cand)) for _ in idx_batches]
            for variant in self.cfg.variants:
                stages = self.engine(variant, threads).stages()
                self.record("score", variant, b,
                            lambda i: stages.score(fx.user_vectors[idx_batches[i % 16]], cands[i % 16]),
                            candidates=n_cand)
            if head is not None:
                self._set_torch_threads(threads)

                def eager(i: int) -> Any:
                    rows = cands[i % 16]
                    return run_module(head, {
                        "user": fx.user_vectors[idx_batches[i % 16]], "items": fx.item_vectors[rows],
                        "item_feats": fx.item_feats[rows], "pop_bucket": fx.pop_bucket[rows],
                        "scene": np.zeros((b, int(dims["scene_slots"])), np.int64),
                        "profile": np.zeros((b, int(dims["profile_slots"])), np.int64)})

                self.record("score", "torch_eager", b, eager, candidates=n_cand)

    def stage_recommend(self, fx: Fixture) -> None:
        for b in self.progress.bar(self.cfg.batches, "recommend"):
            mode, threads = _mode(b)
            user_batches = fx.batches_of(len(fx.user_ids), b)
            stored = [[{"user_id": fx.user_ids[u], "k": self.cfg.k} for u in idx] for idx in user_batches]
            with_history = [[{"history": [fx.item_ids[r] for r in fx.histories[u][-20:]], "scene": dict(fx.scene),
                              "k": self.cfg.k} for u in idx] for idx in user_batches]
            for variant in self.cfg.variants:
                engine = self.engine(variant, threads)
                for path, reqs in (("stored", stored), ("history", with_history)):
                    if b == 1:
                        fn = (lambda i, reqs=reqs, engine=engine: engine.recommend(**reqs[i % len(reqs)][0]))
                    else:
                        fn = (lambda i, reqs=reqs, engine=engine: engine.recommend_batch(reqs[i % len(reqs)]))
                    self.record("recommend", f"{variant}/{path}", b, fn, request=path,
                                retrieval=engine.retrieval_backend(b), fusion=bool(engine.uses_fusion))

    def _hnsw_indexes(self, fx: Fixture, matrix: np.ndarray) -> list[tuple[str, Any, float | None]]:
        """(label, hnswlib index, max_norm) of the bundle's item index as stored and served (with
        `--synthetic-items`, the synthetic bundle's, built by `HnswBackend.build` on all cores)."""
        from recengine.bundle import open_bundle
        from recengine.bundle.format import IndexSpec
        from recengine.index_io import open_index

        n = matrix.shape[0]
        out: list[tuple[str, Any, float | None]] = []
        spec = IndexSpec.from_manifest("item", fx.manifest["index"]["item"], fx.item_vectors.shape[1])
        reader = open_bundle(self.cfg.bundle)
        stored = open_index(str(reader.path(spec.path)), spec, self.cfg.efs[0], n)
        out.append(("bundle_mips_augment" if stored.max_norm is not None else "bundle_plain_ip", stored.index,
                    stored.max_norm))
        return out

    def stage_retrieve(self, fx: Fixture) -> None:
        from recengine.retrieval import ExactBackend, HnswBackend

        matrix, label = fx.item_vectors.astype(np.float32), "bundle catalogue"
        if self.cfg.synthetic_items:
            label = f"bundle catalogue + {self.cfg.synthetic_items} synthetic items"
        n = matrix.shape[0]
        alive = np.ones(n, dtype=bool)
        self.progress.message(f"retrieve: {n} items ({label})")
        exact = ExactBackend(matrix, alive)
        queries = fx.user_vectors[fx.rng.choice(len(fx.user_vectors), size=self.cfg.recall_queries,
                                                replace=len(fx.user_vectors) < self.cfg.recall_queries)]
        k = self.cfg.k
        truth = np.concatenate([exact.search(queries[s: s + 64], k)[0] for s in range(0, len(queries), 64)])
        for form, index, max_norm in self._hnsw_indexes(fx, matrix):
            name = form.replace("bundle_", "")
            for ef in self.progress.bar(self.cfg.efs, f"retrieve (hnsw {name}, ef)"):
                backend = HnswBackend(index, ef, n, max_norm)
                found = np.concatenate([backend.search(queries[s: s + 256], k)[0]
                                        for s in range(0, len(queries), 256)])
                recall = float(np.mean([len(np.intersect1d(a, t)) / k for a, t in zip(found, truth)]))
                point: dict[str, Any] = {"index": name, "ef": ef, f"recall@{k}": round(recall, 4), "n_items": n}
                for b in self.cfg.batches:
                    q = [queries[fx.rng.choice(len(queries), size=b)] for _ in range(16)]
                    row = self.record("retrieve", f"hnsw_{name}_ef{ef}", b, lambda i: backend.search(q[i % 16], k),
                                      ef=ef, index=name, n_items=n, **{f"recall@{k}": round(recall, 4)})
                    point[f"p50_ms_batch{b}"] = row["p50_ms"]
                self.recall_curve.append(point)
        from recengine.scan import Scanner

        # the Gemm kernel of the engine's scans at every batch (the engine itself takes it for batches only)
        scanner = Scanner.create(min_queries=1)
        backends: list[tuple[str, Any]] = [("exact_numpy", exact)]
        if scanner.uses_gemm(matrix, 1):
            backends.append(("exact_gemm", ExactBackend(matrix, alive, scanner)))
        try:
            from recengine.retrieval import OnnxExactBackend

            backends.append(("exact_onnx", OnnxExactBackend(matrix, alive, device=self.cfg.device, threads=None)))
        except (ImportError, RecengineError) as exc:
            self.notes.append(f"exact_onnx retrieval not measured: {exc}")
        for name, backend in backends:
            for b in self.progress.bar(self.cfg.batches, f"retrieve ({name})"):
                if b * n > MAX_EXACT_SCORES:
                    self.notes.append(f"{name} not timed at batch {b}: {b} x {n} scores exceed the memory cap")
                    continue
                q = [queries[fx.rng.choice(len(queries), size=b)] for _ in range(16)]
                self.record("retrieve", name, b, lambda i, be=backend: be.search(q[i % 16], k), n_items=n,
                            **{f"recall@{k}": 1.0})

    def stage_e2e(self, fx: Fixture) -> None:
        """Every serving call end to end, batch 1, one thread, through `Engine` (as a server calls it):
        recommend by stored user and by history (fusion off and on), with filters, with long_tail and
        diversity; similar_items; search; add_items (on its own engine: it grows the catalogue). Then
        `Engine.open` time and RSS in fresh processes (`synthetic.probe_open`)."""
        from .synthetic import probe_open

        k, n = self.cfg.k, len(fx.item_ids)
        users = fx.batches_of(len(fx.user_ids), 1, count=64)
        user_ids = [fx.user_ids[int(u[0])] for u in users]
        hist = [[fx.item_ids[r] for r in fx.histories[int(u[0])][-20:]] for u in users]
        items = [fx.item_ids[int(i[0])] for i in fx.batches_of(n, 1, count=64)]
        # search queries: the first line of random item texts (a title), cut to its first words
        queries = [" ".join(fx.texts[int(i[0])].splitlines()[0].split()[:6]) or "a film"
                   for i in fx.batches_of(n, 1, count=64)]
        attr_cols = set(fx.manifest.get("data", {}).get("item_attr_columns", []))
        filters: dict[str, dict[str, Any]] = {}
        if {"attr_lang", "attr_year"} <= attr_cols:
            filters = {"filter_lang": {"attr_lang": "fr"},  # ~10 % of the items pass
                       "filter_rare": {"attr_lang": "pt", "attr_year": {"gte": 2015}}}  # ~0.4 %
        else:
            self.notes.append("e2e: the bundle has no attr_lang/attr_year attributes: filtered recommend not "
                              "timed (synthetic bundles add them)")
        scene = dict(fx.scene)

        def at(seq: list[Any], i: int) -> Any:
            return seq[i % len(seq)]

        def one(variant: str) -> None:
            base = self.engine(variant, 1)
            # the bundle's default is one of the two: reuse that engine (one engine less in memory at 1M items)
            plain = base if not base.uses_fusion else self.engine(variant, 1, rescore=False)
            fused = base if base.uses_fusion else self.engine(variant, 1, rescore=True)
            extra = {"n_items": n, "retrieval": base.retrieval_backend(1),
                     "ef": int(base.manifest["index"]["item"].get("ef_search", 0))}
            cases: list[tuple[str, Any, Callable[[int], Any], bool]] = [
                ("user", base, lambda i: base.recommend(user_id=at(user_ids, i), k=k), bool(base.uses_fusion)),
                ("user_nofusion", plain, lambda i: plain.recommend(user_id=at(user_ids, i), k=k), False),
                ("user_fusion", fused, lambda i: fused.recommend(user_id=at(user_ids, i), k=k), True),
                ("history_nofusion", plain,
                 lambda i: plain.recommend(history=at(hist, i), scene=scene, k=k), False),
                ("history_fusion", fused,
                 lambda i: fused.recommend(history=at(hist, i), scene=scene, k=k), True),
                ("user_long_tail", base,
                 lambda i: base.recommend(user_id=at(user_ids, i), k=k, long_tail=0.5), bool(base.uses_fusion)),
                ("user_diversity", base,
                 lambda i: base.recommend(user_id=at(user_ids, i), k=k, diversity=0.5), bool(base.uses_fusion)),
            ]
            for name, flt in filters.items():
                cases.append((f"user_{name}", base,
                              lambda i, flt=flt: base.recommend(user_id=at(user_ids, i), k=k, filter=flt),
                              bool(base.uses_fusion)))
            for case, _engine, fn, fusion in cases:
                self.record("e2e", f"{variant}/recommend_{case}", 1, fn, call="recommend", fusion=fusion, **extra)
            self.record("e2e", f"{variant}/similar_items", 1, lambda i: base.similar_items(at(items, i), k=k),
                        call="similar_items", **extra)
            self.record("e2e", f"{variant}/search", 1, lambda i: base.search(at(queries, i), k=k), call="search",
                        **{**extra, "ef": int(base.manifest["index"].get("text", {}).get("ef_search", 0))})
            from recengine.engine import Engine

            grower = Engine.open(self.cfg.bundle, device=self.cfg.device, threads=1, variant=variant)
            grower.warmup()
            tag = f"bench-{variant}-{os.getpid()}"
            self.record("e2e", f"{variant}/add_items", 1,
                        lambda i, g=grower: g.add_items([{"item_id": f"{tag}-{i}", "text": f"{at(queries, i)} #{i}"}]),
                        call="add_items", item_variant=grower.item_variant, **extra)

        import gc

        for variant in self.progress.bar(self.cfg.variants, "e2e"):
            one(variant)
            gc.collect()  # the add_items engine's catalogue and indexes (GBs at 1M items) go before the probes
        variant = self.cfg.variants[0]
        self.progress.message(f"e2e: Engine.open and RSS ({self.cfg.open_runs} fresh processes per bundle)")
        opened: dict[str, Any] = {"variant": variant, "threads": 1,
                                  "served": probe_open(self.cfg.bundle, variant, 1, self.cfg.open_runs)}
        if self.cfg.synthetic_items:
            opened["source"] = probe_open(self.source_bundle, variant, 1, self.cfg.open_runs)
            extra_m = self.cfg.synthetic_items / 1e6
            srv, src = opened["served"], opened["source"]
            opened["per_million_items"] = {
                key: round((srv["median"][key] - src["median"][key]) / extra_m, 2)
                for key in ("open_s", "rss_mib_after_open", "rss_mib_steady", "rss_mib_peak")
                if key in srv["median"] and key in src["median"]}
            opened["per_million_items"]["bundle_mib"] = round(
                (srv["bundle_bytes"] - src["bundle_bytes"]) / 2**20 / extra_m, 1)
        self.scale["open"] = opened

    # ------------------------------------------------------------------ run
    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        started, machine = utc_now(), machine_info()
        from .quality import instruction_sets

        machine.setdefault("instruction_sets", instruction_sets())
        t_start = time.perf_counter()
        with contextlib.ExitStack() as stack:
            stack.callback(lambda: self._ref_dir and __import__("shutil").rmtree(self._ref_dir, ignore_errors=True))
            if cfg.synthetic_items:
                self._build_synthetic(stack)
            return self._run(started, machine, t_start)

    def _build_synthetic(self, stack: contextlib.ExitStack) -> None:
        """Grow the bundle into a full synthetic one (`synthetic.build_synthetic_bundle`) and serve that."""
        import tempfile

        from .synthetic import build_synthetic_bundle

        cfg = self.cfg
        if cfg.workdir is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="recengine-synthetic-")))
        else:
            root = Path(cfg.workdir)
            root.mkdir(parents=True, exist_ok=True)
        out = root / f"synthetic-{cfg.synthetic_items}"
        self.progress.message(f"building a synthetic bundle: {cfg.bundle} + {cfg.synthetic_items} items -> {out}")
        efs = tuple(sorted(set(cfg.efs) | {max(cfg.efs) * 2, max(cfg.efs) * 4}))
        result = build_synthetic_bundle(cfg.bundle, out, cfg.synthetic_items, seed=cfg.seed, M=cfg.index_M,
                                        ef_construction=cfg.index_ef_construction, efs=efs,
                                        min_recall=cfg.min_recall, k=cfg.k, force=True, progress=self.progress)
        self.scale["synthetic"] = result.as_dict()
        self.scale["load_average_after_build"] = load_average()
        self.notes.append(
            f"synthetic bundle: {result.n_real_items} real + {cfg.synthetic_items} synthetic items, "
            f"{result.n_users} users, {result.n_interactions} interactions, built in "
            f"{result.timings['total']:.0f} s (HNSW M={result.index['item']['M']}, ef_construction="
            f"{result.index['item']['ef_construction']}, on {result.index['item']['threads']} threads); served at "
            f"ef {result.index['item']['ef_search']} (item) / {result.index.get('text', {}).get('ef_search')} "
            f"(text), the smallest swept ef with recall@{cfg.k} >= {cfg.min_recall}")
        self.cfg = dataclasses.replace(cfg, bundle=result.path)

    def _run(self, started: str, machine: dict[str, Any], t_start: float) -> dict[str, Any]:
        cfg = self.cfg
        fx = Fixture.load(cfg.bundle, cfg.seed)
        probe = self.engine(cfg.variants[0], 1)  # fails fast (DeviceError) when the device is not usable
        provider = probe.provider
        torch_encoder = tower = head = None
        if cfg.torch_baseline:
            torch_encoder, tower, head = self._torch_baselines(fx)
        runners: dict[str, Callable[[], None]] = {
            "tokenize": lambda: self.stage_tokenize(fx),
            "encode": lambda: self.stage_encode(fx, torch_encoder),
            "user_tower": lambda: self.stage_user_tower(fx, tower),
            "retrieve": lambda: self.stage_retrieve(fx),
            "score": lambda: self.stage_score(fx, head),
            "recommend": lambda: self.stage_recommend(fx),
            "e2e": lambda: self.stage_e2e(fx),
        }
        for stage in self.progress.bar(cfg.stages, "stages"):
            runners[stage]()
        machine["load_average_at_end"] = load_average()
        return self._report(fx, started, machine, provider, time.perf_counter() - t_start)

    def _torch_baselines(self, fx: Fixture) -> tuple[Any, Any, Any]:
        from recengine.errors import DependencyError

        from .torch_eager import TorchEncoder, encoder_source_dir, fusion_module, user_tower_module

        try:
            import torch  # noqa: F401
        except ImportError:
            self.notes.append("torch-eager baseline not measured: torch (the export extra) is not installed")
            return None, None, None
        encoder = None
        source = encoder_source_dir(fx.manifest, self.cfg.torch_encoder)
        if source is None:
            self.notes.append("torch-eager encoder baseline not measured: the bundle's encoder source directory "
                              "no longer exists (pass --torch-encoder DIR)")
        else:
            try:
                max_len = int(fx.manifest["tokenizer"]["max_length"])
                encoder = TorchEncoder.load(source, max_len)
                self.notes.append(f"torch_eager encode = {source} (AutoModel + mean pooling, HF tokenizer, "
                                  f"max_length {max_len}) in torch eager: the same architecture as the bundle's "
                                  "encoder (LoRA merged), tokenisation included like the runtime's encode")
            except (RecengineError, OSError, ValueError) as exc:
                self.notes.append(f"torch-eager encoder baseline not measured: {exc}")
        tower = head = None
        try:
            tower, head = user_tower_module(fx.manifest), fusion_module(fx.manifest)
            self.notes.append("torch_eager user_tower/score = recengine's torch UserTower/FusionHead rebuilt with the "
                              "bundle's dimensions and random weights (weights live only in ONNX; latency does not "
                              "depend on weight values)")
        except (DependencyError, ImportError, KeyError, TypeError) as exc:
            self.notes.append(f"torch-eager user_tower/fusion baseline not measured: {exc}")
        return encoder, tower, head

    # ------------------------------------------------------------------ report
    def speedups(self) -> list[dict[str, Any]]:
        """torch_eager p50 / variant p50 (and p99) for every stage and batch measured both ways."""
        out = []
        index = {(r["stage"], r["variant"], r["batch"]): r for r in self.results}
        for (stage, variant, batch), row in index.items():
            if variant != "torch_eager":
                continue
            for other in self.cfg.variants:
                mine = index.get((stage, other, batch))
                if mine and mine["p50_ms"] > 0:
                    out.append({"stage": stage, "variant": other, "batch": batch, "baseline": "torch_eager",
                                "speedup_p50": round(row["p50_ms"] / mine["p50_ms"], 2),
                                "speedup_p99": (round(row["p99_ms"] / mine["p99_ms"], 2) if mine["p99_ms"] > 0
                                                else None)})
        return out

    def targets(self, speedups: list[dict[str, Any]]) -> dict[str, Any]:
        enc = next((s for s in speedups if s["stage"] == "encode" and s["variant"] == "int8" and s["batch"] == 1), None)
        rec = next((r for r in self.results if r["stage"] == "recommend" and r["variant"] == "int8/stored"
                    and r["batch"] == 1), None)
        out: dict[str, Any] = {}
        if self.cfg.device == "cpu":
            out["int8_encoder_speedup_batch1"] = {
                "target": ENCODER_SPEEDUP_TARGET, "value": enc["speedup_p50"] if enc else None,
                "met": bool(enc and enc["speedup_p50"] >= ENCODER_SPEEDUP_TARGET)}
            out["recommend_p99_ms_batch1"] = {
                "target": RECOMMEND_P99_TARGET_MS, "value": rec["p99_ms"] if rec else None,
                "met": bool(rec and rec["p99_ms"] <= RECOMMEND_P99_TARGET_MS),
                "variant": "int8/stored"}
        return out

    def _report(self, fx: Fixture, started: str, machine: dict[str, Any], provider: str,
                seconds: float) -> dict[str, Any]:
        speedups = self.speedups()
        targets = self.targets(speedups)
        if "recommend_p99_ms_batch1" in targets:
            targets["recommend_p99_ms_batch1"]["n_items"] = len(fx.item_ids)
        variant = self.cfg.variants[0]
        e2e = next((r for r in self.results if r["stage"] == "e2e" and r["variant"] == f"{variant}/recommend_user"),
                   None)
        if e2e is not None and self.cfg.device == "cpu":
            targets["e2e_recommend_user_p99_ms"] = {
                "target": SCALE_RECOMMEND_P99_TARGET_MS, "value": e2e["p99_ms"],
                "met": e2e["p99_ms"] <= SCALE_RECOMMEND_P99_TARGET_MS, "n_items": len(fx.item_ids),
                "variant": f"{variant}/recommend_user", "ef": e2e.get("ef"),
                "applies_at": "1M items (issue 14); measured at n_items"}
        opened = self.scale.get("open", {}).get("served", {}).get("median", {})
        if "open_s" in opened:
            targets["engine_open_s"] = {"target": SCALE_OPEN_TARGET_S, "value": opened["open_s"],
                                        "met": opened["open_s"] <= SCALE_OPEN_TARGET_S, "n_items": len(fx.item_ids),
                                        "applies_at": "1M items (issue 14); measured at n_items"}
        m = fx.manifest
        return {
            "schema": "recengine-bench-latency/1",
            "kind": "latency",
            "created_at": started,
            "command": self.cfg.command,
            "device": self.cfg.device,
            "provider": provider,
            "machine": machine,
            "bundle": {"path": str(self.cfg.bundle), "source": str(self.source_bundle),
                       "data": m.get("data", {}).get("name"),
                       "n_items": len(fx.item_ids), "n_users": len(fx.user_ids), "dims": m.get("dims"),
                       "encoder": m.get("models", {}).get("encoder", {}).get("source", {}).get("name"),
                       "fusion_by_default": m.get("models", {}).get("fusion", {}).get("use_by_default")},
            "config": {"batches": list(self.cfg.batches), "requests": self.cfg.budget.requests,
                       "duration_s": self.cfg.budget.duration, "warmup": self.cfg.budget.warmup,
                       "k": self.cfg.k, "efs": list(self.cfg.efs), "synthetic_items": self.cfg.synthetic_items,
                       "variants": list(self.cfg.variants), "stages": list(self.cfg.stages)},
            "results": self.results,
            "speedups": speedups,
            "recall_curve": self.recall_curve,
            "targets": targets,
            "scale": self.scale,
            "reference": self.reference_ratios(),
            "notes": self.notes,
            "seconds": round(seconds, 1),
            "samples_ms": self.samples,
        }


def pad_synthetic(matrix: np.ndarray, n_extra: int, rng: np.random.Generator) -> np.ndarray:
    """Append `n_extra` Gaussian vectors with the real vectors' per-dimension mean and std."""
    mean, std = matrix.mean(0), matrix.std(0) + 1e-6
    extra = (rng.standard_normal((n_extra, matrix.shape[1]), dtype=np.float32) * std + mean).astype(np.float32)
    return np.ascontiguousarray(np.concatenate([matrix, extra]))


def scale_markdown(report: dict[str, Any]) -> str:
    """Markdown of the end-to-end part of a report: the synthetic bundle, every call at batch 1, open time,
    RSS and memory per million items (the rest of the report is `report.latency_markdown`)."""
    from .report import _machine_line

    def f(x: Any, nd: int = 3) -> str:
        return "-" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))

    scale, b = report.get("scale", {}), report["bundle"]
    out = ["# recengine end to end at scale", "", f"- date: {report['created_at']}",
           f"- machine: {_machine_line(report)}", f"- command: `{report.get('command') or '(python API)'}`",
           f"- served bundle: {b['n_items']} items, {b['n_users']} users, dims {b.get('dims')}, "
           f"fusion by default: {b.get('fusion_by_default')} (source {b.get('source')})", ""]
    syn = scale.get("synthetic")
    if syn:
        out += ["## Synthetic bundle", "",
                f"{syn['n_real_items']} real + {syn['n_items'] - syn['n_real_items']} synthetic items, "
                f"{syn['n_users']} users ({syn['n_real_users']} real), {syn['n_interactions']} interactions, "
                f"{syn['bundle_bytes'] / 2**20:.0f} MiB on disk; build seconds {syn['timings_s']} "
                f"(load average after the build {scale.get('load_average_after_build')}).", "",
                "| index | M | ef_construction | build s (threads) | ef served "
                "| recall@10 by ef (ms/query, 1 thread) |",
                "|---|---|---|---|---|---|"]
        for name, ix in syn.get("index", {}).items():
            sweep = ", ".join(f"{p['ef']}: {p.get('recall@10')} ({p['ms_per_query_1thread']})" for p in ix["sweep"])
            out.append(f"| {name} | {ix['M']} | {ix['ef_construction']} | {ix['build_s']} ({ix['threads']}) | "
                       f"{ix['ef_search']} | {sweep} |")
        out.append("")
    rows = [r for r in report["results"] if r["stage"] == "e2e"]
    if rows:
        out += ["## Every call, batch 1, one thread", "",
                "| call | p50 ms | p95 ms | p99 ms | retrieval | ef | fusion | calls |",
                "|---|---|---|---|---|---|---|---|"]
        out += [f"| {r['variant']} | {f(r['p50_ms'])} | {f(r['p95_ms'])} | {f(r['p99_ms'])} | "
                f"{r.get('retrieval', '-')} | {r.get('ef', '-')} | {r.get('fusion', '-')} | {r['n_requests']} |"
                for r in rows]
        out.append("")
    opened = scale.get("open")
    if opened:
        out += [f"## Engine.open and memory ({opened['variant']}, {opened['threads']} thread, median of "
                f"{len(opened['served']['runs'])} fresh processes)", "",
                "| bundle | MiB on disk | open s | RSS after open MiB | steady RSS MiB | peak RSS MiB |",
                "|---|---|---|---|---|---|"]
        for name in ("source", "served"):
            if name in opened:
                m = opened[name]["median"]
                out.append(f"| {name} ({opened[name]['bundle']}) | {opened[name]['bundle_bytes'] / 2**20:.1f} | "
                           f"{f(m.get('open_s'))} | {f(m.get('rss_mib_after_open'), 1)} | "
                           f"{f(m.get('rss_mib_steady'), 1)} | {f(m.get('rss_mib_peak'), 1)} |")
        per = opened.get("per_million_items")
        if per:
            out += ["", "Per million items added (served minus source, scaled): "
                    + ", ".join(f"{k} {v}" for k, v in per.items())]
        out.append("")
    targets = {k: v for k, v in report.get("targets", {}).items() if k in ("e2e_recommend_user_p99_ms",
                                                                           "engine_open_s")}
    if targets:
        out += ["## Targets (issue 14: at 1M items)", ""]
        out += [f"- {k}: {f(t['value'])} at {t['n_items']} items (target {t['target']}) — "
                f"**{'met' if t['met'] else 'NOT met'}**" for k, t in targets.items()]
        out.append("")
    if report.get("notes"):
        out += ["## Notes", ""] + [f"- {n}" for n in report["notes"]] + [""]
    return "\n".join(out)


def run_latency(cfg: LatencyConfig) -> dict[str, Any]:
    """Run the latency bench and return its report (JSON-able dict)."""
    return LatencyRun(cfg).run()


__all__ = ["LatencyConfig", "LatencyRun", "run_latency", "scale_markdown", "STAGES", "DEFAULT_STAGES", "VARIANTS",
           "Budget"]
