"""How failures become HTTP responses: one JSON shape, the right status, never a traceback.

- pydantic `ValidationError` on a body: 400 `invalid_json` when the bytes are not JSON at all, else 422
  `validation_error` with one detail per problem (`loc` like `requests.0.k`).
- `RequestError` from the engine: 400 `bad_request` with the engine's message (it names the problem);
  404 `not_found` on `NotFoundError` (an item or user the engine does not know) when the endpoint is
  about that id (`GET /items/{id}/similar`, `GET /users/{id}`).
- other `RecengineError` (e.g. `BundleError` from `/admin/reload` with a broken bundle): 400.
- anything else is a defect: logged with its traceback and the request id, answered 500 with only the id.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from typing import Any

from pydantic import ValidationError

from ..errors import NotFoundError, RecengineError

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
# The engine's messages for ids it does not know (engine.similar_items / engine.history). The engine has
# no dedicated not-found exception type, so the message prefix is the contract used here.


class ApiError(Exception):
    """An error the server raises itself (bad token, body too large, ...): status, code, message."""

    def __init__(self, status: int, code: str, message: str, details: list[dict[str, str]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


class RequestIds:
    """Fresh request ids of one app: 16 random hex digits drawn when the app is built, then a counter
    (32 hex digits in all, like a UUID's). Unique across workers, replicas and restarts (64 random bits
    per app) without a `uuid4()` per request, which costs an `os.urandom` system call each time."""

    def __init__(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.counter = itertools.count(1)

    def new(self) -> str:
        return f"{self.prefix}{next(self.counter):016x}"


def request_id(header: str | None, ids: RequestIds) -> str:
    """The caller's `X-Request-Id` when it is a short, safe token (so logs can join across services),
    else a fresh one from `ids`."""
    if header and _SAFE_ID.match(header):
        return header
    return ids.new()


def from_validation(exc: ValidationError, what: str = "body") -> ApiError:
    """A pydantic error as 400 (not JSON) or 422 (JSON of the wrong shape), naming each field."""
    errors = exc.errors(include_url=False, include_input=False)
    if any(e.get("type") == "json_invalid" for e in errors):
        msg = next(e for e in errors if e.get("type") == "json_invalid").get("msg", "invalid JSON")
        return ApiError(400, "invalid_json", f"request {what} is not valid JSON: {msg}")
    details = []
    for e in errors:
        loc = ".".join(str(p) for p in e.get("loc", ())) or what
        details.append({"loc": loc, "message": str(e.get("msg", "invalid value"))})
    first = details[0] if details else {"loc": what, "message": "invalid"}
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return ApiError(422, "validation_error", f"{first['loc']}: {first['message']}{more}", details)


def from_engine(exc: RecengineError, id_endpoint: bool) -> ApiError:
    """An engine error as 404 (unknown id on an endpoint about that id) or 400."""
    message = str(exc) or type(exc).__name__
    if id_endpoint and isinstance(exc, NotFoundError):
        return ApiError(404, "not_found", message)
    return ApiError(400, "bad_request", message)


def body(error: ApiError, rid: str) -> bytes:
    payload: dict[str, Any] = {"error": error.code, "message": error.message, "request_id": rid}
    if error.details:
        payload["details"] = error.details
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")
