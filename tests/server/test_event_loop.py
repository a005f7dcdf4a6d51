"""Engine work runs on the thread pool, never on the event loop: while one request's engine call is busy,
other requests (health checks, other recommendations) are still answered at once."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

pytest.importorskip("starlette")
httpx = pytest.importorskip("httpx")


@pytest.mark.timeout(60)
def test_a_slow_engine_call_does_not_stall_other_requests(engine: Any, bundle_copy: Any, monkeypatch: Any) -> None:
    from recengine.server import ServerConfig, create_app

    started, release = threading.Event(), threading.Event()
    real_search = engine.search

    def slow_search(*args: Any, **kwargs: Any) -> Any:  # blocks its pool thread until released
        started.set()
        release.wait(30)
        return real_search(*args, **kwargs)

    monkeypatch.setattr(engine, "search", slow_search)
    app = create_app(ServerConfig(bundle=str(bundle_copy), pool_size=2), engine=engine)

    async def scenario() -> tuple[float, int, int]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                slow = asyncio.create_task(client.post("/search", json={"text": "toy story"}))
                while not started.is_set():
                    await asyncio.sleep(0.01)
                t = time.perf_counter()
                health = await client.get("/healthz")
                rec = await client.post("/recommend", json={"k": 3})
                elapsed = time.perf_counter() - t
                assert not slow.done(), "the slow call should still be running"
                release.set()
                return elapsed, (await slow).status_code, health.status_code + rec.status_code

    elapsed, slow_status, others = asyncio.run(scenario())
    assert others == 400  # 200 + 200
    assert slow_status == 200
    assert elapsed < 10, f"other requests waited {elapsed:.1f} s behind a busy engine call"
