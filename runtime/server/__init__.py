"""`recengine.server`: the engine over HTTP (extra `serve`: Starlette + uvicorn + pydantic; never torch).

    recengine serve demo --port 8000 --admin-token "$TOKEN"

`create_app(ServerConfig(bundle=...))` builds the ASGI app (tests drive it with Starlette's TestClient);
`serve(config)` runs it under uvicorn. The endpoints, caps, errors and the multi-worker model are
documented in docs/serve.md.
"""

from __future__ import annotations

from .config import ServerConfig, caps

__all__ = ["ServerConfig", "caps", "create_app", "serve", "openapi_document"]


def __getattr__(name: str):  # noqa: ANN202 - lazy: keep `import recengine.server` free of starlette
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "serve":
        from .runner import serve

        return serve
    if name == "openapi_document":
        from .openapi import openapi_document

        return openapi_document
    raise AttributeError(f"module 'recengine.server' has no attribute {name!r}")
