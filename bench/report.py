"""Writing bench reports: JSON (stable schema below), a Markdown summary and PNG plots.

Quality JSON (`schema` = "recengine-bench-quality/1"):
- `kind` "quality", `created_at` (UTC ISO 8601), `command`, `machine` {cpu, cpu_count, memory_gib, os,
  python, load_average_at_start, load_average_at_end, instruction_sets (SIMD flags), versions, git_revision},
  `data` {name, fingerprint, n_users, n_items, n_interactions,
  context_columns}
- `protocol` {split, seed, ranking, tuning, test_fit, n_users, n_items, n_train_events, n_valid_queries,
  n_test_queries, profile, cold {split, n_cold_items, n_cold_interactions, n_queries, metric, protocols
  {hybrid, cold_only}, fraction, min_interactions}}
- `models.<name>` for name in popularity, itemknn, ease, als, bpr, lightgcn, sasrec, frozen_text,
  recengine_fp32, recengine_int8, recengine_fp16 (+ recengine_torch, the torch model before export;
  recengine_fp32_fresh, recengine_fp32_tower; recengine_int8_int8items: items without training interactions
  encoded by the INT8 encoder instead of the default fp32 item encoder):
  {hr@10, ndcg@10, hr@20, ndcg@20, mrr, coverage@10, tail_share@10, n_queries, kind ("baseline" |
  "recengine"), params, valid_ndcg@10, seconds, ndcg@10_se (standard error over the test queries),
  grid_points {tried, in_grid} (baselines), and with the cold protocol: cold_recall@20 and cold_ndcg@20
  (hybrid: all items ranked, the user's warm items excluded), coldonly_recall@20 and coldonly_ndcg@20
  (only the cold items ranked)}; a model that could not run is absent and `notes` says why
- `best_baseline` {name, ndcg@10} (highest test NDCG@10 among baselines); `ratios.<name>.<metric>` =
  model / best baseline; `target` {metric, target_ratio, recengine_fp32_ratio, met, ratio_ci95 [lo, hi]: paired
  bootstrap 95 % interval of that ratio over the test queries}
- `tuning.<name>` = [{params, valid_ndcg@10, best_epoch, epochs_run, fit_seconds}], `scenes.<ctx column>.
  <value>.<model>` = {n_queries, hr@10, ndcg@10, hr@20, ndcg@20, mrr}, `tune_budget_s` (per-model tuning
  budget, 0 = whole grids), `notes` [str], `timings` {seconds}

Latency JSON (`schema` = "recengine-bench-latency/1"):
- `kind` "latency", `created_at`, `command`, `device` ("cpu" | "cuda"), `provider` (the ONNX Runtime
  execution provider actually used), `machine`, `bundle` {path, data, n_items, n_users, dims, encoder,
  fusion_by_default}, `config` {batches, requests, duration_s, warmup, k, efs, synthetic_items, variants,
  stages}
- `results[]` = {stage (tokenize | encode | user_tower | retrieve | score | recommend), variant (fp32 |
  int8 | fp16 | torch_eager | tokenizers | hnsw_<index form>_ef<N> | exact_numpy | exact_gemm | exact_onnx |
  <variant>/stored |
  <variant>/history), batch, mode ("single" = batch 1 on one thread | "batched" = all cores), threads,
  p50_ms, p95_ms, p99_ms, mean_ms, throughput_per_s (items per second), n_requests, + stage extras (ef,
  recall@k, n_items, candidates, request, retrieval, fusion)}
- `speedups[]` = {stage, variant, batch, baseline "torch_eager", speedup_p50, speedup_p99},
  `recall_curve[]` = {index (plain_ip | mips_augment), ef, recall@k, n_items, p50_ms_batch<b>}, `targets`, `notes`,
  `seconds`,
  `samples_ms` {"stage|variant|batch": [per-call ms]} (for the CDF plots)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from recengine.errors import RequestError

QUALITY_COLUMNS = ("ndcg@10", "coverage@10", "tail_share@10", "hr@10", "hr@20", "ndcg@20", "mrr")
"""Headline table: NDCG@10 (± its standard error) with the long-tail metrics next to it."""
COLD_COLUMNS = ("cold_recall@20", "cold_ndcg@20", "coldonly_recall@20", "coldonly_ndcg@20")
"""Cold table: hybrid (all items ranked) then cold-only (only the cold items ranked)."""
MODEL_ORDER = ("popularity", "itemknn", "ease", "als", "bpr", "lightgcn", "sasrec", "frozen_text", "recengine_torch",
               "recengine_fp32", "recengine_int8", "recengine_int8_int8items", "recengine_fp16")


def write_json(report: dict[str, Any], path: Path) -> Path:
    """Write `report` as indented UTF-8 JSON (NaN becomes null so any JSON reader accepts it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_finite(report), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def ordered_models(models: dict[str, Any]) -> list[str]:
    known = [m for m in MODEL_ORDER if m in models]
    return known + sorted(m for m in models if m not in MODEL_ORDER)


def _machine_line(report: dict[str, Any]) -> str:
    m = report.get("machine", {})
    load = m.get("load_average_at_start")
    end = m.get("load_average_at_end")
    return (f"{m.get('cpu', '?')}, {m.get('cpu_count', '?')} cores, {m.get('memory_gib', '?')} GiB RAM, "
            f"{m.get('os', '?')}, Python {m.get('python', '?')}" + (f"; load average at start {load}" if load else "")
            + (f", at end {end}" if end else "")
            + (f"; instruction sets {', '.join(m['instruction_sets'])}" if m.get("instruction_sets") else "")
            + (f"; recengine git {m['git_revision']}" if m.get("git_revision") else ""))


def _ndcg_cell(m: dict[str, Any]) -> str:
    se = m.get("ndcg@10_se")
    return _fmt(m.get("ndcg@10")) + (f" ± {_fmt(se)}" if se is not None else "")


def quality_table(report: dict[str, Any]) -> str:
    """The headline table: every model's test NDCG@10 ± standard error, long-tail metrics (coverage@10,
    tail share@10) next to it, the other ranking metrics, and its NDCG@10 ratio to the best baseline."""
    models, ratios = report["models"], report.get("ratios", {})
    head = "| model | ndcg@10 ± se | " + " | ".join(QUALITY_COLUMNS[1:]) + " | NDCG@10 / best baseline |"
    lines = [head, "|" + "---|" * (len(QUALITY_COLUMNS) + 2)]
    best = report.get("best_baseline", {}).get("name")
    for name in ordered_models(models):
        m = models[name]
        label = f"**{name}**" if name == best or name == "recengine_fp32" else name
        ratio = ratios.get(name, {}).get("ndcg@10")
        lines.append(f"| {label} | {_ndcg_cell(m)} | " + " | ".join(_fmt(m.get(c)) for c in QUALITY_COLUMNS[1:])
                     + f" | {_fmt(ratio, 2)}{'x' if ratio is not None else ''} |")
    return "\n".join(lines)


def cold_table(report: dict[str, Any]) -> str | None:
    """Both cold protocols per model, next to the same model's warm test NDCG@10 (None without cold data)."""
    models = report["models"]
    names = [n for n in ordered_models(models) if any(c in models[n] for c in COLD_COLUMNS)]
    if not names:
        return None
    lines = ["| model | warm test ndcg@10 | hybrid recall@20 | hybrid ndcg@20 | cold-only recall@20 | "
             "cold-only ndcg@20 |", "|---|---|---|---|---|---|"]
    for name in names:
        m = models[name]
        lines.append(f"| {name} | {_fmt(m.get('ndcg@10'))} | " + " | ".join(_fmt(m.get(c)) for c in COLD_COLUMNS)
                     + " |")
    return "\n".join(lines)


def quality_markdown(report: dict[str, Any], plots: list[str] | None = None) -> str:
    p = report["protocol"]
    d = report["data"]
    out = [
        "# recengine quality bench",
        "",
        f"- date: {report['created_at']}",
        f"- machine: {_machine_line(report)}",
        f"- command: `{report.get('command') or '(python API)'}`",
        f"- data: {d['name']} — {d['n_users']} users, {d['n_items']} items, {d['n_interactions']} interactions"
        f" (fingerprint {d['fingerprint'][:12]})",
        f"- protocol: {p['split']}; {p['ranking']}; {p['n_test_queries']} test queries; tuning: {p['tuning']}; "
        f"test: {p['test_fit']}; profile {p.get('profile')}; seed {p['seed']}",
    ]
    if "cold" in p:
        c = p["cold"]
        out.append(f"- cold items: {c['n_cold_items']} items ({c['fraction']:.0%} of those with >= "
                   f"{c['min_interactions']} interactions) held out, {c['n_queries']} users; {c['metric']}")
    out += ["", "## Test metrics (full ranking)", "",
            "NDCG@10 ± its standard error over the test queries; coverage@10 = share of the catalogue in at least "
            "one top 10, tail_share@10 = share of top-10 slots outside the 20 % most popular items.", "",
            quality_table(report), ""]
    best = report.get("best_baseline", {})
    target = report.get("target")
    if target:
        verdict = "met" if target["met"] else "NOT met"
        out.append(f"Best baseline: **{best.get('name')}** (NDCG@10 {_fmt(best.get('ndcg@10'))}). "
                   f"recengine_fp32 NDCG@10 = **{_fmt(target['recengine_fp32_ratio'], 3)}x** the best baseline; "
                   f"target >= {target['target_ratio']}x: **{verdict}**.")
        if target.get("ratio_ci95"):
            lo, hi = target["ratio_ci95"]
            out.append(f"95% interval of that ratio (paired bootstrap over the test queries): "
                       f"[{_fmt(lo, 3)}, {_fmt(hi, 3)}].")
        out.append("")
    cold = cold_table(report)
    if cold:
        out += ["## Cold items (both protocols, models refitted on the warm interactions)", "",
                "- hybrid: all items ranked, the user's warm items excluded, relevant = the user's cold items "
                "(JSON `cold_recall@20`, `cold_ndcg@20`);",
                "- cold-only: only the cold items ranked (JSON `coldonly_recall@20`, `coldonly_ndcg@20`);",
                "- warm test NDCG@10 is the same model's main-protocol figure, so a cold gain that costs warm "
                "accuracy shows."]
        n_cold = p.get("cold", {}).get("n_cold_items")
        if n_cold:
            out.append(f"- chance level: a uniformly random order of the {n_cold} cold items has expected cold-only "
                       f"Recall@20 = {min(20, n_cold)}/{n_cold} = {min(20, n_cold) / n_cold:.4f}. A model that scores "
                       "every cold item alike (an ID model that never saw them) gets 0 under pessimistic ties; one "
                       "whose cold items keep random untrained embeddings lands near chance level.")
        out += ["", cold, ""]
    scenes = report.get("scenes", {})
    if scenes:
        out += ["## Per scene (test NDCG@10, queries grouped by the test event's context)", ""]
        names = ordered_models(report["models"])
        for column, values in scenes.items():
            out.append(f"**{column}**")
            out.append("")
            out.append("| value | n | " + " | ".join(names) + " |")
            out.append("|" + "---|" * (len(names) + 2))
            for value, per_model in values.items():
                n = next(iter(per_model.values()), {}).get("n_queries")
                out.append(f"| {value} | {int(n) if n else '–'} | "
                           + " | ".join(_fmt(per_model.get(nm, {}).get("ndcg@10")) for nm in names) + " |")
            out.append("")
    tuning = report.get("tuning", {})
    if tuning:
        budget = report.get("tune_budget_s")
        out += ["## Tuning (validation NDCG@10 per grid point; the best is refitted and tested)", "",
                f"Per-model tuning budget: {f'{budget:g} s' if budget else 'none (whole grids)'}. Models with "
                "epochs or iterations early-stop on validation; the chosen count is refitted on train+valid.", ""]
        for name, trials in tuning.items():
            best_t = max(trials, key=lambda t: t["valid_ndcg@10"])
            points = report["models"].get(name, {}).get("grid_points") or {}
            size = f" of {points['in_grid']}" if points.get("in_grid", len(trials)) != len(trials) else ""
            refit = report["models"].get(name, {}).get("params")
            out.append(f"- **{name}**: {len(trials)}{size} settings; chosen {json.dumps(best_t['params'])} "
                       f"(valid NDCG@10 {_fmt(best_t['valid_ndcg@10'])}"
                       + (f", best epoch {best_t['best_epoch']}" if best_t.get("best_epoch") else "") + ")"
                       + (f"; refitted as {json.dumps(refit)}" if refit and refit != best_t["params"] else ""))
        out.append("")
    if report.get("notes"):
        out += ["## Notes", ""] + [f"- {n}" for n in report["notes"]] + [""]
    if report.get("timings"):
        out += ["## Time (seconds)", "", ", ".join(f"{k} {v}" for k, v in report["timings"].items()), ""]
    if plots:
        out += ["## Plots", ""] + [f"![{Path(pl).stem}]({Path(pl).name})" for pl in plots] + [""]
    return "\n".join(out)


def latency_table(report: dict[str, Any], mode: str) -> str:
    rows = [r for r in report["results"] if r["mode"] == mode]
    cols = ("stage", "variant", "batch", "p50_ms", "p95_ms", "p99_ms", "throughput_per_s")
    lines = ["| " + " | ".join(cols) + " | extra |", "|" + "---|" * (len(cols) + 1)]
    for r in rows:
        extra = ", ".join(f"{k} {r[k]}" for k in ("recall@10", "n_items", "candidates", "retrieval") if k in r)
        lines.append("| " + " | ".join(_fmt(r[c], 3) if isinstance(r[c], float) else str(r[c]) for c in cols)
                     + f" | {extra} |")
    return "\n".join(lines)


def latency_markdown(report: dict[str, Any], plots: list[str] | None = None) -> str:
    b = report["bundle"]
    out = [
        "# recengine latency bench",
        "",
        f"- date: {report['created_at']}",
        f"- machine: {_machine_line(report)}",
        f"- device: {report['device']}, provider: {report['provider']}",
        f"- command: `{report.get('command') or '(python API)'}`",
        f"- bundle: {b['path']} ({b['data']}: {b['n_items']} items, {b['n_users']} users, encoder {b['encoder']}, "
        f"fusion by default: {b['fusion_by_default']})",
        f"- per measurement: up to {report['config']['requests']} timed calls or {report['config']['duration_s']} s "
        f"after {report['config']['warmup']} warm-up calls",
        "",
    ]
    targets = report.get("targets", {})
    if targets:
        out += ["## Targets", ""]
        for name, t in targets.items():
            out.append(f"- {name}: {_fmt(t.get('value'), 3)} (target {t['target']}) — "
                       f"**{'met' if t['met'] else 'NOT met'}**")
        out.append("")
    sp = report.get("speedups", [])
    if sp:
        out += ["## Speed-up over torch eager (same run, p50 ratio)", "",
                "| stage | batch | " + " | ".join(sorted({s['variant'] for s in sp})) + " |",
                "|---|---|" + "---|" * len({s['variant'] for s in sp})]
        variants = sorted({s["variant"] for s in sp})
        for stage, batch in sorted({(s["stage"], s["batch"]) for s in sp}):
            vals = {s["variant"]: s["speedup_p50"] for s in sp if s["stage"] == stage and s["batch"] == batch}
            out.append(f"| {stage} | {batch} | " + " | ".join(f"{_fmt(vals.get(v), 2)}x" for v in variants) + " |")
        out.append("")
    out += ["## Single request, one thread (batch 1)", "", latency_table(report, "single"), "",
            "## Batched (all cores)", "", latency_table(report, "batched"), ""]
    curve = report.get("recall_curve", [])
    if curve:
        k = next((key for key in curve[0] if key.startswith("recall@")), "recall@10")
        out += [f"## HNSW recall vs ef ({curve[0]['n_items']} items)", "",
                f"| index | ef | {k} | p50 ms (batch 1) |", "|---|---|---|---|"]
        out += [f"| {c.get('index', 'hnsw')} | {c['ef']} | {_fmt(c[k])} | {_fmt(c.get('p50_ms_batch1'), 3)} |"
                for c in curve]
        out.append("")
    if report.get("notes"):
        out += ["## Notes", ""] + [f"- {n}" for n in report["notes"]] + [""]
    if plots:
        out += ["## Plots", ""] + [f"![{Path(pl).stem}]({Path(pl).name})" for pl in plots] + [""]
    return "\n".join(out)


def write_report_dir(report: dict[str, Any], directory: Path) -> dict[str, Path]:
    """JSON + Markdown + PNG plots of a quality or latency report into `directory`."""
    from .plots import latency_plots, quality_plots

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    kind = report.get("kind")
    if kind not in ("quality", "latency"):
        raise RequestError(f"not a bench report (kind {kind!r})")
    files: dict[str, Path] = {"json": write_json(report, directory / f"{kind}.json")}
    plots = quality_plots(report, directory) if kind == "quality" else latency_plots(report, directory)
    md = quality_markdown(report, [str(p) for p in plots]) if kind == "quality" else \
        latency_markdown(report, [str(p) for p in plots])
    files["markdown"] = directory / f"{kind}.md"
    files["markdown"].write_text(md, encoding="utf-8")
    for p in plots:
        files[p.stem] = p
    return files
