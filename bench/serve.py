"""`recengine bench serve BUNDLE`: the HTTP server under load from a real client, against in-process calls.

The server runs as a separate process (`recengine serve --port 0`, started by
`recengine.server.process.ServerProcess`); a lean asyncio HTTP/1.1 client (`recengine.bench.serve_client`:
pre-encoded requests, keep-alive, one connection per concurrent client, closed loop: each connection sends
its next request when the last one answered) drives every endpoint at each concurrency. The same calls are
timed in-process (`Engine` in this process, one call at a time) in the same run, right before that
endpoint's HTTP measurements, so the cost of HTTP is reported as a difference and a ratio taken under the
same machine load.

What the numbers include: the client runs on the same machine (its CPU time competes with the server's:
on 2 cores that is part of what is measured). So every result carries both sides' CPU time per request:
`server_cpu_us_per_request` (user + system time of the server process and all its workers, from /proc)
and `client_cpu_us_per_request` (this process's). Latency is per request, from just before the client
writes it to the arrival of the response's last byte; a request counts as a success when the status is
200 and the body holds a result list.

JSON (`schema` = "recengine-bench-serve/1"): `kind` "serve", `created_at`, `command`, `machine`
(+ `cpu_flags`, `load_average_at_end`), `bundle` {path, data, n_items, n_users, encoder, fusion_by_default},
`server` {args, workers, threads, pool, provider, rss_mib_start, rss_mib_end, versions}, `client` {name,
processes}, `config`, `in_process[]` {endpoint, p50_ms, p95_ms, p99_ms, mean_ms, n_requests}, `results[]`
{endpoint, concurrency, p50_ms, p95_ms, p99_ms, mean_ms, requests_per_s, n_requests, errors, error_kinds,
server_cpu_us_per_request, server_user_us_per_request, server_system_us_per_request,
client_cpu_us_per_request, load_average, coalesced_share, mean_coalesced (one-worker servers; else null),
requests_per_worker (several workers: each worker's share of the requests, largest first; null if a worker
could not be reached)},
`overhead[]` {endpoint, concurrency 1, http_p50_ms, in_process_p50_ms, overhead_p50_ms, ratio_p50}, `targets`,
`notes`, `seconds`.
"""

from __future__ import annotations

import json
import os
import time
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


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (Linux /proc): a server with `--workers N` is a supervisor and N
    worker processes, and all of them spend CPU on the requests."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return [pid]
    for entry in entries:
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def cpu_times(pids: list[int]) -> tuple[float, float] | None:
    """(user, system) CPU seconds the processes `pids` have used so far (Linux /proc/PID/stat)."""
    tick = os.sysconf("SC_CLK_TCK")
    user = system = 0.0
    found = False
    for pid in pids:
        fields = _stat(pid)
        if fields is None:
            continue
        try:
            user += int(fields[11]) / tick
            system += int(fields[12]) / tick
            found = True
        except (ValueError, IndexError):
            continue
    return (user, system) if found else None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time the process `pid` and its descendants have used so far, seconds."""
    times = cpu_times(process_tree(pid))
    return None if times is None else times[0] + times[1]


def _tree_rss(pid: int) -> float | None:
    sizes = [r for r in (rss_mib(p) for p in process_tree(pid)) if r is not None]
    return round(sum(sizes), 1) if sizes else None


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


def _scrape(url: str) -> str | None:
    """The server's /metrics text over a fresh connection (with several workers, whichever accepts it)."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
            return str(response.read().decode("utf-8"))
    except OSError:
        return None


def worker_requests(text: str) -> tuple[float, int] | None:
    """(the worker's start time, the requests it has answered) from one /metrics text: which worker answered
    the scrape, and its count (every endpoint, unmatched paths left out); None if the text lacks them."""
    start, total = None, 0
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == "recengine_process_start_time_seconds":
            start = float(value)
        elif name.startswith("recengine_http_requests_total{") and 'endpoint="unmatched"' not in name:
            total += int(float(value))
    return None if start is None else (start, total)


def requests_by_worker(url: str, workers: int, tries: int = 40) -> dict[float, int]:
    """Worker start time -> requests answered, from up to `tries` scrapes (each a new connection, so any
    worker may take it) until every worker has answered one."""
    seen: dict[float, int] = {}
    for _ in range(tries):
        text = _scrape(url)
        got = worker_requests(text) if text is not None else None
        if got is not None:
            seen[got[0]] = got[1]
        if len(seen) >= workers:
            break
    return seen


def coalesced_counts(url: str) -> tuple[int, int] | None:
    """(engine calls that answered several requests together, requests they answered) from the server's
    /metrics (`recengine serve --coalesce`); None if they cannot be read. With several workers a scrape
    reaches one of them, so `_drive` reads them only from a one-worker server."""
    text = _scrape(url)
    if text is None:
        return None
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("recengine_coalesced_calls_total", "recengine_coalesced_requests_total"):
            values[name] = int(float(value))
    if len(values) != 2:
        return None
    return values["recengine_coalesced_calls_total"], values["recengine_coalesced_requests_total"]


def _drive(url: str, calls: list[Call], concurrency: int, cfg: ServeBenchConfig,
           server_pid: int | None = None) -> dict[str, Any]:
    """`concurrency` clients in a closed loop over keep-alive connections (`serve_client.drive`);
    per-request latency, and the CPU time the server's processes and this client process spent per
    request (robust to a busy machine, unlike wall-clock latency). With one worker also how many requests
    the server answered together (`coalesced_share` of the requests sent, `mean_coalesced` per such call;
    None with several workers, whose counts one scrape cannot sum)."""
    from .machine import load_average
    from .serve_client import drive, run

    pids = process_tree(server_pid) if server_pid else []  # the workers exist by now: fixed for the run
    requests = [(c.method, c.path, c.body) for c in calls]
    warmup = max(1, cfg.warmup // max(1, concurrency)) + 1
    one_worker = cfg.workers == 1
    coalesced0 = coalesced_counts(url) if one_worker else None
    split0 = requests_by_worker(url, cfg.workers) if not one_worker else {}
    server0 = cpu_times(pids) if pids else None
    result = run(drive(url, requests, concurrency, cfg.duration, cfg.requests, warmup))
    server1 = cpu_times(pids) if pids else None
    coalesced1 = coalesced_counts(url) if one_worker else None
    split1 = requests_by_worker(url, cfg.workers) if not one_worker else {}
    out = _summary(result.samples_ms)
    done = result.sent
    per = (lambda seconds: round(seconds / done * 1e6, 1)) if done else (lambda seconds: None)
    out.update({"requests_per_s": round(len(result.samples_ms) / result.wall_s, 1) if result.wall_s > 0 else None,
                "errors": sum(result.errors.values()), "error_kinds": dict(result.errors),
                "wall_s": round(result.wall_s, 3), "n_sent": done,
                "client_cpu_us_per_request": per(result.client_cpu_s)})
    if server0 is not None and server1 is not None:
        out.update({"server_cpu_us_per_request": per(server1[0] + server1[1] - server0[0] - server0[1]),
                    "server_user_us_per_request": per(server1[0] - server0[0]),
                    "server_system_us_per_request": per(server1[1] - server0[1])})
    else:
        out["server_cpu_us_per_request"] = None
    out["load_average"] = load_average()
    # with several workers: how the measurement's requests fell on them (the connections are spread by
    # whichever worker accepts each one; a worker holding most of them sets the tail)
    out["requests_per_worker"] = (sorted((split1[w] - split0[w] for w in split1 if w in split0), reverse=True)
                                  if len(split1) == cfg.workers and set(split1) == set(split0) else None)
    out["coalesced_share"] = out["mean_coalesced"] = None
    if coalesced0 is not None and coalesced1 is not None and done:
        calls_n, answered = coalesced1[0] - coalesced0[0], coalesced1[1] - coalesced0[1]
        # the warm-up requests are inside the counts too: a share of all requests sent
        out["coalesced_share"] = round(min(1.0, answered / (done + warmup * concurrency)), 3)
        out["mean_coalesced"] = round(answered / calls_n, 2) if calls_n else None
    return out


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
    server = ServerProcess(cfg.bundle, args)
    url = server.start(timeout=300)
    assert server.proc is not None
    rss_start = _tree_rss(server.proc.pid)
    try:
        # per endpoint: in-process, then HTTP at each concurrency, back to back, so that both see the same
        # machine (a shared machine's load drifts over minutes)
        for name, cs in calls.items():
            row = {"endpoint": name, **measure_in_process(engine, cs, cfg)}
            in_process.append(row)
            say(f"in-process {name}: p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms")
            for c in cfg.concurrency:
                row = {"endpoint": name, "concurrency": c,
                       **_drive(url, cs, c, cfg, server_pid=server.proc.pid)}
                results.append(row)
                say(f"http {name} c={c}: p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, "
                    f"{row['requests_per_s']} req/s, errors {row['errors']}, server CPU "
                    f"{row['server_cpu_us_per_request']} us/request, client CPU "
                    f"{row['client_cpu_us_per_request']} us/request")
        rss_end = _tree_rss(server.proc.pid)
        rss_each = [rss_mib(p) for p in process_tree(server.proc.pid)]
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
    for lib in ("starlette", "uvicorn", "httptools", "uvloop", "pydantic", "pydantic-core"):
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            continue
    notes = [
        "The load generator (recengine.bench.serve_client: pre-encoded HTTP/1.1 requests on asyncio protocols over "
        "uvloop, closed loop, keep-alive) runs on the same machine as the server: its CPU time competes with the "
        "server's, so on few cores the numbers include the client's share (client CPU per request is reported).",
        "Server CPU per request: user + system time of the server process and all its workers (/proc), over the "
        "measured requests.",
        "In-process: the same calls on an Engine in the bench process, one at a time, with the same ONNX Runtime "
        "thread count as the server.",
        f"Server exit code after SIGTERM: {code}.",
    ]
    return {
        "schema": "recengine-bench-serve/1", "kind": "serve", "created_at": utc_now(), "command": cfg.command,
        "machine": machine, "bundle": bundle_info,
        "server": {"args": args, "workers": cfg.workers, "threads": cfg.threads, "pool": cfg.pool,
                   "provider": provider, "rss_mib_start": rss_start, "rss_mib_end": rss_end,
                   "rss_mib_per_process_end": rss_each, "versions": versions},
        "client": {"name": "recengine.bench.serve_client", "processes": 1},
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
        + f"); resident memory {s['rss_mib_start']} MiB after start, {s['rss_mib_end']} MiB after the load "
        f"(all server processes; per process at the end: {s.get('rss_mib_per_process_end')})",
        f"- client: {report.get('client', {}).get('name')} ({report.get('client', {}).get('processes')} process, "
        "on the same machine)",
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
            "| client CPU µs/req | answered together (share, mean per call) or requests per worker | load (1 min) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        together = "–" if r.get("coalesced_share") is None else \
            f"{r['coalesced_share']}, {r.get('mean_coalesced') or '–'}"
        if r.get("requests_per_worker"):
            together = "per worker " + " / ".join(str(n) for n in r["requests_per_worker"])
        out.append(f"| {r['endpoint']} | {r['concurrency']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | "
                   f"{r['mean_ms']} | {r['requests_per_s']} | {r['n_requests']} | {r['errors']} | "
                   f"{r.get('server_cpu_us_per_request')} | {r.get('client_cpu_us_per_request')} | {together} | "
                   f"{(r.get('load_average') or [None])[0]} |")
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
