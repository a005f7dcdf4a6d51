"""The ASGI application: Starlette routes over one `Engine`, engine calls on a thread pool.

Why Starlette and not FastAPI: FastAPI adds dependency resolution and response re-validation to every
request; here each endpoint already validates its body with pydantic-core in one call
(`model_validate_json` on the raw bytes) and writes its JSON directly, so FastAPI's extra per-request
work would buy nothing but latency. The OpenAPI document is generated from the same pydantic models
(`recengine.server.openapi`). See docs/serve.md for the measured comparison.

Every request goes through `_endpoint`: request id (the caller's `X-Request-Id` or a fresh one, echoed in
the response header and in every error body), admin token check and body size limit on the event loop;
then, on the thread pool, JSON parse and validation, the engine call and the JSON encoding of the answer;
error mapping (`recengine.server.errors`) and metrics.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import RecengineError
from . import errors
from .config import ServerConfig
from .handlers import ROUTES, Call, RouteSpec
from .metrics import Metrics

log = logging.getLogger("recengine.server")

JSON = "application/json"


@dataclass
class ServerState:
    """What the endpoints share: the config, the engine (None until loaded), the pool, the metrics."""

    config: ServerConfig
    engine: Any = None
    pool: ThreadPoolExecutor | None = None
    metrics: Metrics = field(default_factory=Metrics)
    started_at: float = field(default_factory=time.time)


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    content = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    return Response(content, status_code=status, headers=headers, media_type=JSON)


def _error(error: errors.ApiError, rid: str) -> Response:
    return Response(errors.body(error, rid), status_code=error.status, media_type=JSON,
                    headers={"x-request-id": rid, **error.headers})


def _check_admin(request: Request, token: str | None) -> None:
    if token is None:
        raise errors.ApiError(403, "admin_disabled",
                              "admin endpoints are disabled on this server (start it with --admin-token)")
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise errors.ApiError(401, "unauthorized", "admin endpoints need 'Authorization: Bearer <token>'",
                              headers={"www-authenticate": "Bearer"})
    if not hmac.compare_digest(given.strip().encode("utf-8"), token.encode("utf-8")):
        raise errors.ApiError(403, "forbidden", "wrong admin token")


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` bytes (before reading it all)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise errors.ApiError(400, "bad_request", f"Content-Length is not a number: {declared!r}")
        if int(declared) > limit:
            raise errors.ApiError(413, "payload_too_large", f"request body of {declared} bytes exceeds the "
                                  f"limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise errors.ApiError(413, "payload_too_large", f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _check_content_type(request: Request) -> None:
    kind = request.headers.get("content-type")
    if kind is None:
        return
    mime = kind.split(";", 1)[0].strip().lower()
    if mime != JSON and not mime.endswith("+json"):
        raise errors.ApiError(415, "unsupported_media_type", f"request body must be application/json, got {kind!r}")


def _run(spec: RouteSpec, engine: Any, raw: bytes | None, path: dict[str, str], query: dict[str, str]) -> bytes:
    """Everything CPU-bound about one request, run on the pool: validate the body, call the engine, encode
    the JSON answer (a batch of 256 x 1000 results takes milliseconds to encode: not on the event loop)."""
    body = None
    if spec.body is not None:
        if spec.body_optional and not (raw or b"").strip():
            raw = b"{}"
        try:
            body = spec.body.model_validate_json(raw or b"")
        except ValidationError as exc:
            raise errors.from_validation(exc) from None
    payload = spec.handler(engine, Call(body=body, path=path, query=query))
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def _endpoint(spec: RouteSpec, state: ServerState) -> Callable[[Request], Awaitable[Response]]:
    """Wrap one handler with everything every request needs (see the module docstring). The event loop
    only checks headers and reads the body; `_run` does the rest on the pool."""

    async def respond(request: Request, rid: str) -> Response:
        try:
            if spec.admin:
                _check_admin(request, state.config.admin_token)
            raw = None
            if spec.body is not None:
                _check_content_type(request)
                raw = await _read_body(request, state.config.max_body_bytes)
            engine = state.engine
            if engine is None or state.pool is None:
                raise errors.ApiError(503, "unavailable", "the engine is not loaded yet")
            loop = asyncio.get_running_loop()
            content = await loop.run_in_executor(state.pool, partial(
                _run, spec, engine, raw, dict(request.path_params), dict(request.query_params)))
            return Response(content, media_type=JSON, headers={"x-request-id": rid})
        except errors.ApiError as exc:
            return _error(exc, rid)
        except RecengineError as exc:
            return _error(errors.from_engine(exc, spec.id_endpoint), rid)
        except ClientDisconnect:
            return _error(errors.ApiError(400, "bad_request", "client disconnected before sending the body"), rid)
        except Exception:  # a defect: log the traceback with the id, answer only the id
            log.exception("request %s %s %s failed", rid, request.method, request.url.path)
            return _error(errors.ApiError(500, "internal_error", "internal server error (see the server log "
                                          "for this request id)"), rid)

    async def endpoint(request: Request) -> Response:
        rid = errors.request_id(request.headers.get("x-request-id"))
        start = time.perf_counter()
        state.metrics.started()
        status = 499  # recorded if the request is cancelled (client gone) before an answer exists
        try:
            response = await respond(request, rid)
            status = response.status_code
            return response
        finally:
            state.metrics.finished(spec.name, request.method, status, time.perf_counter() - start)

    endpoint.__name__ = spec.name
    return endpoint


def _healthz(state: ServerState) -> Callable[[Request], Awaitable[Response]]:
    async def healthz(request: Request) -> Response:
        return _json({"status": "ok"})

    return healthz


def _readyz(state: ServerState) -> Callable[[Request], Awaitable[Response]]:
    async def readyz(request: Request) -> Response:
        engine = state.engine
        if engine is None:
            return _json({"ready": False}, status=503)
        return _json({"ready": True, "provider": engine.provider, "device": engine.device,
                      "bundle": str(engine.bundle_path), "n_items": engine.n_items, "n_users": engine.n_users,
                      "variants": engine.variants, "uses_fusion": engine.uses_fusion})

    return readyz


def _gauges(state: ServerState) -> list[tuple[str, str, dict[str, str], float]]:
    engine = state.engine
    out: list[tuple[str, str, dict[str, str], float]] = [
        ("recengine_up", "1 when the engine is loaded.", {}, 1.0 if engine is not None else 0.0),
        ("recengine_process_start_time_seconds", "Unix time the server process started.", {}, state.started_at),
    ]
    if engine is not None:
        out += [
            ("recengine_catalogue_items", "Live items in this worker's catalogue.", {}, float(engine.n_items)),
            ("recengine_users", "Users known to this worker.", {}, float(engine.n_users)),
            ("recengine_engine_info", "The engine's execution provider, device and bundle (value 1).",
             {"provider": engine.provider, "device": engine.device, "bundle": str(engine.bundle_path)}, 1.0),
        ]
    return out


def _metrics(state: ServerState) -> Callable[[Request], Awaitable[Response]]:
    async def metrics(request: Request) -> Response:
        text = state.metrics.render(partial(_gauges, state))
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    return metrics


def _openapi(state: ServerState) -> Callable[[Request], Awaitable[Response]]:
    from .openapi import openapi_document

    document = json.dumps(openapi_document(state.config)).encode("utf-8")

    async def openapi(request: Request) -> Response:
        return Response(document, media_type=JSON)

    return openapi


def _not_matched(state: ServerState) -> Callable[[Request, Exception], Awaitable[Response]]:
    """Starlette's own 404 (no route) and 405 (wrong method) as the server's JSON error shape."""

    async def handler(request: Request, exc: Exception) -> Response:
        rid = errors.request_id(request.headers.get("x-request-id"))
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        code = {404: "not_found", 405: "method_not_allowed"}.get(status, "bad_request")
        message = (f"no endpoint {request.method} {request.url.path}" if status == 404 else
                   f"method {request.method} is not allowed on {request.url.path}" if status == 405 else
                   str(getattr(exc, "detail", "bad request")))
        headers = dict(getattr(exc, "headers", None) or {})
        state.metrics.started()
        state.metrics.finished("unmatched", request.method, status, 0.0)
        return _error(errors.ApiError(status, code, message, headers=headers), rid)

    return handler


def load_engine(config: ServerConfig) -> Any:
    """Open and warm up the engine `config` names (the first request then pays no deferred work)."""
    from ..engine import Engine

    engine = Engine.open(config.bundle, device=config.device, threads=config.threads,
                         fresh_below=config.fresh_below)
    engine.warmup()
    return engine


def create_app(config: ServerConfig, engine: Any = None) -> Starlette:
    """The app for `config`. With `engine` given (tests, embedding) it serves that engine; otherwise it
    opens `config.bundle` at startup, before the server accepts connections (so /readyz is true as
    soon as the port answers), and warms it up."""
    state = ServerState(config=config, engine=engine)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.pool = ThreadPoolExecutor(max_workers=config.pool_size, thread_name_prefix="recengine-req")
        stop = asyncio.Event()
        watcher: asyncio.Task[None] | None = None
        try:
            if state.engine is None:
                loop = asyncio.get_running_loop()
                state.engine = await loop.run_in_executor(state.pool, load_engine, config)
                log.info("serving %s with %s (%d items, %d users)", config.bundle, state.engine.provider,
                         state.engine.n_items, state.engine.n_users)
            if config.watch is not None:
                from pathlib import Path

                from .watch import watch_pointer

                watcher = asyncio.create_task(watch_pointer(Path(config.watch), config.watch_interval_s,
                                                            lambda: state.engine, state.pool, stop))
            yield
        finally:
            stop.set()
            if watcher is not None:
                await watcher
            # the server has drained its connections by now; let any engine call still running finish
            state.pool.shutdown(wait=True)
            log.info("engine pool stopped")

    routes = [Route(spec.path, _endpoint(spec, state), methods=[spec.method], name=spec.name) for spec in ROUTES]
    routes += [
        Route("/healthz", _healthz(state), methods=["GET"], name="healthz"),
        Route("/readyz", _readyz(state), methods=["GET"], name="readyz"),
        Route("/metrics", _metrics(state), methods=["GET"], name="metrics"),
        Route("/openapi.json", _openapi(state), methods=["GET"], name="openapi"),
    ]
    not_matched = _not_matched(state)
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: not_matched})
    app.state.recengine = state
    return app


def app_from_env() -> Starlette:
    """App factory for `--workers N`: each worker process reads the config from `RECENGINE_SERVE_CONFIG`
    (set by the parent) and opens its own engine."""
    import os
    import sys

    from .config import ENV_CONFIG

    text = os.environ.get(ENV_CONFIG)
    if not text:
        raise RecengineError(f"{ENV_CONFIG} is not set: start workers through `recengine serve`")
    config = ServerConfig.from_json(text)
    if config.switch_interval_s is not None:
        sys.setswitchinterval(config.switch_interval_s)
    return create_app(config)
