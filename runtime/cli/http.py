"""`recengine serve BUNDLE`: the engine over HTTP (extra `serve`).

The server modules are imported inside the command, so `recengine --help` works (and names the extra)
where Starlette/uvicorn are not installed.
"""

from __future__ import annotations

import importlib
import json

import click

from ..errors import DependencyError

_SERVE_PACKAGES = ("starlette", "uvicorn", "pydantic")


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def _require_serve_extra() -> None:
    missing = [name for name in _SERVE_PACKAGES if not _importable(name)]
    if missing:
        raise DependencyError(f"recengine serve needs the serve extra (missing: {', '.join(missing)}): "
                              "pip install 'recengine[serve]'")


@click.command("serve")
@click.argument("bundle", type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to bind; 0.0.0.0 exposes the server to the network (put a proxy with TLS in front).")
@click.option("--port", type=int, default=8000, show_default=True, help="TCP port (0 = any free port).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Execution device; cuda fails if CUDA is not really active.")
@click.option("--threads", type=int, default=1, show_default=True,
              help="ONNX Runtime threads per model run (concurrent requests already use the cores).")
@click.option("--workers", type=int, default=1, show_default=True,
              help="Processes, each with its own engine (memory x N; writes stay in the worker that took them).")
@click.option("--pool", "pool_size", type=int, default=None,
              help="Threads per process running engine calls (default: one per core, at least 2); /recommend "
                   "runs on its own one-thread coalescing lane unless --coalesce 1.")
@click.option("--coalesce", type=int, default=16, show_default=True,
              help="Most concurrent /recommend calls answered by one engine call (each gets its lone answer; "
                   "1: never together).")
@click.option("--admin-token", envvar="RECENGINE_ADMIN_TOKEN", default=None,
              help="Enable /admin/save and /admin/reload behind 'Authorization: Bearer TOKEN' "
                   "(or set RECENGINE_ADMIN_TOKEN). Without it they answer 403.")
@click.option("--fresh-below", type=int, default=5, show_default=True,
              help="Items with fewer interactions are fresh for a request's `fresh` share of the slots.")
@click.option("--cooccur-weight", type=float, default=None,
              help="Weight of the item co-occurrence signal in /recommend (default: the bundle's; 0: the user "
                   "tower alone).")
@click.option("--item-variant", type=click.Choice(["fp32", "int8", "fp16"]), default=None,
              help="Encoder variant for items added through POST /items (default: fp32 where the serving encoder "
                   "is INT8, so they match the export's catalogue vectors; int8 adds faster).")
@click.option("--watch", "watch", type=click.Path(dir_okay=False), default=None,
              help="Pointer file holding the path of the bundle to serve; every worker polls it and reloads "
                   "when it names another bundle (how a fleet moves to a new bundle).")
@click.option("--watch-interval", type=float, default=10.0, show_default=True, help="Seconds between polls.")
@click.option("--max-body-bytes", type=int, default=1 << 20, show_default=True, help="Request body size limit.")
@click.option("--graceful-timeout", type=float, default=30.0, show_default=True,
              help="Seconds shutdown waits for in-flight requests.")
@click.option("--switch-interval", type=float, default=0.0005, show_default=True,
              help="GIL switch interval (s) of the server process; 0 keeps Python's 5 ms (worse p99 under load).")
@click.option("--access-log", is_flag=True, help="Log every request (costs latency).")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]), default="info",
              show_default=True)
@click.option("--print-openapi", is_flag=True, help="Print the OpenAPI document and exit (nothing is loaded).")
def serve_command(bundle: str, host: str, port: int, device: str, threads: int, workers: int, pool_size: int | None,
                  coalesce: int, admin_token: str | None, fresh_below: int, cooccur_weight: float | None,
                  item_variant: str | None, watch: str | None,
                  watch_interval: float,
                  max_body_bytes: int, graceful_timeout: float, switch_interval: float, access_log: bool,
                  log_level: str, print_openapi: bool) -> None:
    """Serve BUNDLE over HTTP: /recommend, /search, /items, /users/{id}/events, /metrics, ... (docs/serve.md)."""
    _require_serve_extra()
    from ..server.config import ServerConfig

    extra = {} if pool_size is None else {"pool_size": pool_size}
    config = ServerConfig(
        bundle=bundle, host=host, port=port, device=device, threads=threads, workers=workers, coalesce=coalesce,
        freeze_heap=True,
        admin_token=admin_token or None, fresh_below=fresh_below, cooccur_weight=cooccur_weight,
        item_variant=item_variant, watch=watch,
        watch_interval_s=watch_interval,
        max_body_bytes=max_body_bytes, graceful_timeout_s=graceful_timeout,
        switch_interval_s=switch_interval or None, access_log=access_log, log_level=log_level, **extra,
    )
    if print_openapi:
        from ..server.openapi import openapi_document

        click.echo(json.dumps(openapi_document(config), indent=1))
        return
    from ..server.runner import serve

    serve(config)
