"""Why the server is a plain ASGI endpoint on Starlette and not a Starlette function endpoint or FastAPI:
the per-request CPU of each, on the same engine call.

    python -m recengine.bench.serve_frameworks BUNDLE [--requests 2000] [--rounds 5] [--concurrency 1,8]

Three apps answer `POST /recommend {"user_id": ..., "k": 10}` with the same pydantic body model and the
same engine call off the event loop:

- recengine.server as served: `EngineEndpoint` (plain ASGI: headers read from the scope, body from
  `receive`), handed the request directly by `RecengineApp`, engine call on `EnginePool`, JSON by
  pydantic-core;
- the idiomatic Starlette function endpoint: `Request.body()`, `run_in_threadpool` (AnyIO's worker
  threads), `JSONResponse`, behind Starlette's router and middleware;
- the idiomatic FastAPI equivalent: a sync endpoint with the body model as its parameter and
  `RecommendResponse` as its response model (FastAPI is not a dependency of recengine: skipped when absent).

Each request is driven straight through the ASGI interface (no sockets, no HTTP parser: those are
uvicorn's and identical for all), by `concurrency` clients in a closed loop on a uvloop event loop; rounds
alternate between the apps so a noisy machine hits all alike. Reported per app and concurrency: wall time
and process CPU time per request (median over rounds), and the engine call alone for scale.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from recengine.server.schemas import RecommendBody, RecommendResponse  # module level: FastAPI resolves annotations here

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def fastapi_app(engine: Any) -> Any:
    """The idiomatic FastAPI version of POST /recommend over the same engine and schemas."""
    from fastapi import FastAPI

    from recengine.server.handlers import results

    app = FastAPI()

    @app.post("/recommend", response_model=RecommendResponse)
    def recommend(body: RecommendBody) -> Any:  # sync def: FastAPI runs it on its thread pool
        return results(engine.recommend(**body.model_dump()))

    return app


def starlette_function_app(engine: Any) -> Any:
    """The idiomatic Starlette version: a function endpoint with `Request`, `run_in_threadpool` and
    `JSONResponse` (what recengine.server did before its endpoints became plain ASGI apps)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from recengine.server.handlers import results

    def call(raw: bytes) -> dict[str, Any]:
        return results(engine.recommend(**RecommendBody.model_validate_json(raw).model_dump()))

    async def recommend(request: Request) -> JSONResponse:
        return JSONResponse(await run_in_threadpool(call, await request.body()))

    return Starlette(routes=[Route("/recommend", recommend, methods=["POST"])])


async def _call(app: ASGIApp, body: bytes) -> int:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/recommend", "raw_path": b"/recommend", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def _lifespan(app: Any, n: int, bodies: list[bytes], concurrency: int) -> tuple[float, float]:
    """`n` requests from `concurrency` closed-loop clients inside the app's lifespan; (wall s, CPU s)
    per request."""
    router = getattr(app, "router", app)
    async with router.lifespan_context(app):
        for i in range(50):
            assert await _call(app, bodies[i % len(bodies)]) == 200

        async def client(k: int) -> None:
            for i in range(k, n, concurrency):
                await _call(app, bodies[i % len(bodies)])

        w, c = time.perf_counter(), time.process_time()
        await asyncio.gather(*(client(k) for k in range(concurrency)))
        return (time.perf_counter() - w) / n, (time.process_time() - c) / n


def _loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", default="1,8")
    args = parser.parse_args()
    import sys

    from recengine import Engine
    from recengine.server import ServerConfig, create_app

    config = ServerConfig(bundle=args.bundle)
    if config.switch_interval_s is not None:
        sys.setswitchinterval(config.switch_interval_s)  # as `recengine serve` does
    engine = Engine.open(args.bundle, device="cpu", threads=1)
    engine.warmup()
    bodies = [json.dumps({"user_id": u, "k": 10}).encode() for u in engine.user_ids()[:256]]
    apps: dict[str, Callable[[], Any]] = {
        "recengine.server (ASGI endpoint, direct hand-off, engine pool)": lambda: create_app(config, engine=engine),
        "starlette function endpoint (Request, run_in_threadpool, JSONResponse)":
            lambda: starlette_function_app(engine),
    }
    try:
        import fastapi  # noqa: F401

        apps["fastapi (sync endpoint, body model parameter, response_model)"] = lambda: fastapi_app(engine)
    except ImportError:
        pass
    levels = [int(c) for c in args.concurrency.split(",")]
    per: dict[tuple[str, int], list[tuple[float, float]]] = {(name, c): [] for name in apps for c in levels}
    for _ in range(args.rounds):
        for c in levels:
            for name, make in apps.items():
                loop = _loop()
                try:
                    per[(name, c)].append(loop.run_until_complete(_lifespan(make(), args.requests, bodies, c)))
                finally:
                    loop.close()
    users = engine.user_ids()[:256]
    local_wall, t0 = [], time.process_time()
    for i in range(args.requests):
        t = time.perf_counter()
        engine.recommend(user_id=users[i % len(users)], k=10)
        local_wall.append(time.perf_counter() - t)
    local_cpu = (time.process_time() - t0) / args.requests
    out: dict[str, Any] = {}
    for (name, c), v in per.items():
        out.setdefault(name, {})[f"concurrency_{c}"] = {
            "wall_us_per_request": round(statistics.median(w for w, _ in v) * 1e6, 1),
            "cpu_us_per_request": round(statistics.median(cpu for _, cpu in v) * 1e6, 1)}
    out["engine.recommend in-process"] = {"wall_us_per_request": round(statistics.median(local_wall) * 1e6, 1),
                                          "cpu_us_per_request": round(local_cpu * 1e6, 1)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
