"""Every endpoint against the real tiny bundle, through Starlette's TestClient: each answer equals the
Engine's own answer to the same call and validates against the response schema of the OpenAPI document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")

from recengine.server import schemas  # noqa: E402


def _same(http: dict[str, Any], recs: Any) -> None:
    """An HTTP result list equals the engine's Recommendations (ids in order, scores, source)."""
    assert http["source"] == recs.source
    assert [r["item_id"] for r in http["results"]] == [r.item_id for r in recs]
    assert [r["score"] for r in http["results"]] == pytest.approx([r.score for r in recs], rel=1e-6)


def test_recommend_by_user_id_matches_the_engine(client: Any, engine: Any) -> None:
    user = engine.user_ids()[0]
    r = client.post("/recommend", json={"user_id": user, "k": 5})
    assert r.status_code == 200, r.text
    body = schemas.RecommendResponse.model_validate(r.json()).model_dump()
    assert len(body["results"]) == 5
    _same(r.json(), engine.recommend(user_id=user, k=5))
    assert r.headers["x-request-id"]


def test_recommend_with_every_option(client: Any, engine: Any) -> None:
    items = engine.item_ids()
    request = {"history": items[:3] + ["not-an-item"], "scene": {"daypart": "evening"}, "k": 4,
               "exclude_seen": False, "filter": {"ids": items[:50]}, "candidates": 30, "long_tail": 0.5,
               "diversity": 0.3, "explain": True, "fresh": 0.5}
    r = client.post("/recommend", json=request)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["skipped"] == ["not-an-item"]
    assert all(res["reason"] for res in body["results"])
    assert {res["item_id"] for res in body["results"]} <= set(items[:50])
    _same(body, engine.recommend(**request))


def test_recommend_cold_and_popular(client: Any) -> None:
    r = client.post("/recommend", json={})
    assert r.status_code == 200 and r.json()["source"] == "popular"
    r = client.post("/recommend", json={"scene": {"daypart": "morning"}, "k": 3})
    assert r.status_code == 200 and r.json()["source"] == "cold"


def test_batch_matches_single_requests(client: Any, engine: Any) -> None:
    users = engine.user_ids()[:3]
    reqs = [{"user_id": u, "k": 3} for u in users] + [{"history": engine.item_ids()[:2], "k": 3}]
    r = client.post("/recommend/batch", json={"requests": reqs})
    assert r.status_code == 200, r.text
    out = schemas.BatchResponse.model_validate(r.json())
    assert len(out.responses) == 4
    for http, req in zip(r.json()["responses"], reqs):
        _same(http, engine.recommend(**req))


def test_group(client: Any, engine: Any) -> None:
    users = engine.user_ids()[:3]
    body = {"user_ids": users + ["ghost"], "strategy": "least_misery", "k": 5, "scene": {"daypart": "evening"}}
    r = client.post("/recommend/group", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["skipped"] == ["ghost"]
    _same(r.json(), engine.recommend_group(**body))


def test_similar_items_and_query_options(client: Any, engine: Any) -> None:
    item = engine.item_ids()[0]
    r = client.get(f"/items/{item}/similar", params={"k": 4})
    assert r.status_code == 200, r.text
    _same(r.json(), engine.similar_items(item, k=4))
    allowed = engine.item_ids()[10:20]
    import json

    r = client.get(f"/items/{item}/similar", params={"k": 3, "filter": json.dumps({"ids": allowed})})
    assert r.status_code == 200, r.text
    assert {x["item_id"] for x in r.json()["results"]} <= set(allowed)


def test_search(client: Any, engine: Any) -> None:
    r = client.post("/search", json={"text": "toy story animation", "k": 3})
    assert r.status_code == 200, r.text
    _same(r.json(), engine.search("toy story animation", k=3))


def test_add_then_recommendable_then_remove(client: Any, engine: Any) -> None:
    n = engine.n_items
    item = {"item_id": "http-new-1", "title": "A Film Added Over HTTP (2026)", "genres": "Comedy|Drama"}
    r = client.post("/items", json={"items": [item, {"item_id": "http-new-2", "text": "title: Another one"}]})
    assert r.status_code == 200, r.text
    assert r.json() == {"added": ["http-new-1", "http-new-2"], "n_items": n + 2}
    r = client.get("/items/http-new-1/similar", params={"k": 2})
    assert r.status_code == 200 and len(r.json()["results"]) == 2
    r = client.post("/recommend", json={"filter": {"ids": ["http-new-1"]}, "history": engine.item_ids()[:2]})
    assert [x["item_id"] for x in r.json()["results"]] == ["http-new-1"]
    r = client.request("DELETE", "/items", json={"ids": ["http-new-1", "http-new-2", "never-there"]})
    assert r.status_code == 200, r.text
    assert r.json() == {"removed": 2, "n_items": n}
    assert client.get("/items/http-new-1/similar").status_code == 404


def test_update_user_creates_and_appends(client: Any, engine: Any) -> None:
    items = engine.item_ids()
    r = client.post("/users/http user/events", json={"events": [items[0], {"item_id": items[1]}, "ghost-item"]})
    assert r.status_code == 200, r.text
    assert r.json() == {"user_id": "http user", "appended": 2, "skipped": ["ghost-item"], "history_length": 2,
                        "created": True}
    r = client.get("/users/http user")
    assert r.status_code == 200 and r.json() == {"user_id": "http user", "history": items[:2]}
    r = client.post("/recommend", json={"user_id": "http user", "k": 3})
    assert r.status_code == 200 and r.json()["source"] == "stored"
    assert not {x["item_id"] for x in r.json()["results"]} & set(items[:2])  # seen items excluded


def test_ids_with_slashes_and_unicode_in_the_path(client: Any, engine: Any) -> None:
    r = client.post("/users/team%2Fa%C3%A9/events", json={"events": [engine.item_ids()[0]]})
    assert r.status_code == 200, r.text
    assert r.json()["user_id"] == "team/aé"


def test_admin_save_and_reload(client: Any, admin: dict[str, str], engine: Any, tmp_path: Path) -> None:
    client.post("/items", json={"items": [{"item_id": "saved-1", "title": "Saved Film"}]})
    out = tmp_path / "saved"
    r = client.post("/admin/save", json={"path": str(out)}, headers=admin)
    assert r.status_code == 200, r.text
    assert Path(r.json()["path"]) == out and (out / "manifest.json").is_file()
    original = str(engine.bundle_path)
    r = client.post("/admin/reload", json={"bundle": str(out)}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["bundle"] == str(out) and r.json()["n_items"] == engine.n_items
    assert client.get("/items/saved-1/similar").status_code == 200
    r = client.post("/admin/reload", json={"bundle": original}, headers=admin)
    assert r.status_code == 200
    assert client.get("/items/saved-1/similar").status_code == 404  # the original bundle never had it
    r = client.post("/admin/reload", headers=admin)  # empty body: reload the current path
    assert r.status_code == 200 and r.json()["bundle"] == original


def test_health_ready_openapi(client: Any, engine: Any) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["ready"] is True and ready["provider"] == engine.provider == "CPUExecutionProvider"
    assert ready["n_items"] == engine.n_items
    assert ready["item_variant"] == engine.item_variant
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for path, method in [("/recommend", "post"), ("/recommend/batch", "post"), ("/recommend/group", "post"),
                         ("/items/{item_id}/similar", "get"), ("/search", "post"), ("/items", "post"),
                         ("/items", "delete"), ("/users/{user_id}/events", "post"), ("/admin/save", "post"),
                         ("/admin/reload", "post"), ("/healthz", "get"), ("/readyz", "get"), ("/metrics", "get")]:
        assert method in doc["paths"][path], (path, method)
    schemas_ = doc["components"]["schemas"]
    import json
    import re

    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(doc)))
    assert refs and refs <= set(schemas_), refs - set(schemas_)
    assert schemas_["RecommendBody"]["properties"]["k"]["maximum"] == 1000
