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


def _queued_behind_a_busy_thread(make_client: Any, engine: Any, monkeypatch: pytest.MonkeyPatch,
                                 bodies: list[dict[str, Any]]) -> tuple[dict[int, Any], list[int], str]:
    """POST each body to /recommend while the server's only pool thread is held by a first request, release
    it once all are queued: (answers by index, sizes of the engine calls after the first, /metrics text)."""
    import threading
    import time

    client = make_client(pool_size=1, coalesce=8)
    gate, entered = threading.Event(), threading.Event()
    plain = engine.recommend_batch
    calls: list[int] = []

    def gated(requests: Any, **kwargs: Any) -> Any:
        if not entered.is_set():  # the first call holds the only pool thread until the others are queued
            entered.set()
            assert gate.wait(10)
        else:
            calls.append(len(requests))
        return plain(requests, **kwargs)

    monkeypatch.setattr(engine, "recommend_batch", gated)
    answers: dict[int, Any] = {}

    def post(i: int, body: dict[str, Any]) -> None:
        answers[i] = client.post("/recommend", json=body)

    first = threading.Thread(target=post, args=(-1, {"user_id": engine.user_ids()[0], "k": 5}))
    first.start()
    assert entered.wait(10)
    threads = [threading.Thread(target=post, args=(i, b)) for i, b in enumerate(bodies)]
    for t in threads:
        t.start()
    deadline = time.time() + 10
    while time.time() < deadline and \
            f"recengine_http_requests_in_flight {len(bodies) + 1}" not in client.get("/metrics").text:
        time.sleep(0.01)
    time.sleep(0.05)  # the last request's hop to the pool
    gate.set()
    for t in [first, *threads]:
        t.join(10)
    assert answers[-1].status_code == 200
    return answers, calls, client.get("/metrics").text


def test_concurrent_recommends_are_answered_together_each_as_alone(make_client: Any, engine: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """`--coalesce`: /recommend calls queued behind a busy pool thread are answered by one engine call; each
    gets the answer it gets alone, and a bad body among them gets its own 422 without failing the rest."""
    users, items = engine.user_ids(), engine.item_ids()
    bodies = [{"user_id": users[1], "k": 5}, {"history": items[:4], "k": 6, "scene": {"daypart": "evening"}},
              {"user_id": users[2], "k": 3, "filter": {"ids": items[:60]}}, {"user_id": users[3], "k": "many"},
              {"history": items[10:12], "k": 4, "long_tail": 0.5}]
    lone = {i: engine.recommend(**b) for i, b in enumerate(bodies) if i != 3}
    answers, calls, metrics = _queued_behind_a_busy_thread(make_client, engine, monkeypatch, bodies)
    assert answers[3].status_code == 422 and answers[3].json()["error"] == "validation_error"
    for i, want in lone.items():
        assert answers[i].status_code == 200, answers[i].text
        _same(answers[i].json(), want)
    assert calls == [4]  # the four valid bodies in one engine call
    assert "recengine_coalesced_calls_total 1" in metrics and "recengine_coalesced_requests_total 4" in metrics


def test_a_request_the_engine_refuses_fails_alone_when_coalesced(make_client: Any, engine: Any,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A body that validates but that the engine refuses (an unknown filter attribute) fails the shared call;
    then every request of it is answered alone: the refused one gets its 4xx, the others their answers."""
    users = engine.user_ids()
    bodies = [{"user_id": users[1], "k": 5}, {"user_id": users[2], "k": 3, "filter": {"no_such_attribute": 1}},
              {"user_id": users[3], "k": 4}]
    with pytest.raises(Exception) as refused:
        engine.recommend(**bodies[1])
    answers, calls, metrics = _queued_behind_a_busy_thread(make_client, engine, monkeypatch, bodies)
    assert calls == [3, 1, 1, 1]  # the shared call, then each alone
    assert "recengine_coalesced_calls_total 0" in metrics  # counted: engine calls that answered several
    assert 400 <= answers[1].status_code < 500 and answers[1].json()["message"].startswith(str(refused.value)[:20])
    for i in (0, 2):
        assert answers[i].status_code == 200
        _same(answers[i].json(), engine.recommend(**bodies[i]))


def test_a_defect_in_the_shared_call_is_logged_and_each_request_answered_alone(
        make_client: Any, engine: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    users = engine.user_ids()
    bodies = [{"user_id": users[1], "k": 5}, {"user_id": users[2], "k": 3}]
    want = [engine.recommend(**b) for b in bodies]
    plain = engine.recommend_batch

    def broken(requests: Any, **kwargs: Any) -> Any:
        if kwargs.get("independent") and len(requests) > 1:
            raise RuntimeError("a defect in the shared call")
        return plain(requests, **kwargs)

    monkeypatch.setattr(engine, "recommend_batch", broken)
    with caplog.at_level("WARNING", logger="recengine.server"):
        answers, calls, metrics = _queued_behind_a_busy_thread(make_client, engine, monkeypatch, bodies)
    assert calls == [2, 1, 1]
    for i in (0, 1):
        assert answers[i].status_code == 200
        _same(answers[i].json(), want[i])
    assert any("answering each alone" in r.getMessage() and r.exc_info for r in caplog.records)
    assert "recengine_coalesced_calls_total 0" in metrics


def test_coalesce_1_answers_each_recommend_alone(make_client: Any, engine: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    client = make_client(coalesce=1)
    seen: list[bool] = []
    plain = engine.recommend_batch
    monkeypatch.setattr(engine, "recommend_batch",
                        lambda requests, **kw: seen.append(kw.get("independent", False)) or plain(requests, **kw))
    user = engine.user_ids()[0]
    r = client.post("/recommend", json={"user_id": user, "k": 5})
    assert r.status_code == 200
    _same(r.json(), engine.recommend(user_id=user, k=5))
    assert seen[0] is False  # the plain handler: Engine.recommend


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
