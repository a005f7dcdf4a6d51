"""`recengine bench latency`, `quality`, `serve`, `search` and `export` (click group `bench_group`).

Imports no torch/matplotlib at module level: the heavy modules load inside the commands, so
`recengine --help` works on a lean runtime install.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import click

from recengine.cli.pairs import parse_pairs
from recengine.errors import RequestError


def _ints(value: str, option: str) -> tuple[int, ...]:
    try:
        out = tuple(int(x) for x in value.split(",") if x.strip())
    except ValueError:
        raise RequestError(f"{option} expects comma-separated integers, got {value!r}") from None
    if not out:
        raise RequestError(f"{option} is empty")
    return out


def _names(value: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in value.split(",") if x.strip())


def _command_line(ctx: click.Context) -> str:
    """The command as typed when run from a shell, else a reconstruction from the parsed options."""
    argv0 = Path(sys.argv[0]).name if sys.argv else ""
    if argv0 in ("recengine", "__main__.py") and len(sys.argv) > 1 and sys.argv[1] == "bench":
        return "recengine " + shlex.join(sys.argv[1:])
    opts = " ".join(f"--{k.replace('_', '-')}={v}" for k, v in ctx.params.items() if v not in (None, False, ()))
    return f"{ctx.command_path} {opts}".strip()


def _check_outputs(json_out: Path | None, report_dir: Path | None) -> None:
    """Refuse unwritable --json/--report paths before the benchmark runs, not after (exit 2, one line)."""
    from recengine.cli.paths import check_output_dir, check_output_file

    if json_out is not None:
        check_output_file(json_out, "--json")
    if report_dir is not None:
        check_output_dir(report_dir, "--report")


def _emit_with(report: dict[str, Any], json_out: Path | None, report_dir: Path | None, quiet: bool,
               write_dir: Any, markdown: Any) -> None:
    """Write a bench report the way every subcommand does: JSON (`--json`), its own report directory
    (`--report`, via `write_dir`), and its Markdown on stdout unless `--quiet`."""
    from .report import write_json

    if json_out is not None:
        write_json(report, json_out)
    if report_dir is not None:
        write_dir(report, report_dir)
    if not quiet:
        click.echo(markdown(report))


def _emit(report: dict[str, Any], json_out: Path | None, report_dir: Path | None, quiet: bool) -> None:
    from .report import latency_markdown, quality_markdown, write_json, write_report_dir

    if json_out is not None:
        write_json(report, json_out)
    if report_dir is not None:
        files = write_report_dir(report, report_dir)
        if not quiet:
            click.echo(f"report written to {report_dir} ({', '.join(sorted(p.name for p in files.values()))})",
                       err=True)
    if not quiet:
        md = quality_markdown(report) if report["kind"] == "quality" else latency_markdown(report)
        click.echo(md)


@click.group("bench")
def bench_group() -> None:
    """Benchmarks: latency per stage and end to end, and quality against baselines (same run)."""


@bench_group.command("latency")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="cuda fails with a clear error where no CUDA provider is really active.")
@click.option("--batch", "batch", default="1,8,64,256", show_default=True,
              help="Batch sizes; batch 1 is timed on one thread, one request at a time.")
@click.option("--synthetic-items", type=int, default=0, show_default=True,
              help="Grow BUNDLE by N synthetic items and matching users into a full bundle (written to --workdir, "
                   "HNSW on all cores) and time every stage on it; adds the e2e stage unless --stages is given.")
@click.option("--workdir", type=click.Path(path_type=Path), default=None,
              help="Keep the synthetic bundle here (default: a temporary directory, removed after the run).")
@click.option("--index-m", "index_m", type=int, default=None,
              help="HNSW M of the synthetic bundle (default: BUNDLE's).")
@click.option("--index-ef-construction", type=int, default=None,
              help="HNSW ef_construction of the synthetic bundle (default: BUNDLE's).")
@click.option("--min-recall", type=float, default=0.95, show_default=True,
              help="The synthetic bundle serves at the smallest swept ef with recall@k >= this (vs exact).")
@click.option("--open-runs", type=int, default=3, show_default=True,
              help="Fresh processes timing Engine.open and measuring RSS (stage e2e).")
@click.option("--requests", type=int, default=200, show_default=True, help="Timed calls per measurement.")
@click.option("--duration", type=float, default=10.0, show_default=True,
              help="Seconds per measurement at most (whichever of --requests/--duration ends first).")
@click.option("--warmup", type=int, default=5, show_default=True, help="Untimed calls before each measurement.")
@click.option("--ef", "efs", default="16,32,64,128,256", show_default=True, help="HNSW ef values to sweep.")
@click.option("--k", type=int, default=10, show_default=True)
@click.option("--variants", default="fp32,int8,fp16", show_default=True)
@click.option("--stages", default="tokenize,encode,user_tower,retrieve,score,recommend", show_default=True)
@click.option("--no-torch", is_flag=True, help="Skip the torch-eager baseline.")
@click.option("--no-reference", is_flag=True,
              help="Skip the reference ORT recipes of the bundle's fp32 encoder (ref_fp32, ref_int8).")
@click.option("--torch-encoder", type=click.Path(path_type=Path), default=None,
              help="HF encoder directory for the torch-eager baseline (default: the manifest's source).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None, help="Write the JSON report.")
@click.option("--report", "report_dir", type=click.Path(path_type=Path), default=None,
              help="Write JSON + Markdown + PNG plots into this directory.")
@click.option("--quiet", is_flag=True, help="No progress bars, no summary on stdout.")
def latency_command(bundle: Path, device: str, batch: str, synthetic_items: int, workdir: Path | None,
                    index_m: int | None, index_ef_construction: int | None, min_recall: float, open_runs: int,
                    requests: int, duration: float, warmup: int, efs: str, k: int, variants: str, stages: str,
                    no_torch: bool, no_reference: bool, torch_encoder: Path | None, seed: int,
                    json_out: Path | None, report_dir: Path | None, quiet: bool) -> None:
    """Latency (p50/p95/p99) and throughput of every serving stage of BUNDLE, vs torch eager."""
    _check_outputs(json_out, report_dir)
    if workdir is not None:
        from recengine.cli.paths import check_output_dir

        check_output_dir(workdir, "--workdir")
    from .latency import LatencyConfig, run_latency, scale_markdown
    from .timing import Budget

    ctx = click.get_current_context()
    stage_names = _names(stages)
    if synthetic_items and ctx.get_parameter_source("stages") == click.core.ParameterSource.DEFAULT:
        stage_names = stage_names + ("e2e",)
    cfg = LatencyConfig(
        bundle=bundle, device=device, batches=_ints(batch, "--batch"), synthetic_items=synthetic_items,
        workdir=workdir, index_M=index_m, index_ef_construction=index_ef_construction, min_recall=min_recall,
        open_runs=open_runs,
        budget=Budget(requests=requests, duration=duration, warmup=warmup), efs=_ints(efs, "--ef"), k=k,
        variants=_names(variants), stages=stage_names, torch_baseline=not no_torch, reference=not no_reference,
        torch_encoder=torch_encoder,
        seed=seed, command=_command_line(ctx), quiet=quiet,
    )
    report = run_latency(cfg)
    _emit(report, json_out, report_dir, quiet)
    if report_dir is not None and report.get("scale"):
        (Path(report_dir) / "scale.md").write_text(scale_markdown(report), encoding="utf-8")


@bench_group.command("quality")
@click.argument("data", required=False, type=click.Path(path_type=Path))
@click.option("--profile", type=click.Choice(["quick", "standard"]), default="standard", show_default=True,
              help="quick: tiny grids and the tiny encoder (tests); standard: tuned grids, real MiniLM.")
@click.option("--models", default="popularity,itemknn,ease,als,bpr,lightgcn,sasrec,frozen_text,recengine",
              show_default=True, help="Models to run; leave out recengine for a baselines-only run.")
@click.option("--tune-budget", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Per-model tuning budget in seconds (0 = whole grid); grid points run most promising first.")
@click.option("--variants", default="fp32,int8,fp16", show_default=True, help="recengine ONNX variants.")
@click.option("--encoder", type=click.Path(path_type=Path), default=None,
              help="Local HF encoder directory for recengine and frozen_text (default: the profile's).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=0, show_default=True, help="torch/ORT threads (0 = default).")
@click.option("--no-cold", is_flag=True, help="Skip the cold-item protocol.")
@click.option("--cold-fraction", type=float, default=0.1, show_default=True)
@click.option("--set", "sets", multiple=True, help="recengine export override KEY=VALUE (e.g. user.epochs=50).")
@click.option("--workdir", type=click.Path(path_type=Path), default=None,
              help="Keep recengine's bundles here (default: a temporary directory).")
@click.option("--jobs", type=click.IntRange(1, 2), default=1, show_default=True,
              help="2: train recengine in a second process while the baselines train.")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None, help="Write the JSON report.")
@click.option("--report", "report_dir", type=click.Path(path_type=Path), default=None,
              help="Write JSON + Markdown + PNG plots into this directory.")
@click.option("--quiet", is_flag=True, help="No progress bars, no summary on stdout.")
def quality_command(data: Path | None, profile: str, models: str, variants: str, encoder: Path | None, seed: int,
                    threads: int, no_cold: bool, cold_fraction: float, sets: tuple[str, ...], workdir: Path | None,
                    jobs: int, json_out: Path | None, report_dir: Path | None, quiet: bool,
                    tune_budget: float) -> None:
    """Quality of recengine vs baselines on DATA (default: embedded MovieLens), same split, same run."""
    _check_outputs(json_out, report_dir)
    if workdir is not None:
        from recengine.cli.paths import check_output_dir

        check_output_dir(workdir, "--workdir")
    from .quality import QualityConfig, run_quality

    cfg = QualityConfig(
        data=None if data is None else str(data), profile=profile, models=_names(models),
        variants=_names(variants), seed=seed, encoder=None if encoder is None else str(encoder), cold=not no_cold,
        cold_fraction=cold_fraction, threads=threads, export_overrides=parse_pairs(sets, "--set", "user.epochs=50"),
        workdir=workdir,
        jobs=jobs, quiet=quiet, command=_command_line(click.get_current_context()), tune_budget_s=tune_budget,
    )
    _emit(run_quality(cfg), json_out, report_dir, quiet)


@bench_group.command("serve")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--concurrency", default="1,8,32,64", show_default=True, help="Concurrent clients to measure.")
@click.option("--endpoints", default="recommend_user,recommend_history,similar,search", show_default=True)
@click.option("--duration", type=float, default=5.0, show_default=True,
              help="Seconds per (endpoint, concurrency) at most.")
@click.option("--requests", type=int, default=5000, show_default=True,
              help="Requests per (endpoint, concurrency) at most.")
@click.option("--warmup", type=int, default=20, show_default=True, help="Untimed requests before each measurement.")
@click.option("--in-process-requests", type=int, default=1000, show_default=True,
              help="Timed in-process calls per endpoint (same inputs, one at a time).")
@click.option("--k", type=int, default=10, show_default=True)
@click.option("--workers", type=int, default=1, show_default=True, help="Server processes (recengine serve --workers).")
@click.option("--threads", type=int, default=1, show_default=True, help="ONNX Runtime threads (server and in-process).")
@click.option("--pool", type=int, default=None, help="Server thread pool size (default: the server's).")
@click.option("--server-arg", "server_args", multiple=True,
              help="Extra `recengine serve` argument (repeat), e.g. --server-arg=--switch-interval --server-arg=0.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None, help="Write the JSON report.")
@click.option("--report", "report_dir", type=click.Path(path_type=Path), default=None,
              help="Write serve.json + serve.md into this directory.")
@click.option("--quiet", is_flag=True, help="No progress lines, no summary on stdout.")
def serve_command(bundle: Path, concurrency: str, endpoints: str, duration: float, requests: int, warmup: int,
                  in_process_requests: int, k: int, workers: int, threads: int, pool: int | None,
                  server_args: tuple[str, ...], seed: int,
                  json_out: Path | None, report_dir: Path | None, quiet: bool) -> None:
    """`recengine serve BUNDLE` in a child process under an asyncio HTTP client at each concurrency:
    p50/p95/p99 and requests/s per endpoint, errors, and the same calls in-process (HTTP overhead)."""
    from .serve import ServeBenchConfig, run_serve_bench, serve_markdown, write_serve_report

    cfg = ServeBenchConfig(
        bundle=bundle, concurrency=_ints(concurrency, "--concurrency"), endpoints=_names(endpoints),
        duration=duration, requests=requests, warmup=warmup, in_process_requests=in_process_requests, k=k,
        workers=workers, threads=threads, pool=pool, server_args=server_args, seed=seed,
        command=_command_line(click.get_current_context()),
        quiet=quiet,
    )
    report = run_serve_bench(cfg)
    _emit_with(report, json_out, report_dir, quiet, write_serve_report, serve_markdown)


@bench_group.command("search")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.argument("data", required=False, type=click.Path(path_type=Path))
@click.option("--known", "n_known", type=int, default=300, show_default=True,
              help="Known-item items drawn (each queried as title, title with year, lower-cased, one typo).")
@click.option("--attributes", "n_attr", type=int, default=40, show_default=True,
              help="Attribute values drawn per non-title text column (genres, tags).")
@click.option("--frozen-encoder", type=click.Path(path_type=Path), default=None,
              help="HF encoder directory of the pre-trained model (default: the packaged all-MiniLM-L6-v2).")
@click.option("--no-frozen", is_flag=True, help="Skip the frozen pre-trained encoder (no torch needed).")
@click.option("--extra-items", type=click.Path(path_type=Path), default=None,
              help="An items table (CSV/Parquet: item_id + text columns) added to BUNDLE live; queries are then "
                   "drawn from those items (a domain the bundle never saw).")
@click.option("--threads", type=int, default=1, show_default=True, help="ORT (and frozen torch) threads.")
@click.option("--requests", type=int, default=300, show_default=True, help="Timed search calls per mode.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None, help="Write the JSON report.")
@click.option("--report", "report_dir", type=click.Path(path_type=Path), default=None,
              help="Write search.json + search.md into this directory.")
@click.option("--quiet", is_flag=True, help="No progress lines, no summary on stdout.")
def search_command(bundle: Path, data: Path | None, n_known: int, n_attr: int, frozen_encoder: Path | None,
                   no_frozen: bool, extra_items: Path | None, threads: int, requests: int, seed: int,
                   json_out: Path | None, report_dir: Path | None, quiet: bool) -> None:
    """Search quality of BUNDLE on queries drawn from DATA (default: embedded MovieLens; BUNDLE must be
    exported from DATA): known-item and attribute queries, bundle encoder vs the frozen pre-trained one,
    dense vs hybrid (BM25) search, and search latency."""
    _check_outputs(json_out, report_dir)
    from .search import SearchBenchConfig, run_search_bench, search_markdown, write_search_report

    cfg = SearchBenchConfig(bundle=bundle, data=None if data is None else str(data), n_known=n_known, n_attr=n_attr,
                            seed=seed, frozen_encoder=frozen_encoder, frozen=not no_frozen, threads=threads,
                            latency_requests=requests, command=_command_line(click.get_current_context()),
                            quiet=quiet, extra_items=extra_items)
    report = run_search_bench(cfg)
    _emit_with(report, json_out, report_dir, quiet, write_search_report, search_markdown)


@bench_group.command("export")
@click.option("--items", "items", default="2000,10000,50000", show_default=True,
              help="Catalogue sizes, one per run (comma-separated).")
@click.option("--interactions", "interactions", default="20000,100000,500000", show_default=True,
              help="Interactions per run, paired with --items (same count).")
@click.option("--profile", type=click.Choice(["quick", "standard"]), default="quick", show_default=True,
              help="Export profile (quick: tiny encoder and models).")
@click.option("--encoder", default=None,
              help="'minilm' (the packaged all-MiniLM-L6-v2) or a local HF encoder directory (default: the profile's).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Export config override on top of the short run budget (e.g. user.epochs=5; repeatable).")
@click.option("--threads", type=int, default=1, show_default=True, help="torch threads of each export.")
@click.option("--interval", type=float, default=0.02, show_default=True, help="Memory sampling interval (s).")
@click.option("--mean-history", type=int, default=20, show_default=True, help="Mean interactions per user.")
@click.option("--words", default="12,40", show_default=True, help="Description words per item: MIN,MAX.")
@click.option("--rate-bundle", type=click.Path(path_type=Path), default=None,
              help="Also time this bundle's encoder (ONNX int8/fp32; torch with --rate-torch-texts) on short texts.")
@click.option("--rate-texts", type=int, default=20000, show_default=True, help="Texts per ONNX variant.")
@click.option("--rate-torch-texts", type=int, default=0, show_default=True,
              help="Texts for the torch encoder (the export's catalogue encoding path; 0 = skip).")
@click.option("--rate-threads", type=int, default=2, show_default=True, help="Threads of the encoder timing.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workdir", type=click.Path(path_type=Path), default=None,
              help="Keep the data sets and bundles here (reused data when the spec matches; default: temporary).")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None, help="Write the JSON report.")
@click.option("--report", "report_dir", type=click.Path(path_type=Path), default=None,
              help="Write export.json + export.md + export_cost.png into this directory.")
@click.option("--quiet", is_flag=True, help="No progress, no summary on stdout.")
def export_cost_command(items: str, interactions: str, profile: str, encoder: str | None, sets: tuple[str, ...],
                        threads: int, interval: float, mean_history: int, words: str, rate_bundle: Path | None,
                        rate_texts: int, rate_torch_texts: int, rate_threads: int, seed: int, workdir: Path | None,
                        json_out: Path | None, report_dir: Path | None, quiet: bool) -> None:
    """The export's cost curve: synthetic data sets of growing size, seconds and peak memory per export stage,
    growth exponents (log-log), super-linear stages flagged; optionally the encoder's rate on short texts."""
    _check_outputs(json_out, report_dir)
    if workdir is not None:
        from recengine.cli.paths import check_output_dir

        check_output_dir(workdir, "--workdir")
    from .export_cost import ExportCostConfig, export_markdown, run_export_cost, write_export_report

    n_items, n_inter = _ints(items, "--items"), _ints(interactions, "--interactions")
    if len(n_items) != len(n_inter):
        raise RequestError(f"--items has {len(n_items)} sizes but --interactions {len(n_inter)}: give one per run")
    low_high = _ints(words, "--words")
    if len(low_high) != 2:
        raise RequestError(f"--words expects MIN,MAX, got {words!r}")
    cfg = ExportCostConfig(sizes=tuple(zip(n_items, n_inter)), profile=profile, encoder=encoder,
                           overrides=parse_pairs(sets, "--set", "user.epochs=5"), threads=threads, interval=interval,
                           seed=seed, mean_history=mean_history, min_words=low_high[0], max_words=low_high[1],
                           workdir=workdir, rate_bundle=rate_bundle, rate_texts=rate_texts if rate_bundle else 0,
                           rate_torch_texts=rate_torch_texts if rate_bundle else 0, rate_threads=rate_threads,
                           command=_command_line(click.get_current_context()), quiet=quiet)
    report = run_export_cost(cfg)
    _emit_with(report, json_out, report_dir, quiet, write_export_report, export_markdown)
