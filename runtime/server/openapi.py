"""The OpenAPI 3.1 document, generated from the route table and the pydantic schemas (served at
`GET /openapi.json`; `recengine serve --print-openapi` writes it without starting a server)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .._version import __version__
from .config import ServerConfig, caps
from .handlers import ROUTES
from .schemas import ErrorResponse, HealthResponse, ReadyResponse

_REF = "#/components/schemas/{model}"
_ERRORS = {
    "400": "bad request: not JSON, or the engine refused it (unknown scene key, bad filter, ...)",
    "413": "request body over the server's limit",
    "415": "body is not application/json",
    "422": "body of the wrong shape: wrong types, missing or unknown fields, over a cap",
    "500": "server defect: the body carries the request id logged with the traceback",
    "503": "the engine is not loaded",
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json_content(model: type[BaseModel]) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(model)}}


def openapi_document(config: ServerConfig | None = None) -> dict[str, Any]:
    """The whole document; `config` only adds the body limit and admin state to the description."""
    models: set[type[BaseModel]] = {ErrorResponse, HealthResponse, ReadyResponse}
    for spec in ROUTES:
        models.update(m for m in (spec.body, spec.response) if m is not None)
    ordered = sorted(models, key=lambda m: m.__name__)
    _, schema = models_json_schema([(m, "validation" if m in {s.body for s in ROUTES} else "serialization")
                                    for m in ordered], ref_template=_REF)
    components = schema.get("$defs", {})
    caps_text = ", ".join(f"{k} <= {v}" for k, v in caps().items())
    description = ("recengine's Engine over HTTP: every endpoint mirrors one Engine method. "
                   f"Caps: {caps_text}. Every response carries X-Request-Id; errors are ErrorResponse.")
    if config is not None:
        description += (f" Body limit: {config.max_body_bytes} bytes. Admin endpoints: "
                        + ("need 'Authorization: Bearer <token>'." if config.admin_token else "disabled."))
    paths: dict[str, dict[str, Any]] = {}
    for spec in ROUTES:
        path = re.sub(r"\{(\w+):path\}", r"{\1}", spec.path)
        op: dict[str, Any] = {
            "operationId": spec.name,
            "summary": spec.summary,
            "responses": {"200": {"description": "OK", "content": _json_content(spec.response)}
                          if spec.response is not None else {"description": "OK"}},
        }
        params = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                  for p in re.findall(r"\{(\w+)(?::path)?\}", spec.path)]
        params += [{"name": name, "in": "query", "required": False, "description": desc,
                    "schema": {"type": "integer" if name == "k" else "string"}} for name, desc in spec.query]
        if params:
            op["parameters"] = params
        if spec.body is not None:
            op["requestBody"] = {"required": not spec.body_optional, "content": _json_content(spec.body)}
        for code, text in _ERRORS.items():
            op["responses"][code] = {"description": text, "content": _json_content(ErrorResponse)}
        if spec.id_endpoint:
            op["responses"]["404"] = {"description": "unknown id", "content": _json_content(ErrorResponse)}
        if spec.admin:
            op["security"] = [{"bearer": []}]
            op["responses"]["401"] = {"description": "missing token", "content": _json_content(ErrorResponse)}
            op["responses"]["403"] = {"description": "wrong token, or admin disabled",
                                      "content": _json_content(ErrorResponse)}
        paths.setdefault(path, {})[spec.method.lower()] = op
    alive = {"200": {"description": "alive", "content": _json_content(HealthResponse)}}
    paths["/healthz"] = {"get": {"operationId": "healthz", "summary": "Liveness", "responses": alive}}
    paths["/readyz"] = {"get": {"operationId": "readyz", "summary": "Readiness: bundle loaded, provider named",
                                "responses": {"200": {"description": "ready", "content": _json_content(ReadyResponse)},
                                              "503": {"description": "not ready",
                                                      "content": _json_content(ReadyResponse)}}}}
    paths["/metrics"] = {"get": {"operationId": "metrics", "summary": "Prometheus text exposition (this worker)",
                                 "responses": {"200": {"description": "metrics",
                                                       "content": {"text/plain": {"schema": {"type": "string"}}}}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "recengine", "version": __version__, "description": description},
        "paths": paths,
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
