"""`RecengineApp`'s direct hand-off of the fixed-path engine endpoints answers exactly like Starlette's
router would: same status, body and headers; wrong methods, unknown paths and mounted root paths still
take Starlette's way."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

pytest.importorskip("starlette")
httpx = pytest.importorskip("httpx")


def test_the_direct_table_holds_exactly_the_fixed_path_engine_routes(client: Any) -> None:
    from recengine.server.handlers import ROUTES

    direct = client.app.direct
    assert set(direct) == {(r.method, r.path) for r in ROUTES if "{" not in r.path}
    assert ("POST", "/recommend") in direct and not any("{" in path for _, path in direct)


def _asgi(app: Any, method: str, path: str, body: bytes, root_path: str = "") -> tuple[int, dict[str, str], bytes]:
    """One request straight through ASGI, with or without a root path."""

    async def go() -> tuple[int, dict[str, str], bytes]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, root_path=root_path)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                r = await c.request(method, root_path + path, content=body,
                                    headers={"content-type": "application/json", "x-request-id": "same-id"})
                return r.status_code, dict(r.headers), r.content

    return asyncio.run(go())


@pytest.mark.parametrize("body", [b'{"user_id": "1", "k": 3}', b'{"k": "3"}', b"{nope"])
def test_direct_and_routed_answers_are_the_same(engine: Any, bundle_copy: Any, body: bytes) -> None:
    from recengine.server import ServerConfig, create_app

    app = create_app(ServerConfig(bundle=str(bundle_copy)), engine=engine)
    direct = _asgi(app, "POST", "/recommend", body)
    routed = _asgi(app, "POST", "/recommend", body, root_path="/api")  # a mounted app: Starlette's router
    assert direct[0] == routed[0] and direct[2] == routed[2]
    assert direct[1]["x-request-id"] == routed[1]["x-request-id"] == "same-id"
    assert direct[1]["content-type"] == routed[1]["content-type"] == "application/json"
    assert int(direct[1]["content-length"]) == len(direct[2])


def test_wrong_method_and_unknown_path_still_get_json_errors(client: Any) -> None:
    r = client.get("/recommend")
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"
    r = client.post("/recommendations", json={})
    assert r.status_code == 404 and r.json()["error"] == "not_found"


def test_fresh_request_ids_are_unique_and_uuid_sized(client: Any) -> None:
    ids = {client.post("/recommend", json={"k": 1}).headers["x-request-id"] for _ in range(20)}
    assert len(ids) == 20 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_a_non_finite_score_is_a_500_not_invalid_json(client: Any, engine: Any, monkeypatch: Any) -> None:
    real = engine.recommend

    def broken(**kwargs: Any) -> Any:
        recs = real(**kwargs)
        object.__setattr__(recs[0], "score", float("nan"))
        return recs

    monkeypatch.setattr(engine, "recommend", broken)
    r = client.post("/recommend", json={"k": 2})
    assert r.status_code == 500 and json.loads(r.content)["error"] == "internal_error"
