"""The ASGI application: Starlette routes over one `Engine`, engine calls on a dedicated thread pool.

Why Starlette and not FastAPI: FastAPI adds dependency resolution and response re-validation to every
request; here each endpoint already validates its body with pydantic-core in one call
(`model_validate_json` on the raw bytes) and writes its JSON directly, so FastAPI's extra per-request
work would buy nothing but latency. The OpenAPI document is generated from the same pydantic models
(`recengine.server.openapi`). See docs/serve.md for the measured comparison.

Every engine endpoint is an `EngineEndpoint` (a plain ASGI app): request id (the caller's `X-Request-Id`
or a fresh one, echoed in the response header and in every error body), admin token check and body size
limit on the event loop; then, on the engine pool (`recengine.server.pool`), JSON parse and validation,
the engine call and the JSON encoding of the answer; error mapping (`recengine.server.errors`) and
metrics. `RecengineApp` hands requests for the endpoints with a fixed path (`POST /recommend`,
`/search`, ...) straight to their endpoint and everything else (paths with ids, health, metrics,
OpenAPI, 404/405) to Starlette's router: the same endpoint objects either way, minus the router's and
middleware's per-request work on the hot paths (measured in docs/serve.md).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

from pydantic import ValidationError
from pydantic_core import to_json
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ..errors import RecengineError
from . import errors, heap
from .config import ServerConfig
from .handlers import ROUTES, Call, RouteSpec
from .metrics import Metrics
from .pool import EnginePool

log = logging.getLogger("recengine.server")

JSON = "application/json"
JSON_BYTES = JSON.encode()


@dataclass
class ServerState:
    """What the endpoints share: the config, the engine (None until loaded), the pool, the coalescing lane
    (one thread that answers the endpoints with a `batch` handler, see `recengine.server.pool`), the
    metrics."""

    config: ServerConfig
    engine: Any = None
    pool: EnginePool | None = None
    lane: EnginePool | None = None
    metrics: Metrics = field(default_factory=Metrics)
    ids: errors.RequestIds = field(default_factory=errors.RequestIds)
    started_at: float = field(default_factory=time.time)


def dumps(payload: Any) -> bytes:
    """Compact UTF-8 JSON (pydantic-core's encoder: ~6x faster than `json.dumps` on a result list, and
    already a dependency). Non-finite floats never reach it: `handlers.results` refuses them."""
    return to_json(payload)


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(payload), status_code=status, headers=headers, media_type=JSON)


def _error(error: errors.ApiError, rid: str) -> Response:
    return Response(errors.body(error, rid), status_code=error.status, media_type=JSON,
                    headers={"x-request-id": rid, **error.headers})


def _parse(spec: RouteSpec, raw: bytes | None) -> Any:
    """The validated body of a request to `spec` (None for endpoints without one); 422 names what is wrong."""
    if spec.body is None:
        return None
    if spec.body_optional and not (raw or b"").strip():
        raw = b"{}"
    try:
        return spec.body.model_validate_json(raw or b"")
    except ValidationError as exc:
        raise errors.from_validation(exc) from None


def _run(spec: RouteSpec, engine: Any, raw: bytes | None, path: dict[str, str], query: dict[str, str]) -> bytes:
    """Everything CPU-bound about one request, run on the pool: validate the body, call the engine, encode
    the JSON answer (a batch of 256 x 1000 results takes milliseconds to encode: not on the event loop)."""
    return _answer(spec, engine, _parse(spec, raw), path, query)


def _answer(spec: RouteSpec, engine: Any, body: Any, path: dict[str, str] | None = None,
            query: dict[str, str] | None = None) -> bytes:
    """One validated request answered alone: the handler's result as JSON."""
    return dumps(spec.handler(engine, Call(body=body, path=path or {}, query=query or {})))


def _outcome(fn: Callable[..., bytes], *args: Any) -> tuple[bytes | None, BaseException | None]:
    try:
        return fn(*args), None
    except Exception as exc:  # handed to that request alone, which maps it to its response
        return None, exc


def _run_together(jobs: list[tuple[RouteSpec, Any, bytes | None, Metrics]]
                  ) -> list[tuple[bytes | None, BaseException | None]]:
    """Coalesced requests (`EnginePool.run_batched`, `ServerConfig.coalesce`): each body validated on its
    own (a bad one gets its own 4xx), the valid ones of one endpoint and engine answered by its `batch`
    handler in one engine call (counted in the metrics), each answer encoded on its own. If that call fails,
    every request of it is answered alone, so one request's error never becomes another's."""
    outcomes: list[tuple[bytes | None, BaseException | None]] = [(None, None)] * len(jobs)
    groups: dict[tuple[int, int], list[tuple[int, Any]]] = {}
    for j, (spec, engine, raw, _) in enumerate(jobs):
        try:
            body = _parse(spec, raw)
        except Exception as exc:  # that request's own error (a 422, or a defect mapped to its 500)
            outcomes[j] = (None, exc)
            continue
        groups.setdefault((id(spec), id(engine)), []).append((j, body))
    for members in groups.values():
        spec, engine, _, metrics = jobs[members[0][0]]
        call = partial(_answer, spec, engine)
        answers: list[bytes] | None = None
        if len(members) > 1 and spec.batch is not None:
            try:
                answers = [dumps(answer) for answer in spec.batch(engine, [body for _, body in members])]
                if len(answers) != len(members):
                    raise RuntimeError(f"{spec.name}: {len(answers)} answers for {len(members)} requests")
                metrics.coalesced(len(members))
            except RecengineError:  # a request the engine refuses: each alone finds which one
                answers = None
            except Exception:
                log.warning("coalesced %s call of %d requests failed; answering each alone", spec.name,
                            len(members), exc_info=True)
                answers = None
        if answers is None:
            for j, body in members:
                outcomes[j] = _outcome(call, body)
        else:
            for (j, _), content in zip(members, answers):
                outcomes[j] = (content, None)
    return outcomes


class _Headers:
    """The request headers an endpoint reads, taken from the ASGI scope in one pass (names arrive
    lower-cased; values are latin-1, as HTTP/1.1 defines them)."""

    __slots__ = ("request_id", "content_type", "content_length", "authorization")

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self.request_id = self.content_type = self.content_length = self.authorization = None
        for name, value in raw:
            if name == b"content-type":
                self.content_type = value.decode("latin-1")
            elif name == b"content-length":
                self.content_length = value.decode("latin-1")
            elif name == b"x-request-id":
                self.request_id = value.decode("latin-1")
            elif name == b"authorization":
                self.authorization = value.decode("latin-1")


def _check_admin(authorization: str | None, token: str | None) -> None:
    if token is None:
        raise errors.ApiError(403, "admin_disabled",
                              "admin endpoints are disabled on this server (start it with --admin-token)")
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise errors.ApiError(401, "unauthorized", "admin endpoints need 'Authorization: Bearer <token>'",
                              headers={"www-authenticate": "Bearer"})
    if not hmac.compare_digest(given.strip().encode("utf-8"), token.encode("utf-8")):
        raise errors.ApiError(403, "forbidden", "wrong admin token")


def _check_content_type(kind: str | None) -> None:
    if kind is None:
        return
    mime = kind.split(";", 1)[0].strip().lower()
    if mime != JSON and not mime.endswith("+json"):
        raise errors.ApiError(415, "unsupported_media_type", f"request body must be application/json, got {kind!r}")


async def _read_body(receive: Receive, declared: str | None, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` bytes (before reading it all)."""
    if declared is not None:
        if not declared.isdigit():
            raise errors.ApiError(400, "bad_request", f"Content-Length is not a number: {declared!r}")
        if int(declared) > limit:
            raise errors.ApiError(413, "payload_too_large", f"request body of {declared} bytes exceeds the "
                                  f"limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect: the client left before sending it all
            raise errors.ApiError(400, "bad_request", "client disconnected before sending the body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise errors.ApiError(413, "payload_too_large", f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class EngineEndpoint:
    """One engine endpoint as a plain ASGI app (what every request needs, see the module docstring).

    Plain ASGI rather than a Starlette `Request`/`Response` function: this path runs for every request,
    and the objects and wrappers of the function form cost more CPU than the whole body validation. The
    event loop only reads the headers and the body; `_run` does the rest on the engine pool."""

    def __init__(self, spec: RouteSpec, state: ServerState) -> None:
        self.spec = spec
        self.state = state
        self.__name__ = spec.name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state, spec = self.state, self.spec
        start = time.perf_counter()
        headers = _Headers(scope["headers"])
        rid = errors.request_id(headers.request_id, state.ids)
        state.metrics.started()
        status = 499  # recorded if the request is cancelled (client gone) before an answer exists
        try:
            status, content, extra = await self._respond(scope, receive, headers, rid)
            response_headers = [(b"content-type", JSON_BYTES), (b"content-length", str(len(content)).encode()),
                                (b"x-request-id", rid.encode())]
            if extra:
                response_headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]
            await send({"type": "http.response.start", "status": status, "headers": response_headers})
            await send({"type": "http.response.body", "body": content})
        finally:
            state.metrics.finished(spec.name, scope["method"], status, time.perf_counter() - start)

    async def _respond(self, scope: Scope, receive: Receive, headers: _Headers,
                       rid: str) -> tuple[int, bytes, dict[str, str] | None]:
        state, spec = self.state, self.spec
        try:
            if spec.admin:
                _check_admin(headers.authorization, state.config.admin_token)
            raw = None
            if spec.body is not None:
                _check_content_type(headers.content_type)
                raw = await _read_body(receive, headers.content_length, state.config.max_body_bytes)
            engine, pool = state.engine, state.pool
            if engine is None or pool is None:
                raise errors.ApiError(503, "unavailable", "the engine is not loaded yet")
            query = scope["query_string"]
            lane = state.lane
            if spec.batch is not None and lane is not None:
                content = await lane.run_batched(_run_together, (spec, engine, raw, state.metrics))
            else:
                content = await pool.run(_run, spec, engine, raw, scope.get("path_params") or {},
                                         dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True))
                                         if query else {})
                if spec.reloads and state.config.freeze_heap:
                    await pool.run(heap.settle)
            return 200, content, None
        except errors.ApiError as exc:
            error = exc
        except RecengineError as exc:
            error = errors.from_engine(exc, spec.id_endpoint)
        except Exception:  # a defect: log the traceback with the id, answer only the id
            log.exception("request %s %s %s failed", rid, scope["method"], scope["path"])
            error = errors.ApiError(500, "internal_error", "internal server error (see the server log for this "
                                    "request id)")
        return error.status, errors.body(error, rid), error.headers


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
                      "variants": engine.variants, "item_variant": engine.item_variant,
                      "uses_fusion": engine.uses_fusion})

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

    document = dumps(openapi_document(state.config))

    async def openapi(request: Request) -> Response:
        return Response(document, media_type=JSON)

    return openapi


def _not_matched(state: ServerState) -> Callable[[Request, Exception], Awaitable[Response]]:
    """Starlette's own 404 (no route) and 405 (wrong method) as the server's JSON error shape."""

    async def handler(request: Request, exc: Exception) -> Response:
        rid = errors.request_id(request.headers.get("x-request-id"), state.ids)
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
    from ..overlap import usable_cpus

    cpus = usable_cpus()
    # search's helper thread only where the workers' own ONNX threads leave a CPU idle (`recengine.overlap`)
    overlap = config.workers * (config.threads or cpus) < cpus
    engine = Engine.open(config.bundle, device=config.device, threads=config.threads,
                         fresh_below=config.fresh_below, cooccur_weight=config.cooccur_weight,
                         item_variant=config.item_variant, overlap=overlap)
    engine.warmup()
    if config.freeze_heap:
        heap.settle()  # the loaded engine out of the garbage collector's walks (p99)
    return engine


class RecengineApp(Starlette):
    """Starlette, plus a direct hand-off for the engine endpoints whose path has no parameter.

    `(method, path)` of such a request is one dict lookup away from its `EngineEndpoint`; Starlette's
    error middleware, exception wrapper and router (which tries the routes in order) are skipped, and
    nothing else changes: the endpoint handles every error itself, and any other request (a path with an
    id, a wrong method, an unknown path, a mounted root path) takes Starlette's way."""

    def __init__(self, *args: Any, direct: dict[tuple[str, str], EngineEndpoint], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.direct = direct

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            endpoint = self.direct.get((scope["method"], scope["path"]))
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(config: ServerConfig, engine: Any = None) -> RecengineApp:
    """The app for `config`. With `engine` given (tests, embedding) it serves that engine; otherwise it
    opens `config.bundle` at startup, before the server accepts connections (so /readyz is true as
    soon as the port answers), and warms it up."""
    state = ServerState(config=config, engine=engine)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.pool = EnginePool(config.pool_size)
        if config.coalesce > 1:
            state.lane = EnginePool(1, name="recengine-lane", max_batch=config.coalesce)
        stop = asyncio.Event()
        watcher: asyncio.Task[None] | None = None
        try:
            if state.engine is None:
                state.engine = await state.pool.run(load_engine, config)
                log.info("serving %s with %s (%d items, %d users)", config.bundle, state.engine.provider,
                         state.engine.n_items, state.engine.n_users)
            if config.watch is not None:
                from pathlib import Path

                from .watch import watch_pointer

                watcher = asyncio.create_task(watch_pointer(Path(config.watch), config.watch_interval_s,
                                                            lambda: state.engine, state.pool, stop,
                                                            settle=config.freeze_heap))
            yield
        finally:
            stop.set()
            if watcher is not None:
                await watcher
            # the server has drained its connections by now; let any engine call still running finish
            if state.lane is not None:
                state.lane.shutdown(wait=True)
            state.pool.shutdown(wait=True)
            log.info("engine pool stopped")

    endpoints = [EngineEndpoint(spec, state) for spec in ROUTES]
    routes = [Route(e.spec.path, e, methods=[e.spec.method], name=e.spec.name) for e in endpoints]
    routes += [
        Route("/healthz", _healthz(state), methods=["GET"], name="healthz"),
        Route("/readyz", _readyz(state), methods=["GET"], name="readyz"),
        Route("/metrics", _metrics(state), methods=["GET"], name="metrics"),
        Route("/openapi.json", _openapi(state), methods=["GET"], name="openapi"),
    ]
    direct = {(e.spec.method, e.spec.path): e for e in endpoints if "{" not in e.spec.path}
    app = RecengineApp(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _not_matched(state)},
                       direct=direct)
    app.state.recengine = state
    return app


def app_from_env() -> RecengineApp:
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
