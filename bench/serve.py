"""`recengine bench serve BUNDLE`: the HTTP server under load from a real client, against in-process calls.

The server runs as a separate process (`recengine serve --port 0`, started by
`recengine.server.process.ServerProcess`); an asyncio client (aiohttp, keep-alive, one connection per
concurrent client, closed loop: each client sends its next request when the last one answered) drives
every endpoint at each concurrency. The same calls are timed in-process (`Engine` in this process, one
call at a time) in the same run, right before that endpoint's HTTP measurements, so the cost of HTTP is
reported as a difference and a ratio taken under the same machine load.

What the numbers include: the client runs on the same machine (its CPU time competes with the server's:
on 2 cores that is part of what is measured, and said in the report). Latency is per request, from just
before the client writes it to just after it has read and parsed the whole response.

JSON (`schema` = "recengine-bench-serve/1"): `kind` "serve", `created_at`, `command`, `machine`
(+ `cpu_flags`, `load_average_at_end`), `bundle` {path, data, n_items, n_users, encoder, fusion_by_default},
`server` {args, workers, threads, pool, provider, rss_mib_start, rss_mib_end, versions}, `config`,
`in_process[]` {endpoint, p50_ms, p95_ms, p99_ms, mean_ms, n_requests}, `results[]` {endpoint,
concurrency, p50_ms, p95_ms, p99_ms, mean_ms, requests_per_s, n_requests, errors, error_kinds,
server_cpu_us_per_request, client_cpu_us_per_request},
`overhead[]` {endpoint, concurrency 1, http_p50_ms, in_process_p50_ms, overhead_p50_ms, ratio_p50},
`targets`, `notes`, `seconds`.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recengine.errors import RequestError

ENDPOINTS = ("recommend_user", "recommend_history", "similar", "search")
_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
          "amx_tile", "amx_int8")


@dataclass(frozen=True)
class ServeBenchConfig:
    """One bench run. Each (endpoint, concurrency) is measured for `duration` seconds or `requests`
    requests, whichever ends first, after `warmup` untimed requests per connection."""

    bundle: Path
    concurrency: tuple[int, ...] = (1, 8, 32, 64)
    endpoints: tuple[str, ...] = ENDPOINTS
    duration: float = 5.0
    requests: int = 5000
    warmup: int = 20
    in_process_requests: int = 1000
    k: int = 10
    history_length: int = 5
    workers: int = 1
    threads: int = 1
    pool: int | None = None
    server_args: tuple[str, ...] = ()
    """Further `recengine serve` options, e.g. ("--switch-interval", "0")."""
    seed: int = 0
    command: str = ""
    quiet: bool = False
    targets: dict[str, float] = field(default_factory=lambda: {"recommend_user_p99_ms_c8": 5.0,
                                                                "overhead_p50_ms": 1.0})

    def __post_init__(self) -> None:
        unknown = set(self.endpoints) - set(ENDPOINTS)
        if unknown:
            raise RequestError(f"unknown endpoints {sorted(unknown)} (known: {', '.join(ENDPOINTS)})")
        if not self.endpoints:
            raise RequestError("no endpoints to measure")
        if any(c < 1 or c > 1024 for c in self.concurrency):
            raise RequestError(f"concurrency must be between 1 and 1024, got {self.concurrency}")
        if self.duration <= 0 or self.requests < 1 or self.warmup < 0 or self.in_process_requests < 1:
            raise RequestError("duration must be > 0, requests and in-process requests >= 1, warmup >= 0")


@dataclass(frozen=True)
class Call:
    """One request, as HTTP (method, path, JSON body bytes) and as the equivalent in-process call."""

    method: str
    path: str
    body: bytes | None
    local: Callable[[Any], Any]


def cpu_flags() -> list[str]:
    """The vector instruction sets of this CPU that matter for ONNX Runtime kernels (Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [f for f in _FLAGS if f in have]
    except OSError:
        pass
    return []


def rss_mib(pid: int) -> float | None:
    """Resident memory of a process (Linux /proc), MiB."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process has used so far (Linux /proc/PID/stat), seconds."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def build_calls(engine: Any, cfg: ServeBenchConfig) -> dict[str, list[Call]]:
    """Rotating inputs per endpoint (so no response is a cached repeat): stored users, random histories,
    catalogue items, item titles as search texts."""
    from urllib.parse import quote

    rng = np.random.default_rng(cfg.seed)
    users, items = engine.user_ids(), engine.item_ids()
    if not users or not items:
        raise RequestError("the bundle needs users and items to benchmark")
    k = cfg.k
    n = 256
    out: dict[str, list[Call]] = {}
    pick_users = [users[i] for i in rng.integers(0, len(users), n)]
    out["recommend_user"] = [Call("POST", "/recommend", json.dumps({"user_id": u, "k": k}).encode(),
                                  lambda e, u=u: e.recommend(user_id=u, k=k)) for u in pick_users]
    histories = [[items[i] for i in rng.choice(len(items), cfg.history_length, replace=False)] for _ in range(n)]
    out["recommend_history"] = [Call("POST", "/recommend", json.dumps({"history": h, "k": k}).encode(),
                                     lambda e, h=h: e.recommend(history=h, k=k)) for h in histories]
    pick_items = [items[i] for i in rng.integers(0, len(items), n)]
    out["similar"] = [Call("GET", f"/items/{quote(i, safe='')}/similar?k={k}", None,
                           lambda e, i=i: e.similar_items(i, k=k)) for i in pick_items]
    texts = [engine.item_title(i) or i for i in pick_items]
    out["search"] = [Call("POST", "/search", json.dumps({"text": t, "k": k}).encode(),
                          lambda e, t=t: e.search(t, k=k)) for t in texts]
    return {name: out[name] for name in cfg.endpoints}


def _summary(samples_ms: list[float]) -> dict[str, Any]:
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "mean_ms": None, "n_requests": 0}
    return {"p50_ms": round(float(np.percentile(a, 50)), 4), "p95_ms": round(float(np.percentile(a, 95)), 4),
            "p99_ms": round(float(np.percentile(a, 99)), 4), "mean_ms": round(float(a.mean()), 4),
            "n_requests": int(a.size)}


def measure_in_process(engine: Any, calls: list[Call], cfg: ServeBenchConfig) -> dict[str, Any]:
    """The same calls, in this process, one at a time (what a Python host pays)."""
    for i in range(cfg.warmup):
        calls[i % len(calls)].local(engine)
    samples: list[float] = []
    deadline = time.perf_counter() + cfg.duration
    i = 0
    while len(samples) < cfg.in_process_requests and (time.perf_counter() < deadline or len(samples) < 20):
        t = time.perf_counter_ns()
        calls[i % len(calls)].local(engine)
        samples.append((time.perf_counter_ns() - t) / 1e6)
        i += 1
    return _summary(samples)


async def _drive(url: str, calls: list[Call], concurrency: int, cfg: ServeBenchConfig,
                 server_pid: int | None = None) -> dict[str, Any]:
    """`concurrency` clients in a closed loop over keep-alive connections; per-request latency, and the CPU
    time the server process and this client process spent per request (robust to a busy machine, unlike
    wall-clock latency)."""
    import aiohttp

    samples: list[float] = []
    errors: Counter[str] = Counter()
    headers = {"content-type": "application/json"}
    counter = iter(range(10**12))
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False, enable_cleanup_closed=False)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as session:

        async def one(call: Call) -> tuple[float, str | None]:
            t = time.perf_counter_ns()
            try:
                async with session.request(call.method, call.path, data=call.body,
                                           headers=headers if call.body is not None else None) as resp:
                    raw = await resp.read()
                    status = resp.status
                payload = json.loads(raw)
                err = None if status == 200 and "results" in payload else f"http_{status}"
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
                err = type(exc).__name__
            return (time.perf_counter_ns() - t) / 1e6, err

        async def warm() -> None:
            for _ in range(max(1, cfg.warmup // max(1, concurrency)) + 1):
                await one(calls[next(counter) % len(calls)])

        await asyncio.gather(*(warm() for _ in range(concurrency)))
        deadline = time.perf_counter() + cfg.duration
        sent = 0

        async def client() -> None:
            nonlocal sent
            while sent < cfg.requests and time.perf_counter() < deadline:
                sent += 1
                ms, err = await one(calls[next(counter) % len(calls)])
                if err is None:
                    samples.append(ms)
                else:
                    errors[err] += 1

        server_cpu0 = cpu_seconds(server_pid) if server_pid else None
        client_cpu0 = time.process_time()
        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        wall = time.perf_counter() - start
        client_cpu = time.process_time() - client_cpu0
        server_cpu1 = cpu_seconds(server_pid) if server_pid else None
    out = _summary(samples)
    done = len(samples) + sum(errors.values())
    out.update({"requests_per_s": round(len(samples) / wall, 1) if wall > 0 else None, "errors": sum(errors.values()),
                "error_kinds": dict(errors), "wall_s": round(wall, 3), "n_sent": done,
                "client_cpu_us_per_request": round(client_cpu / done * 1e6, 1) if done else None,
                "server_cpu_us_per_request": (round((server_cpu1 - server_cpu0) / done * 1e6, 1)
                                              if done and server_cpu0 is not None and server_cpu1 is not None
                                              else None)})
    return out


def _event_loop_policy() -> None:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # the plain asyncio loop: slower client, still correct
        pass


def run_serve_bench(cfg: ServeBenchConfig) -> dict[str, Any]:
    """Start the server, measure in-process and over HTTP, stop the server; the report dict."""
    from importlib import metadata

    from recengine import Engine
    from recengine.server.process import ServerProcess

    from .machine import load_average, machine_info, utc_now

    t0 = time.perf_counter()
    machine = machine_info()
    machine["cpu_flags"] = cpu_flags()
    engine = Engine.open(cfg.bundle, device="cpu", threads=cfg.threads)
    engine.warmup()
    calls = build_calls(engine, cfg)
    say = (lambda msg: None) if cfg.quiet else (lambda msg: print(msg, flush=True))
    bundle_info = {"path": str(cfg.bundle), "data": engine.manifest.get("data", {}).get("name"),
                   "n_items": engine.n_items, "n_users": engine.n_users,
                   "encoder": ((engine.manifest.get("models", {}).get("encoder", {}).get("source", {}) or {})
                               .get("name")),
                   "fusion_by_default": engine.uses_fusion, "variants": engine.variants}
    provider = engine.provider
    args = ["--threads", str(cfg.threads), "--workers", str(cfg.workers), "--log-level", "warning"]
    if cfg.pool is not None:
        args += ["--pool", str(cfg.pool)]
    args += list(cfg.server_args)
    in_process, results = [], []
    _event_loop_policy()
    server = ServerProcess(cfg.bundle, args)
    url = server.start(timeout=300)
    assert server.proc is not None
    rss_start = rss_mib(server.proc.pid)
    try:
        # per endpoint: in-process, then HTTP at each concurrency, back to back, so that both see the same
        # machine (a shared machine's load drifts over minutes)
        for name, cs in calls.items():
            row = {"endpoint": name, **measure_in_process(engine, cs, cfg)}
            in_process.append(row)
            say(f"in-process {name}: p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms")
            for c in cfg.concurrency:
                row = {"endpoint": name, "concurrency": c,
                       **asyncio.run(_drive(url, cs, c, cfg, server_pid=server.proc.pid))}
                results.append(row)
                say(f"http {name} c={c}: p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, "
                    f"{row['requests_per_s']} req/s, errors {row['errors']}, server CPU "
                    f"{row['server_cpu_us_per_request']} us/request")
        rss_end = rss_mib(server.proc.pid)
    finally:
        code = server.stop(60)
    del engine
    overhead = []
    local = {r["endpoint"]: r for r in in_process}
    for r in results:
        if r["concurrency"] == 1 and r["p50_ms"] is not None and local[r["endpoint"]]["p50_ms"]:
            lp = local[r["endpoint"]]["p50_ms"]
            overhead.append({"endpoint": r["endpoint"], "concurrency": 1, "http_p50_ms": r["p50_ms"],
                             "in_process_p50_ms": lp, "overhead_p50_ms": round(r["p50_ms"] - lp, 4),
                             "ratio_p50": round(r["p50_ms"] / lp, 2)})
    targets: dict[str, Any] = {}
    c8 = next((r for r in results if r["endpoint"] == "recommend_user" and r["concurrency"] == 8), None)
    if c8 is not None and c8["p99_ms"] is not None:
        goal = cfg.targets["recommend_user_p99_ms_c8"]
        targets["recommend_user_p99_ms_c8"] = {"value": c8["p99_ms"], "target": goal, "errors": c8["errors"],
                                               "met": c8["p99_ms"] <= goal and c8["errors"] == 0}
    ov = next((o for o in overhead if o["endpoint"] == "recommend_user"), None)
    if ov is not None:
        goal = cfg.targets["overhead_p50_ms"]
        targets["recommend_user_overhead_p50_ms"] = {"value": ov["overhead_p50_ms"], "target": goal,
                                                     "met": ov["overhead_p50_ms"] <= goal}
    machine["load_average_at_end"] = load_average()
    versions = {}
    for lib in ("starlette", "uvicorn", "httptools", "uvloop", "pydantic", "aiohttp"):
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            continue
    notes = [
        "The load generator (aiohttp on uvloop, closed loop, keep-alive) runs on the same machine as the server: "
        "its CPU time competes with the server's, so at high concurrency on few cores the numbers include the "
        "client's share.",
        "In-process: the same calls on an Engine in the bench process, one at a time, with the same ONNX Runtime "
        "thread count as the server.",
        f"Server exit code after SIGTERM: {code}.",
    ]
    return {
        "schema": "recengine-bench-serve/1", "kind": "serve", "created_at": utc_now(), "command": cfg.command,
        "machine": machine, "bundle": bundle_info,
        "server": {"args": args, "workers": cfg.workers, "threads": cfg.threads, "pool": cfg.pool,
                   "provider": provider, "rss_mib_start": rss_start, "rss_mib_end": rss_end, "versions": versions},
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()
                   if k not in ("bundle", "command", "quiet")},
        "in_process": in_process, "results": results, "overhead": overhead, "targets": targets, "notes": notes,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def serve_markdown(report: dict[str, Any]) -> str:
    """The Markdown summary: targets, HTTP table per endpoint and concurrency, in-process and overhead."""
    from .report import _machine_line

    m, b, s = report["machine"], report["bundle"], report["server"]
    out = [
        "# recengine HTTP serving bench",
        "",
        f"- date: {report['created_at']}",
        f"- machine: {_machine_line(report)}",
        f"- CPU instruction sets: {', '.join(m.get('cpu_flags') or []) or 'unknown'}",
        f"- command: `{report.get('command') or '(python API)'}`",
        f"- bundle: {b['path']} ({b['data']}: {b['n_items']} items, {b['n_users']} users, encoder {b['encoder']}, "
        f"variants {b.get('variants')}, fusion by default: {b['fusion_by_default']})",
        f"- server: `recengine serve {' '.join(s['args'])}` ({s['provider']}; "
        + ", ".join(f"{k} {v}" for k, v in s["versions"].items())
        + f"); resident memory {s['rss_mib_start']} MiB after start, {s['rss_mib_end']} MiB after the load",
        f"- per measurement: {report['config']['duration']} s or {report['config']['requests']} requests, after "
        f"{report['config']['warmup']} warm-up requests; closed loop, one keep-alive connection per client",
        "",
        "## Targets",
        "",
    ]
    for name, t in report["targets"].items():
        out.append(f"- {name}: {t['value']} (target {t['target']}"
                   + (f", errors {t['errors']}" if "errors" in t else "")
                   + f") — **{'met' if t['met'] else 'NOT met'}**")
    out += ["", "## Over HTTP (ms; requests/s over the measurement)", "",
            "| endpoint | concurrency | p50 | p95 | p99 | mean | req/s | requests | errors | server CPU µs/req "
            "| client CPU µs/req |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        out.append(f"| {r['endpoint']} | {r['concurrency']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | "
                   f"{r['mean_ms']} | {r['requests_per_s']} | {r['n_requests']} | {r['errors']} | "
                   f"{r.get('server_cpu_us_per_request')} | {r.get('client_cpu_us_per_request')} |")
    out += ["", "## In-process (same calls, one at a time) and the cost of HTTP at concurrency 1", "",
            "| endpoint | in-process p50 | p95 | p99 | HTTP p50 | overhead p50 | ratio |",
            "|---|---|---|---|---|---|---|"]
    over = {o["endpoint"]: o for o in report["overhead"]}
    for r in report["in_process"]:
        o = over.get(r["endpoint"], {})
        out.append(f"| {r['endpoint']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | {o.get('http_p50_ms')} | "
                   f"{o.get('overhead_p50_ms')} | {o.get('ratio_p50')}x |")
    out += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]] + ["", f"Total time: {report['seconds']} s", ""]
    return "\n".join(out)


def write_serve_report(report: dict[str, Any], directory: Path) -> dict[str, Path]:
    from .report import write_json

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    js = write_json(report, directory / "serve.json")
    md = directory / "serve.md"
    md.write_text(serve_markdown(report), encoding="utf-8")
    return {"json": js, "markdown": md}


__all__ = ["ServeBenchConfig", "run_serve_bench", "serve_markdown", "write_serve_report", "cpu_flags", "ENDPOINTS"]
