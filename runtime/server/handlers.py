"""The endpoints: each turns a validated request into one `Engine` call and the result into JSON.

Handlers are plain synchronous functions of (engine, parsed body, path/query values): the app runs them
on its thread pool, never on the event loop. `ROUTES` is the single table the app mounts and the OpenAPI
document describes, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import isfinite
from typing import Any

from pydantic import BaseModel, TypeAdapter

from ..errors import shown
from .config import MAX_K
from .errors import ApiError
from .schemas import (
    AddItemsBody,
    AddItemsResponse,
    BatchBody,
    BatchResponse,
    EventsBody,
    Filter,
    GroupBody,
    RecommendBody,
    RecommendResponse,
    ReloadBody,
    ReloadResponse,
    RemoveItemsBody,
    RemoveItemsResponse,
    SaveBody,
    SaveResponse,
    SearchBody,
    UpdateUserResponse,
    UserResponse,
)

_FILTER = TypeAdapter(Filter)


@dataclass(frozen=True)
class Call:
    """What a handler gets: the parsed body (or None), path parameters and raw query parameters."""

    body: BaseModel | None
    path: dict[str, str]
    query: dict[str, str]


Handler = Callable[[Any, Call], dict[str, Any]]
BatchHandler = Callable[[Any, list[BaseModel]], list[dict[str, Any]]]
"""Answers several validated bodies of one endpoint with one engine call (coalesced requests)."""


@dataclass(frozen=True)
class RouteSpec:
    """One endpoint: where it lives, what it reads and returns, and how it is guarded.

    id_endpoint: an unknown id named in the path is a 404 (the endpoint is about that id).
    batch: answers concurrent calls together (`ServerConfig.coalesce`); each answer must be the one
    `handler` gives alone (only for endpoints without path or query parameters).
    reloads: the endpoint replaces the engine's state; the server settles its heap after it
    (`ServerConfig.freeze_heap`, `recengine.server.heap`).
    body_optional: an empty body reads as `{}` (every field of the body model has a default).
    """

    name: str
    method: str
    path: str
    handler: Handler
    summary: str
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    admin: bool = False
    id_endpoint: bool = False
    body_optional: bool = False
    query: tuple[tuple[str, str], ...] = ()
    batch: BatchHandler | None = None
    reloads: bool = False


def results(recs: Any) -> dict[str, Any]:
    """`Recommendations` as the JSON of `RecommendResponse` (reason only when the engine gave one).
    A score that is not a finite number would be invalid JSON: it is a defect (500), never sent."""
    out = [{"item_id": r.item_id, "score": r.score, "reason": r.reason} if r.reason is not None
           else {"item_id": r.item_id, "score": r.score} for r in recs]
    if not all(isfinite(r["score"]) for r in out):
        raise ValueError("the engine returned a score that is not a finite number")
    return {"source": recs.source, "skipped": [str(s) for s in recs.skipped], "results": out}


def _query_k(query: dict[str, str]) -> int:
    raw = query.get("k", "10")
    # ASCII digits only ("²".isdigit() is True, int("²") fails) and short enough for int() (4,300 digits)
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or not 1 <= int(raw) <= MAX_K:
        raise ApiError(422, "validation_error", f"k: must be an integer between 1 and {MAX_K}, got {shown(raw)}",
                       [{"loc": "query.k", "message": f"must be an integer between 1 and {MAX_K}"}])
    return int(raw)


def _query_filter(query: dict[str, str]) -> Any:
    from pydantic import ValidationError

    from .errors import from_validation

    raw = query.get("filter")
    if raw is None:
        return None
    try:
        return _FILTER.validate_json(raw)
    except ValidationError as exc:
        raise from_validation(exc, "query filter") from None


def recommend(engine: Any, call: Call) -> dict[str, Any]:
    assert isinstance(call.body, RecommendBody)
    return results(engine.recommend(**call.body.model_dump()))


def recommend_together(engine: Any, bodies: list[BaseModel]) -> list[dict[str, Any]]:
    """Concurrent `POST /recommend` bodies in one engine call, each answered as `recommend` answers it alone."""
    assert all(isinstance(b, RecommendBody) for b in bodies)
    return [results(r) for r in engine.recommend_batch([b.model_dump() for b in bodies], independent=True)]


def recommend_batch(engine: Any, call: Call) -> dict[str, Any]:
    assert isinstance(call.body, BatchBody)
    out = engine.recommend_batch([r.model_dump() for r in call.body.requests])
    return {"responses": [results(r) for r in out]}


def recommend_group(engine: Any, call: Call) -> dict[str, Any]:
    assert isinstance(call.body, GroupBody)
    return results(engine.recommend_group(**call.body.model_dump()))


def similar(engine: Any, call: Call) -> dict[str, Any]:
    return results(engine.similar_items(call.path["item_id"], k=_query_k(call.query),
                                        filter=_query_filter(call.query)))


def search(engine: Any, call: Call) -> dict[str, Any]:
    assert isinstance(call.body, SearchBody)
    return results(engine.search(call.body.text, k=call.body.k, filter=call.body.filter))


def add_items(engine: Any, call: Call) -> dict[str, Any]:
    assert isinstance(call.body, AddItemsBody)
    added = engine.add_items([item.model_dump() for item in call.body.items])
    return {"added": list(added), "n_items": engine.n_items}


def remove_items(engine: Any, call: Call) -> dict[str, Any]:
    assert isinstance(call.body, RemoveItemsBody)
    removed = engine.remove_items(call.body.ids)
    return {"removed": int(removed), "n_items": engine.n_items}


def user(engine: Any, call: Call) -> dict[str, Any]:
    user_id = call.path["user_id"]
    return {"user_id": user_id, "history": engine.history(user_id)}


def update_user(engine: Any, call: Call) -> dict[str, Any]:
    assert isinstance(call.body, EventsBody)
    events = [e if isinstance(e, str) else e.item_id for e in call.body.events]
    r = engine.update_user(call.path["user_id"], events)
    return {"user_id": r.user_id, "appended": r.appended, "skipped": [str(s) for s in r.skipped],
            "history_length": r.history_length, "created": r.created}


def save(engine: Any, call: Call) -> dict[str, Any]:
    assert isinstance(call.body, SaveBody)
    try:
        path = engine.save(call.body.path, force=call.body.force)
    except OSError as exc:  # an unwritable or missing directory is the caller's problem, not a defect
        raise ApiError(400, "bad_request", f"cannot save to {call.body.path!r}: {exc.strerror or exc}") from None
    return {"path": str(path)}


def reload(engine: Any, call: Call) -> dict[str, Any]:
    assert isinstance(call.body, ReloadBody)
    try:
        engine.reload(call.body.bundle)
    except OSError as exc:
        raise ApiError(400, "bad_request", f"cannot load bundle {call.body.bundle!r}: {exc.strerror or exc}") from None
    return {"bundle": str(engine.bundle_path), "n_items": engine.n_items, "n_users": engine.n_users,
            "provider": engine.provider}


ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("recommend", "POST", "/recommend", recommend, "Top-k items for a user, a history, or a scene/profile",
              RecommendBody, RecommendResponse, batch=recommend_together),
    RouteSpec("recommend_batch", "POST", "/recommend/batch", recommend_batch,
              "Many recommend requests at once (one user-tower run, batched retrieval)", BatchBody, BatchResponse),
    RouteSpec("recommend_group", "POST", "/recommend/group", recommend_group, "Items for a group of known users",
              GroupBody, RecommendResponse),
    RouteSpec("similar", "GET", "/items/{item_id:path}/similar", similar,
              "Items most similar to an item (cosine of retrieval vectors)", None, RecommendResponse,
              id_endpoint=True, query=(("k", f"integer 1..{MAX_K}, default 10"),
                                       ("filter", "JSON object, see the search filter"))),
    RouteSpec("search", "POST", "/search", search, "Items whose text best matches a query (the ONNX text encoder)",
              SearchBody, RecommendResponse),
    RouteSpec("add_items", "POST", "/items", add_items,
              "Add (or replace) items: encoded by the text encoder, retrievable at once", AddItemsBody,
              AddItemsResponse),
    RouteSpec("remove_items", "DELETE", "/items", remove_items, "Remove items (no longer served)", RemoveItemsBody,
              RemoveItemsResponse),
    RouteSpec("update_user", "POST", "/users/{user_id:path}/events", update_user,
              "Append events to a user's history and refresh the user's vector (unknown users are created)",
              EventsBody, UpdateUserResponse),
    RouteSpec("user", "GET", "/users/{user_id:path}", user, "A known user's history (oldest first)", None,
              UserResponse, id_endpoint=True),
    RouteSpec("admin_save", "POST", "/admin/save", save, "Write the live state as a new bundle (this worker's)",
              SaveBody, SaveResponse, admin=True),
    RouteSpec("admin_reload", "POST", "/admin/reload", reload,
              "Load a bundle (default: the current path again) and swap it in without dropping requests",
              ReloadBody, ReloadResponse, admin=True, body_optional=True, reloads=True),
)
