"""Why the server is Starlette and not FastAPI: the per-request cost of each, on the same engine call.

    python -m recengine.bench.serve_frameworks BUNDLE [--requests 3000] [--rounds 5]

Both apps answer `POST /recommend {"user_id": ..., "k": 10}` with the same pydantic body model and the
same engine call on a thread pool: recengine's own app (Starlette, body parsed by `model_validate_json`,
JSON written directly), and the idiomatic FastAPI equivalent (a sync endpoint with the body model as its
parameter and `RecommendResponse` as its response model). Each request is driven straight through the
ASGI interface (no sockets, no HTTP parser: those are uvicorn's and identical for both), sequentially;
rounds alternate A/B so a noisy machine hits both alike. Reported: wall time and process CPU time per
request (median over rounds). FastAPI is not a dependency of recengine: install it to run this.
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


async def _lifespan(app: Any, n: int, bodies: list[bytes]) -> tuple[float, float]:
    """Run `n` sequential requests inside the app's lifespan; (wall s, CPU s) per request."""
    router = getattr(app, "router", app)
    async with router.lifespan_context(app):
        for i in range(50):
            assert await _call(app, bodies[i % len(bodies)]) == 200
        w, c = time.perf_counter(), time.process_time()
        for i in range(n):
            await _call(app, bodies[i % len(bodies)])
        return (time.perf_counter() - w) / n, (time.process_time() - c) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from recengine import Engine
    from recengine.server import ServerConfig, create_app

    engine = Engine.open(args.bundle, device="cpu", threads=1)
    engine.warmup()
    bodies = [json.dumps({"user_id": u, "k": 10}).encode() for u in engine.user_ids()[:256]]
    apps = {"starlette (recengine.server)": create_app(ServerConfig(bundle=args.bundle), engine=engine),
            "fastapi": fastapi_app(engine)}
    per: dict[str, list[tuple[float, float]]] = {name: [] for name in apps}
    for _ in range(args.rounds):
        for name, app in apps.items():
            per[name].append(asyncio.run(_lifespan(app, args.requests, bodies)))
    users = engine.user_ids()[:256]
    local = []
    for i in range(args.requests):
        t = time.perf_counter()
        engine.recommend(user_id=users[i % len(users)], k=10)
        local.append(time.perf_counter() - t)
    print(json.dumps({
        name: {"wall_us_per_request": round(statistics.median(w for w, _ in v) * 1e6, 1),
               "cpu_us_per_request": round(statistics.median(c for _, c in v) * 1e6, 1)} for name, v in per.items()
    } | {"engine.recommend in-process": {"wall_us_per_request": round(statistics.median(local) * 1e6, 1)}}, indent=1))


if __name__ == "__main__":
    main()
