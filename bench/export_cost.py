"""`recengine bench export`: the export's cost curve, seconds and peak memory per stage vs data size.

For each size (items, interactions) the bench writes a synthetic data set in the data contract
(`export_data.write_synthetic_data`), runs `run_export` on it in a fresh child process with short run
budgets (the quick profile, tiny encoder, few epochs by default), and records per stage:

- seconds: the export's own record (`manifest.timings`: exact);
- peak RSS: a sampler thread in the child reads the process's peak RSS (VmHWM) every `interval` seconds
  and resets it (`/proc/self/clear_refs` = 5, Linux), so each sample holds the peak since the previous one,
  spikes included. A sample belongs to the stage whose time window holds it: pipeline stages by the
  windows `run_export(on_stage=...)` reports (end time, duration); inside `fit`, whose stages are reported
  together when it returns, by the function the main thread is running (`FIT_FUNCTIONS`). `text_encode`
  (the catalogue encoding inside `text_align`) is reported on its own from the samples;
- `untimed`: samples outside every timed stage (vocabularies, queries, manifest, commit).

Then each stage's growth exponent is fitted (least squares in log-log: seconds ~ size^e; with items and
interactions grown together one exponent, with them varied independently one per axis), and stages that
grow worse than linearly and matter are flagged. Optionally (`--rate-bundle`) the encoding rate of a
bundle's real encoder (ONNX fp32/int8 as served, and torch as the export encodes) is measured on short
texts, with the time for 1M texts extrapolated (and labelled so).

Report JSON (`schema` = "recengine-bench-export/1"): `kind` "export", `created_at`, `command`, `machine`
(+ `instruction_sets`, `load_average_at_end`), `config` {profile, encoder, overrides, threads, interval_s,
sizes}, `runs[]` {n_items, n_users, n_interactions, mean_text_words, data_bytes, generate_s, total_s,
total_cpu_s, baseline_rss_mib, peak_rss_mib, bundle_bytes, n_samples, stages {name: {seconds, sampled_seconds,
cpu_seconds, peak_rss_mib, peak_rss_delta_mib, source ("manifest" | "sampled")}}}, `growth` {stage:
{seconds {exponent, items, interactions, r2, n_points}, cpu_seconds {...}, memory {...}, seconds_at_largest,
share_at_largest, super_linear}}, `encoder_rate` {...} (optional), `notes` [str].
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recengine.errors import RequestError

from .export_data import SyntheticSpec, write_synthetic_data

SCHEMA = "recengine-bench-export/1"
FIT_FUNCTIONS = {
    "train_lightgcn": "graph",
    "encode_texts": "text_encode",
    "encode_catalogue": "text_encode",
    "train_text_tower": "text_align",
    "make_windows": "user_tower",
    "train_user_tower": "user_tower",
    "fold_text_scale": "user_tower",
    "fit_cold": "cold_generator",
    "fusion_train_data": "fusion",
    "train_fusion": "fusion",
}
"""Inside `fit` (whose stage times reach `on_stage` only when it returns), the innermost of these functions on
the main thread's stack names the stage a memory sample belongs to; elsewhere in `fit`: `fit_other`."""
FIT_STAGES = frozenset(FIT_FUNCTIONS.values())
SHORT_BUDGET = {"graph.epochs": 2, "user.epochs": 2, "user.patience": 2, "fusion.epochs": 1, "encoder.epochs": 1}
"""Default run budget: few epochs, so the curve shows the cost of each stage's work per epoch, not how long
early stopping happened to take (`--set` overrides any of them)."""
SUPER_LINEAR = 1.15
"""A stage whose fitted exponent exceeds this (and which matters: >= 2 % of the largest run's total and
>= 0.5 s) is flagged as super-linear; below it the difference from 1 is within run-to-run noise."""
MIB = 1024 * 1024


@dataclass
class ExportCostConfig:
    """What `run_export_cost` measures."""

    sizes: tuple[tuple[int, int], ...] = ((2_000, 20_000), (10_000, 100_000), (50_000, 500_000))
    """(items, interactions) per run."""
    profile: str = "quick"
    encoder: str | None = None
    """None = the profile's encoder (quick: tiny test BERT); "minilm" = the packaged all-MiniLM-L6-v2; or a
    local Hugging Face directory."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Export config overrides on top of `SHORT_BUDGET`."""
    threads: int = 1
    interval: float = 0.02
    seed: int = 0
    mean_history: int = 20
    min_words: int = 12
    max_words: int = 40
    workdir: Path | None = None
    rate_bundle: Path | None = None
    rate_texts: int = 0
    rate_torch_texts: int = 0
    rate_threads: int = 2
    command: str | None = None
    quiet: bool = False

    def validate(self) -> None:
        if not self.sizes:
            raise RequestError("bench export: no sizes given")
        for items, inter in self.sizes:
            if items < 20 or inter < 30:
                raise RequestError(f"bench export: size {items} items / {inter} interactions is too small "
                                   "(>= 20 items, >= 30 interactions)")
        if self.interval <= 0:
            raise RequestError("bench export: --interval must be > 0")
        if self.rate_texts and self.rate_bundle is None:
            raise RequestError("bench export: --rate-texts needs --rate-bundle (a bundle with the encoder to time)")


# ---------------------------------------------------------------------------------------------- child side
def _status_kib() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process in KiB (Linux; (0, 0) elsewhere)."""
    rss = hwm = 0
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


def _reset_peak() -> bool:
    """Reset this process's peak RSS to its current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def fit_stage_of(frame: Any) -> str | None:
    """The fit stage a stack (innermost `frame`) is in: the innermost `FIT_FUNCTIONS` entry; `fit_other`
    inside `fit` otherwise; None outside `fit`."""
    names = []
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    for name in names:
        if name in FIT_FUNCTIONS:
            return FIT_FUNCTIONS[name]
    return "fit_other" if "fit" in names else None


class StageSampler:
    """A daemon thread sampling (time, RSS, peak RSS since the last sample, fit stage of the main thread, process
    CPU seconds): the CPU time per stage is what a shared machine distorts least (the export runs its torch and
    ONNX Runtime work on `threads` threads, so CPU seconds are its work, wall seconds its work plus waiting)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float, float, str | None, float]] = []
        self.can_reset = _reset_peak()
        self._main = threading.main_thread().ident
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stage-sampler", daemon=True)

    def start(self) -> StageSampler:
        self.sample()
        self._thread.start()
        return self

    def sample(self) -> None:
        rss, hwm = _status_kib()
        if self.can_reset:
            _reset_peak()
        else:
            hwm = rss
        frame = sys._current_frames().get(self._main)
        self.samples.append((time.perf_counter(), rss / 1024, hwm / 1024, fit_stage_of(frame), time.process_time()))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def attribute(samples: list[tuple[float, float, float, str | None, float]], events: list[tuple[str, float, float]],
              interval: float) -> dict[str, dict[str, float]]:
    """Per stage: sampled seconds (samples x interval), CPU seconds (the process CPU time spent between each of
    its samples and the previous sample) and peak RSS (MiB) of the samples it holds.

    `events` = (name, seconds, perf_counter when reported): a pipeline stage's window is [end - seconds, end];
    fit stages (reported together) and `total` are placed by the samples' fit stage instead."""
    windows = [(name, end - secs, end) for name, secs, end in events if name not in FIT_STAGES and name != "total"]
    out: dict[str, dict[str, float]] = {}
    cpu_prev = samples[0][4] if samples else 0.0
    for t, _rss, peak, fit_stage, cpu in samples:
        stage = next((name for name, lo, hi in windows if lo <= t <= hi), None) or fit_stage or "untimed"
        entry = out.setdefault(stage, {"sampled_seconds": 0.0, "cpu_seconds": 0.0, "peak_rss_mib": 0.0})
        entry["sampled_seconds"] += interval
        entry["cpu_seconds"] += cpu - cpu_prev
        entry["peak_rss_mib"] = max(entry["peak_rss_mib"], peak)
        cpu_prev = cpu
    return {k: {"sampled_seconds": round(v["sampled_seconds"], 3), "cpu_seconds": round(v["cpu_seconds"], 3),
                "peak_rss_mib": round(v["peak_rss_mib"], 1)} for k, v in out.items()}


def export_config(profile: str, encoder: str | None, overrides: dict[str, Any], threads: int) -> Any:
    """The export configuration of one bench run: profile + short run budget + overrides, quiet."""
    from recengine.export import ExportConfig

    values: dict[str, Any] = {**SHORT_BUDGET, "threads": threads, **overrides}
    if encoder is not None:
        path = encoder
        if encoder == "minilm":
            from .textenc import default_encoder_dir

            path = str(default_encoder_dir())
        values.update({"encoder.path": str(Path(path).resolve()), "encoder.tiny": False})
    return ExportConfig.from_profile(profile).override(values, source="bench export")


def child_export(job: dict[str, Any]) -> dict[str, Any]:
    """Run one export in this process with the sampler on; returns the run's record."""
    import torch  # noqa: F401  (imported before the baseline: it is part of every export's footprint)

    from recengine.export.pipeline import run_export

    cfg = export_config(job["profile"], job["encoder"], job["overrides"], job["threads"])
    cfg.quiet = bool(job.get("quiet", True))
    events: list[tuple[str, float, float]] = []
    baseline = _status_kib()[0] / 1024
    sampler = StageSampler(job["interval"]).start()
    t0 = time.perf_counter()
    bundle = run_export(job["data"], job["out"], cfg, force=True,
                        on_stage=lambda name, secs: events.append((name, secs, time.perf_counter())))
    wall = time.perf_counter() - t0
    sampler.stop()
    manifest = json.loads((Path(bundle) / "manifest.json").read_text(encoding="utf-8"))
    sampled = attribute(sampler.samples, events, job["interval"])
    timings = manifest["timings"]
    stages: dict[str, dict[str, Any]] = {}
    names = [n for n in timings if n != "total"]
    if "text_align" in names:
        names.insert(names.index("text_align") + 1, "text_encode")
    for name in names + sorted(set(sampled) - set(names)):
        s = sampled.get(name, {})
        peak = s.get("peak_rss_mib")
        stages[name] = {
            "seconds": float(timings[name]) if name in timings else s.get("sampled_seconds", 0.0),
            "source": "manifest" if name in timings else "sampled",
            "sampled_seconds": s.get("sampled_seconds", 0.0),
            "cpu_seconds": s.get("cpu_seconds", 0.0),
            "peak_rss_mib": peak,
            "peak_rss_delta_mib": None if peak is None else round(peak - baseline, 1),
        }
    timed = sum(float(v) for k, v in timings.items() if k != "total")
    stages.setdefault("untimed", {"seconds": 0.0, "source": "sampled", "sampled_seconds": 0.0, "cpu_seconds": 0.0,
                                  "peak_rss_mib": None, "peak_rss_delta_mib": None})
    stages["untimed"]["seconds"] = round(max(0.0, wall - timed), 3)
    stages["untimed"]["source"] = "wall - timed stages"
    peaks = [p for _, _, p, _, _ in sampler.samples]
    cpu = sampler.samples[-1][4] - sampler.samples[0][4] if sampler.samples else 0.0
    return {"total_s": round(wall, 3), "total_cpu_s": round(cpu, 3),
            "manifest_total_s": float(timings.get("total", wall)),
            "baseline_rss_mib": round(baseline, 1), "peak_rss_mib": round(max(peaks, default=baseline), 1),
            "n_samples": len(sampler.samples), "peak_reset": sampler.can_reset, "stages": stages,
            "bundle_bytes": sum(p.stat().st_size for p in Path(bundle).rglob("*") if p.is_file()),
            "torch_threads": cfg.threads, "encoder": manifest["models"]["encoder"]["source"].get("name")}


def child_rate(job: dict[str, Any]) -> dict[str, Any]:
    """Encoding rate of one engine (`onnx_<variant>` from a bundle, or `torch` as the export encodes)."""
    texts = short_texts(job["n"], job["seed"])
    threads = job["threads"]
    cpu0, t0 = time.process_time(), time.perf_counter()
    if job["engine"] == "torch":
        import torch

        from recengine.export.encoder import (
            TextTowerConfig,
            build_text_tower,
            encode_texts,
            load_tokenizer,
            resolve_encoder,
        )

        torch.set_num_threads(threads)
        source = resolve_encoder(job.get("encoder"))
        tokenizer, info = load_tokenizer(source, max_length=job["max_length"])
        tower = build_text_tower(source, TextTowerConfig(finetune="none", item_dim=64))
        encode_texts(tower, tokenizer, texts[:64], batch_size=64)  # warm-up
        cpu0, t0 = time.process_time(), time.perf_counter()
        encode_texts(tower, tokenizer, texts, batch_size=128, pad_id=info.pad_id)
        lengths = [len(e.ids) for e in tokenizer.encode_batch(texts)]
    else:
        from recengine.bundle import BundleReader
        from recengine.models import ModelSet
        from recengine.sessions import SessionConfig

        variant = job["engine"].removeprefix("onnx_")
        models = ModelSet.load(BundleReader(job["bundle"]), "cpu", SessionConfig(device="cpu", threads=threads),
                               variant)
        models.encode(texts[:64])  # warm-up
        cpu0, t0 = time.process_time(), time.perf_counter()
        models.encode(texts, batch_size=64)
        lengths = models.tokenizer.lengths(texts).tolist()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"engine": job["engine"], "n_texts": len(texts), "threads": threads, "mean_tokens": float(np.mean(lengths)),
            "seconds": round(wall, 2), "texts_per_s": round(len(texts) / wall, 1),
            "texts_per_cpu_s": round(len(texts) / max(cpu, 1e-9), 1),
            "extrapolated_1m_texts_s": round(1_000_000 * wall / len(texts), 0),
            "rss_mib": round(_status_kib()[1] / 1024)}


def short_texts(n: int, seed: int) -> list[str]:
    """`n` short item texts (title + genres, ~10-16 tokens), in the data contract's `column: value` form."""
    from .export_data import CATEGORY_NAMES, pseudo_words

    rng = np.random.default_rng(seed)
    words = np.array(pseudo_words(5000), dtype=object)
    n_words = rng.integers(2, 6, n)
    genre = np.array(CATEGORY_NAMES, dtype=object)[rng.integers(0, len(CATEGORY_NAMES), n)]
    return [f"title: {' '.join(words[rng.integers(0, 5000, k)]).capitalize()}\ngenres: {g}"
            for k, g in zip(n_words, genre)]


def _run_child(job: dict[str, Any], quiet: bool) -> dict[str, Any]:
    """Run `job` in a fresh interpreter (each export and each engine measured alone: no shared allocator or
    thread-pool state between runs); returns its result."""
    with tempfile.TemporaryDirectory(prefix="recengine-bench-export-") as tmp:
        path = Path(tmp) / "job.json"
        result = Path(tmp) / "result.json"
        path.write_text(json.dumps({**job, "result": str(result)}), encoding="utf-8")
        env = {**os.environ, "OMP_NUM_THREADS": str(job.get("threads", 1))}
        proc = subprocess.run([sys.executable, "-m", "recengine.bench.export_cost", str(path)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE if quiet else None, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or "").strip().splitlines()[-1:] if quiet else []
            raise RequestError(f"bench export: the {job['task']} child failed (exit {proc.returncode})"
                               + (f": {tail[0]}" if tail else ""))
        return json.loads(result.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------- growth fit
def growth_exponents(items: list[float], interactions: list[float], values: list[float]) -> dict[str, Any]:
    """Least-squares exponents of `values ~ items^a * interactions^b` (log-log) over the points with a value > 0.

    Items and interactions grown in proportion (collinear in log space): one `exponent` (per doubling of both)
    and `items`/`interactions` None. Only one varying: its exponent (and `exponent` = it). Both varying
    independently (>= 3 points): both, and `exponent` = a + b (the cost of growing both together)."""
    pts = [(i, n, v) for i, n, v in zip(items, interactions, values) if v is not None and v > 0]
    out: dict[str, Any] = {"exponent": None, "items": None, "interactions": None, "r2": None, "n_points": len(pts)}
    if len(pts) < 2:
        return out
    li, ln, lv = (np.log(np.array([p[k] for p in pts], dtype=np.float64)) for k in range(3))
    ci, cn = li - li.mean(), ln - ln.mean()
    var_i, var_n = float(ci @ ci), float(cn @ cn)
    if var_i < 1e-12 and var_n < 1e-12:
        return out
    collinear = var_i < 1e-12 or var_n < 1e-12 or abs(float(ci @ cn)) ** 2 >= (1 - 1e-6) * var_i * var_n
    if collinear or len(pts) < 3:
        x = cn if var_n >= var_i else ci
        slope = float(x @ (lv - lv.mean()) / (x @ x))
        pred = lv.mean() + slope * x
        out["exponent"] = round(slope, 3)
        if var_i >= 1e-12 and var_n < 1e-12:
            out["items"] = round(slope, 3)
        elif var_n >= 1e-12 and var_i < 1e-12:
            out["interactions"] = round(slope, 3)
    else:
        X = np.stack([np.ones_like(li), li, ln], axis=1)
        coef, *_ = np.linalg.lstsq(X, lv, rcond=None)
        pred = X @ coef
        out.update(items=round(float(coef[1]), 3), interactions=round(float(coef[2]), 3),
                   exponent=round(float(coef[1] + coef[2]), 3))
    ss = float(((lv - lv.mean()) ** 2).sum())
    out["r2"] = round(1.0 - float(((lv - pred) ** 2).sum()) / ss, 4) if ss > 0 else None
    return out


def growth_table(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per stage: exponents of wall seconds, CPU seconds and peak RSS delta, the largest run's seconds and share
    of the total, and the verdict (super-linear: judged on the CPU-seconds exponent where there is one)."""
    items = [r["n_items"] for r in runs]
    inter = [r["n_interactions"] for r in runs]
    largest = max(runs, key=lambda r: (r["n_interactions"], r["n_items"]))
    names: list[str] = []
    for r in runs:
        names += [n for n in r["stages"] if n not in names]
    out: dict[str, dict[str, Any]] = {}
    for name in names + ["total"]:
        if name == "total":
            secs = [r["total_s"] for r in runs]
            cpus = [r.get("total_cpu_s") for r in runs]
            mem = [r["peak_rss_mib"] - r["baseline_rss_mib"] for r in runs]
        else:
            secs = [r["stages"].get(name, {}).get("seconds") for r in runs]
            cpus = [r["stages"].get(name, {}).get("cpu_seconds") for r in runs]
            mem = [r["stages"].get(name, {}).get("peak_rss_delta_mib") for r in runs]
        big = largest["total_s"] if name == "total" else largest["stages"].get(name, {}).get("seconds") or 0.0
        share = big / largest["total_s"] if largest["total_s"] > 0 else 0.0
        seconds = growth_exponents(items, inter, secs)
        cpu = growth_exponents(items, inter, cpus)
        memory = growth_exponents(items, inter, mem)
        basis = cpu if cpu["exponent"] is not None else seconds  # CPU time: what a shared machine distorts least
        worst = max([e for e in (basis["exponent"], basis["items"], basis["interactions"]) if e is not None],
                    default=None)
        out[name] = {"seconds": seconds, "cpu_seconds": cpu, "memory": memory, "seconds_at_largest": round(big, 3),
                     "share_at_largest": round(share, 4),
                     "super_linear": bool(worst is not None and worst > SUPER_LINEAR and share >= 0.02 and big >= 0.5)}
    return out


# ---------------------------------------------------------------------------------------------- parent
def _data_dir(cfg: ExportCostConfig, root: Path, items: int, inter: int) -> tuple[Path, dict[str, Any]]:
    spec = SyntheticSpec(n_items=items, n_interactions=inter, seed=cfg.seed, mean_history=cfg.mean_history,
                         min_words=cfg.min_words, max_words=cfg.max_words)
    folder = root / f"data-{items}-{inter}"
    stamp = folder / "spec.json"
    if stamp.is_file() and json.loads(stamp.read_text(encoding="utf-8")).get("spec") == asdict(spec):
        return folder, json.loads(stamp.read_text(encoding="utf-8"))
    info = write_synthetic_data(spec, folder)
    stamp.write_text(json.dumps(info), encoding="utf-8")
    return folder, info


def run_export_cost(cfg: ExportCostConfig) -> dict[str, Any]:
    """Generate, export and measure every size of `cfg`; fit the growth; optionally time the encoder."""
    from .machine import load_average, machine_info, utc_now
    from .quality import instruction_sets

    cfg.validate()
    export_config(cfg.profile, cfg.encoder, cfg.overrides, cfg.threads)  # a bad --set fails before any work
    machine = machine_info()
    machine["instruction_sets"] = instruction_sets()
    with tempfile.TemporaryDirectory(prefix="recengine-export-cost-") as tmp:
        root = Path(cfg.workdir) if cfg.workdir is not None else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        runs = []
        for items, inter in cfg.sizes:
            folder, info = _data_dir(cfg, root, items, inter)
            if not cfg.quiet:
                print(f"bench export: {items} items, {inter} interactions ({info['n_users']} users): exporting",
                      file=sys.stderr, flush=True)
            job = {"task": "export", "data": str(folder), "out": str(root / f"bundle-{items}-{inter}"),
                   "profile": cfg.profile, "encoder": cfg.encoder, "overrides": cfg.overrides,
                   "threads": cfg.threads, "interval": cfg.interval, "quiet": cfg.quiet}
            result = _run_child(job, cfg.quiet)
            runs.append({"n_items": items, "n_users": info["n_users"], "n_interactions": inter,
                         "mean_text_words": info["mean_text_words"], "data_bytes": info["bytes"],
                         "generate_s": info["seconds"], "load_average_after": load_average(), **result})
            if not cfg.quiet:
                print(f"bench export: {items} items: {result['total_s']:.1f} s, peak RSS "
                      f"{result['peak_rss_mib']:.0f} MiB", file=sys.stderr, flush=True)
    report: dict[str, Any] = {
        "schema": SCHEMA, "kind": "export", "created_at": utc_now(), "command": cfg.command, "machine": machine,
        "config": {"profile": cfg.profile, "encoder": cfg.encoder or "profile default",
                   "overrides": {**SHORT_BUDGET, **cfg.overrides}, "threads": cfg.threads, "interval_s": cfg.interval,
                   "sizes": [list(s) for s in cfg.sizes], "mean_history": cfg.mean_history,
                   "words": [cfg.min_words, cfg.max_words], "seed": cfg.seed},
        "runs": runs, "growth": growth_table(runs), "notes": [],
    }
    if cfg.rate_bundle is not None and (cfg.rate_texts or cfg.rate_torch_texts):
        report["encoder_rate"] = measure_encoder_rate(cfg)
    machine["load_average_at_end"] = load_average()
    report["notes"] += _notes(report)
    return report


def measure_encoder_rate(cfg: ExportCostConfig) -> dict[str, Any]:
    """Texts per second of the bundle's encoder (ONNX int8 and fp32, as served and as `Engine.add_items` and
    the export's re-encoding check run it) and of the torch encoder the export encodes the catalogue with,
    each in its own process, on short texts; 1M-text times are extrapolated from the measured rate."""
    from recengine.bundle import BundleReader

    manifest = BundleReader(cfg.rate_bundle).manifest
    encoder = manifest["models"]["encoder"]
    results = []
    for variant in ("int8", "fp32"):
        if cfg.rate_texts and variant in encoder["variants"]:
            results.append(_run_child({"task": "rate", "engine": f"onnx_{variant}", "bundle": str(cfg.rate_bundle),
                                       "n": cfg.rate_texts, "seed": cfg.seed, "threads": cfg.rate_threads},
                                      cfg.quiet))
    if cfg.rate_torch_texts:
        source = encoder.get("source", {})
        results.append(_run_child({"task": "rate", "engine": "torch", "encoder": source.get("path"),
                                   "max_length": int(manifest["tokenizer"].get("max_length", 128)),
                                   "n": cfg.rate_torch_texts, "seed": cfg.seed, "threads": cfg.rate_threads},
                                  cfg.quiet))
    return {"bundle": str(cfg.rate_bundle), "encoder": encoder.get("source", {}).get("name"),
            "max_length": manifest["tokenizer"].get("max_length"), "results": results,
            "note": "extrapolated_1m_texts_s = 1e6 / measured texts per second: EXTRAPOLATED, not run"}


def _notes(report: dict[str, Any]) -> list[str]:
    notes = []
    runs = report["runs"]
    if runs and not all(r.get("peak_reset") for r in runs):
        notes.append("peak RSS could not be reset here: per-stage peaks are sampled RSS (spikes between samples "
                     "are missed)")
    flagged = [n for n, g in report["growth"].items() if g["super_linear"] and n != "total"]
    if flagged:
        notes.append(f"super-linear stages (exponent > {SUPER_LINEAR:.2f}, >= 2 % of the largest run): "
                     + ", ".join(flagged))
    return notes


# ---------------------------------------------------------------------------------------------- report
def _f(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def export_markdown(report: dict[str, Any], plots: list[str] | None = None) -> str:
    """The report as Markdown: runs, per-stage seconds and peak RSS, exponents, encoder rate."""
    from .report import _machine_line

    runs = report["runs"]
    c = report["config"]
    out = ["# recengine export cost bench", "",
           f"- date: {report['created_at']}",
           f"- machine: {_machine_line(report)}",
           f"- command: `{report.get('command') or '(python API)'}`",
           f"- export: profile {c['profile']}, encoder {c['encoder']}, torch threads {c['threads']}, run budget "
           + ", ".join(f"{k}={v}" for k, v in c["overrides"].items()),
           f"- memory: peak RSS sampled every {c['interval_s']} s (peak since the previous sample); delta = above "
           "the child's RSS after imports", ""]
    head = " | ".join(f"{r['n_items']:,} items / {r['n_interactions']:,} inter." for r in runs)
    out += ["## Seconds per stage (wall / CPU)", "",
            "Exponents of the log-log fit (seconds ~ size^e); with items and interactions grown together one "
            "exponent per series. CPU seconds (the export's process, sampled) are what the machine's load distorts "
            "least; the verdict uses them.", "",
            f"| stage | {head} | exponent (CPU) | exponent (wall) | r2 (CPU) |", "|---|" + "---|" * (len(runs) + 3)]
    growth = report["growth"]
    for name, g in growth.items():
        if name == "total":
            cells = [f"{_f(r['total_s'], 1)} / {_f(r.get('total_cpu_s'), 1)}" for r in runs]
        else:
            cells = [f"{_f(r['stages'].get(name, {}).get('seconds'))} / "
                     f"{_f(r['stages'].get(name, {}).get('cpu_seconds'))}" for r in runs]
        flag = " **super-linear**" if g["super_linear"] else ""
        c, w = g["cpu_seconds"], g["seconds"]
        out.append(f"| {name}{flag} | " + " | ".join(cells)
                   + f" | {_f(c['exponent'])} | {_f(w['exponent'])} | {_f(c['r2'], 3)} |")
    out += ["", "## Peak RSS per stage (MiB; delta above the baseline in brackets)", "",
            f"| stage | {head} | exponent of delta |", "|---|" + "---|" * (len(runs) + 1)]
    for name, g in growth.items():
        if name == "total":
            cells = [f"{_f(r['peak_rss_mib'], 0)} ({_f(r['peak_rss_mib'] - r['baseline_rss_mib'], 0)})" for r in runs]
        else:
            cells = [f"{_f(r['stages'].get(name, {}).get('peak_rss_mib'), 0)} "
                     f"({_f(r['stages'].get(name, {}).get('peak_rss_delta_mib'), 0)})" for r in runs]
        out.append(f"| {name} | " + " | ".join(cells) + f" | {_f(g['memory']['exponent'])} |")
    out += ["", "Stages: the export's `manifest.timings` (exact); `text_encode` (the catalogue encoding, part of "
            "`text_align`), `fit_other` and `untimed` come from the samples.", ""]
    out += ["## Runs", "", "| items | users | interactions | words/text | data MB | bundle MB | total s | peak RSS MiB "
            "| baseline MiB | load after |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        out.append(f"| {r['n_items']:,} | {r['n_users']:,} | {r['n_interactions']:,} | {r['mean_text_words']} | "
                   f"{r['data_bytes'] / 1e6:.1f} | {r['bundle_bytes'] / 1e6:.1f} | {_f(r['total_s'], 1)} | "
                   f"{_f(r['peak_rss_mib'], 0)} | {_f(r['baseline_rss_mib'], 0)} | {r.get('load_average_after')} |")
    rate = report.get("encoder_rate")
    if rate:
        out += ["", f"## Encoding rate: {rate['encoder']} (bundle {rate['bundle']}, max_length {rate['max_length']})",
                "", "| engine | threads | texts | mean tokens | texts/s | texts/CPU-s | 1M texts (EXTRAPOLATED) |",
                "|---|---|---|---|---|---|---|"]
        for r in rate["results"]:
            hours = r["extrapolated_1m_texts_s"] / 3600
            out.append(f"| {r['engine']} | {r['threads']} | {r['n_texts']:,} | {_f(r['mean_tokens'], 1)} | "
                       f"{_f(r['texts_per_s'], 1)} | {_f(r['texts_per_cpu_s'], 1)} | "
                       f"{hours:.2f} h (extrapolated) |")
        out += ["", rate["note"]]
    if report.get("notes"):
        out += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    if plots:
        out += ["", "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    return "\n".join(out) + "\n"


def export_plot(report: dict[str, Any], directory: Path) -> list[Path]:
    """export_cost.png: CPU seconds and peak RSS delta per stage vs interactions (log-log)."""
    from .plots import _plt

    plt = _plt()
    runs = sorted(report["runs"], key=lambda r: r["n_interactions"])
    x = np.array([r["n_interactions"] for r in runs], dtype=np.float64)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    for name, g in report["growth"].items():
        secs = [r.get("total_cpu_s") if name == "total" else r["stages"].get(name, {}).get("cpu_seconds") for r in runs]
        if all(s is not None and s > 0 for s in secs) and max(secs) >= 0.05:
            style = "k-" if name == "total" else ("-" if not g["super_linear"] else "--")
            ax1.plot(x, secs, style, marker="o", label=f"{name} (e={_f(g['cpu_seconds']['exponent'])})")
        mem = [(r["peak_rss_mib"] - r["baseline_rss_mib"]) if name == "total"
               else r["stages"].get(name, {}).get("peak_rss_delta_mib") for r in runs]
        if all(m is not None and m > 0 for m in mem) and max(mem) >= 5:
            ax2.plot(x, mem, "k-" if name == "total" else "-", marker="o", label=name)
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("interactions (items grow with them: " + ", ".join(f"{r['n_items']:,}" for r in runs) + ")")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    ax1.set_ylabel("CPU seconds of the export process")
    ax1.set_title("CPU seconds per stage (log-log; slope 1 = linear; dashed = super-linear)")
    ax2.set_ylabel("peak RSS above baseline (MiB)")
    ax2.set_title("peak memory per stage")
    fig.tight_layout()
    path = Path(directory) / "export_cost.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [path]


def write_export_report(report: dict[str, Any], directory: Path) -> dict[str, Path]:
    """export.json + export.md + export_cost.png into `directory`."""
    from .report import write_json

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = {"json": write_json(report, directory / "export.json")}
    plots = export_plot(report, directory) if len(report["runs"]) >= 2 else []
    files["markdown"] = directory / "export.md"
    files["markdown"].write_text(export_markdown(report, [str(p) for p in plots]), encoding="utf-8")
    for p in plots:
        files[p.stem] = p
    return files


def _child_main(job_path: str) -> None:
    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    result = child_export(job) if job["task"] == "export" else child_rate(job)
    Path(job["result"]).write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    _child_main(sys.argv[1])


__all__ = ["ExportCostConfig", "run_export_cost", "growth_exponents", "growth_table", "attribute", "fit_stage_of",
           "StageSampler", "export_markdown", "write_export_report", "measure_encoder_rate", "short_texts", "SCHEMA"]
