"""Bad requests get a 4xx JSON body naming the problem and the request id; defects get a 500 with only
the id (the traceback goes to the log); the server keeps serving afterwards."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

pytest.importorskip("starlette")

from recengine.server.config import MAX_BATCH, MAX_HISTORY, MAX_K  # noqa: E402


def _error(r: Any, status: int, code: str, *words: str) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["error"] == code, body
    assert body["request_id"] == r.headers["x-request-id"]
    for word in words:
        assert word in body["message"], (word, body["message"])
    assert "Traceback" not in r.text
    return body


@pytest.mark.parametrize("raw", [b"{bad", b"", b"[1, 2", b"\xff\xfe", b"null", b"nan"])
def test_not_json_or_not_an_object(client: Any, raw: bytes) -> None:
    r = client.post("/recommend", content=raw, headers={"content-type": "application/json"})
    assert r.status_code in (400, 422), r.text
    _error(r, r.status_code, "invalid_json" if r.status_code == 400 else "validation_error")


@pytest.mark.parametrize("body, loc", [
    ({"user_id": 7}, "user_id"),
    ({"k": "10"}, "k"),
    ({"k": 10.5}, "k"),
    ({"k": True}, "k"),
    ({"k": 0}, "k"),
    ({"k": MAX_K + 1}, "k"),
    ({"history": "1,2,3"}, "history"),
    ({"history": [1, 2]}, "history.0"),
    ({"history": ["1"] * (MAX_HISTORY + 1)}, "history"),
    ({"diversity": 2}, "diversity"),
    ({"long_tail": -1}, "long_tail"),
    ({"scene": ["evening"]}, "scene"),
    ({"scene": {"daypart": {"nested": 1}}}, "scene.daypart"),
    ({"explain": "yes"}, "explain"),
    ({"user": "1"}, "user"),
    ({"candidates": 10**9}, "candidates"),
])
def test_wrong_types_and_caps_are_422_naming_the_field(client: Any, body: dict[str, Any], loc: str) -> None:
    r = client.post("/recommend", json=body)
    err = _error(r, 422, "validation_error", loc)
    assert err["details"][0]["loc"].startswith(loc)


def test_semantic_errors_from_the_engine_are_400(client: Any, engine: Any) -> None:
    _error(client.post("/recommend", json={"scene": {"planet": "mars"}}), 400, "bad_request", "planet")
    _error(client.post("/recommend", json={"filter": {"attr_year": {"between": 3}}}), 400, "bad_request")
    _error(client.post("/search", json={"text": "   "}), 400, "bad_request", "empty")
    _error(client.post("/recommend/group", json={"user_ids": engine.user_ids()[:2], "strategy": "median"}), 422,
           "validation_error", "strategy")


def test_batch_and_list_caps(client: Any) -> None:
    _error(client.post("/recommend/batch", json={"requests": [{}] * (MAX_BATCH + 1)}), 422, "validation_error",
           "requests")
    _error(client.post("/recommend/batch", json={"requests": []}), 422, "validation_error", "requests")
    r = client.post("/recommend/batch", json={"requests": [{}, {"k": "x"}]})
    assert _error(r, 422, "validation_error")["details"][0]["loc"] == "requests.1.k"
    _error(client.post("/items", json={"items": [{"title": "no id"}]}), 422, "validation_error", "item_id")
    _error(client.post("/items", json={"items": [{"item_id": "x", "title": ["list"]}]}), 422, "validation_error")
    _error(client.post("/users/u/events", json={"events": [3]}), 422, "validation_error", "events.0")


def test_add_item_without_text_is_400_naming_the_columns(client: Any) -> None:
    _error(client.post("/items", json={"items": [{"item_id": "empty-one"}]}), 400, "bad_request", "empty-one")


def test_unknown_ids_are_404_where_the_endpoint_is_about_the_id(client: Any) -> None:
    _error(client.get("/items/no-such-item/similar"), 404, "not_found", "no-such-item")
    _error(client.get("/users/no-such-user"), 404, "not_found", "no-such-user")
    # an unknown user in a recommend request is the cold path of the Python API, not an error
    r = client.post("/recommend", json={"user_id": "no-such-user"})
    assert r.status_code == 200 and r.json()["source"] == "popular"


def test_query_parameters_are_checked(client: Any, engine: Any) -> None:
    item = engine.item_ids()[0]
    _error(client.get(f"/items/{item}/similar", params={"k": "ten"}), 422, "validation_error", "k")
    _error(client.get(f"/items/{item}/similar", params={"k": str(MAX_K + 1)}), 422, "validation_error", "k")
    _error(client.get(f"/items/{item}/similar", params={"filter": "{nope"}), 400, "invalid_json", "filter")


def test_huge_bodies_are_413_before_reading_them(make_client: Any) -> None:
    client = make_client(max_body_bytes=4096)
    big = json.dumps({"history": ["x" * 100] * 100}).encode()
    _error(client.post("/recommend", content=big, headers={"content-type": "application/json"}), 413,
           "payload_too_large", "4096")

    def chunks():  # no Content-Length: the limit applies while streaming
        for _ in range(10):
            yield b" " * 1000

    _error(client.post("/recommend", content=chunks(), headers={"content-type": "application/json"}), 413,
           "payload_too_large")
    assert client.post("/recommend", json={"k": 2}).status_code == 200


def test_wrong_content_type_and_unknown_routes(client: Any) -> None:
    _error(client.post("/recommend", content=b"k=3", headers={"content-type": "application/x-www-form-urlencoded"}),
           415, "unsupported_media_type")
    _error(client.get("/no/such/endpoint"), 404, "not_found", "/no/such/endpoint")
    r = client.put("/recommend", json={})
    _error(r, 405, "method_not_allowed")


def test_admin_endpoints_need_the_token(client: Any, admin: dict[str, str], tmp_path) -> None:
    for path, body in (("/admin/save", {"path": str(tmp_path / "s")}), ("/admin/reload", {})):
        _error(client.post(path, json=body), 401, "unauthorized", "Bearer")
        assert client.post(path, json=body).headers["www-authenticate"] == "Bearer"
        _error(client.post(path, json=body, headers={"Authorization": "Bearer wrong-token-xyz"}), 403, "forbidden")
        _error(client.post(path, json=body, headers={"Authorization": "Basic abc"}), 401, "unauthorized")
    assert not (tmp_path / "s").exists()


def test_admin_is_off_without_a_token(make_client: Any, tmp_path) -> None:
    client = make_client()  # no admin_token
    r = client.post("/admin/save", json={"path": str(tmp_path / "s")},
                    headers={"Authorization": "Bearer anything-at-all"})
    _error(r, 403, "admin_disabled", "--admin-token")
    assert not (tmp_path / "s").exists()


def test_admin_errors_are_400(client: Any, admin: dict[str, str], tmp_path) -> None:
    _error(client.post("/admin/reload", json={"bundle": str(tmp_path / "missing")}, headers=admin), 400,
           "bad_request")
    (tmp_path / "exists").mkdir()
    (tmp_path / "exists" / "f").write_text("x")
    _error(client.post("/admin/save", json={"path": str(tmp_path / "exists")}, headers=admin), 400, "bad_request")
    assert client.get("/readyz").json()["ready"] is True  # still serving the old bundle


def test_caller_request_id_is_echoed_and_unsafe_ones_replaced(client: Any) -> None:
    r = client.post("/recommend", json={"k": 0}, headers={"x-request-id": "abc-123.def"})
    assert r.headers["x-request-id"] == "abc-123.def" and r.json()["request_id"] == "abc-123.def"
    r = client.post("/recommend", json={}, headers={"x-request-id": "bad id\twith spaces"})
    assert r.headers["x-request-id"] != "bad id\twith spaces" and len(r.headers["x-request-id"]) == 32


def test_a_defect_is_a_500_with_the_request_id_logged(client: Any, engine: Any, monkeypatch: Any,
                                                      caplog: Any) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("a bug inside the engine")

    monkeypatch.setattr(engine, "search", broken)  # fault injection on the real engine instance
    with caplog.at_level(logging.ERROR, logger="recengine.server"):
        r = client.post("/search", json={"text": "anything"})
    body = _error(r, 500, "internal_error")
    assert "ZeroDivisionError" not in r.text and "a bug" not in r.text
    logged = [rec for rec in caplog.records if body["request_id"] in rec.getMessage()]
    assert logged and logged[0].exc_info is not None
    assert client.post("/recommend", json={"k": 1}).status_code == 200


@pytest.mark.parametrize("path, raw", [
    ("/recommend", b'{"history": ["\\ud800"], "k": 2}'),
    ("/search", b'{"text": "\\ud800 toy", "k": 2}'),
    ("/items", b'{"items": [{"item_id": "x\\udc80", "title": "T"}]}'),
])
def test_lone_surrogates_are_refused_as_invalid_json(client: Any, path: str, raw: bytes) -> None:
    """Text that is not valid Unicode never reaches the engine (nor a UTF-8 encoder of the response)."""
    _error(client.post(path, content=raw, headers={"content-type": "application/json"}), 400, "invalid_json",
           "surrogate" if b"udc80" in raw else "")


def test_undecodable_path_bytes_are_just_unknown_ids(client: Any) -> None:
    _error(client.get("/items/%ff%fe/similar"), 404, "not_found")
    assert client.post("/recommend", json={"k": 1}).status_code == 200


def test_server_config_checks_the_cooccur_weight(bundle_copy) -> None:
    from recengine.errors import RequestError
    from recengine.server import ServerConfig
    from recengine.server.app import load_engine

    with pytest.raises(RequestError, match="cooccur_weight"):
        ServerConfig(bundle=str(bundle_copy), cooccur_weight=-0.5)
    engine = load_engine(ServerConfig(bundle=str(bundle_copy), device="cpu", cooccur_weight=0.0))
    assert engine._state.cooccur is None or engine._state.cooccur.weight == 0.0


def test_server_config_checks_and_passes_the_item_variant(bundle_copy) -> None:
    from recengine.errors import RequestError
    from recengine.server import ServerConfig
    from recengine.server.app import load_engine

    with pytest.raises(RequestError, match="item variant"):
        ServerConfig(bundle=str(bundle_copy), item_variant="int4")
    config = ServerConfig(bundle=str(bundle_copy), device="cpu", item_variant="int8")
    assert ServerConfig.from_json(config.to_json()) == config  # what --workers hands each worker
    assert load_engine(config).item_variant == "int8"


BIG = 10 ** 400  # valid JSON, parsed by pydantic; float() of it overflows, repr of 10**5000 raises


@pytest.mark.parametrize("cond", [BIG, {"lt": BIG}, {"in": [BIG]}])
def test_integers_past_float_range_are_4xx_not_500(client: Any, cond: Any) -> None:
    """Found by a fuzzer: integers of 309+ digits made float() overflow into a 500 (a numeric attribute:
    the one an item added here carries; every other item lacks it)."""
    assert client.post("/items", json={"items": [{"item_id": "big-int", "title": "Big",
                                                  "attr_fuzzyear": 2000}]}).status_code == 200
    r = client.post("/recommend", json={"filter": {"fuzzyear": cond}})
    _error(r, 400, "bad_request", "fuzzyear")
    assert client.post("/recommend", json={"filter": {"fuzzyear": {"lt": 2001}}, "k": 2}).status_code == 200


@pytest.mark.parametrize("k", ["\u00b2", "\u0663", "9" * 5000, "-1", " 5"])
def test_odd_k_query_strings_are_422(client: Any, engine: Any, k: str) -> None:
    """'²'.isdigit() is True but int('²') fails, and int() refuses 4,300+ digits: both were 500s."""
    item = engine.item_ids()[0]
    _error(client.get(f"/items/{item}/similar", params={"k": k}), 422, "validation_error", "k")


@pytest.mark.parametrize("path, body, status", [
    ("/admin/save", {"path": "/tmp/a\u0000b"}, 400),
    ("/admin/save", {"path": " "}, 400),
    ("/admin/save", {"path": "x" * 300}, 400),  # a name the OS refuses (ENAMETOOLONG)
    ("/admin/save", {"path": ""}, 422),  # refused by the schema
    ("/admin/reload", {"bundle": "\u0000"}, 400),
])
def test_admin_paths_with_nul_or_nothing_are_4xx(client: Any, admin: dict[str, str], path: str, body: dict,
                                                 status: int) -> None:
    _error(client.post(path, json=body, headers=admin), status, "bad_request" if status == 400 else "validation_error")
    assert client.get("/readyz").json()["ready"] is True


def test_admin_save_never_replaces_a_directory_that_is_not_a_bundle(client: Any, admin: dict[str, str],
                                                                   tmp_path) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.txt").write_text("mine")
    r = client.post("/admin/save", json={"path": str(tmp_path / "home"), "force": True}, headers=admin)
    _error(r, 400, "bad_request", "not a recengine bundle")
    assert (tmp_path / "home" / "notes.txt").read_text() == "mine"
