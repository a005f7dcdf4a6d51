"""Fixtures of the HTTP server tests: one engine over the session's tiny bundle, an app per test.

Every test module here starts with `pytest.importorskip("starlette")`: the tests are skipped, cleanly and
only, where the `serve` extra is not installed.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ADMIN_TOKEN = "test-admin-token-123"


@pytest.fixture(scope="module")
def bundle_copy(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the tiny bundle (tests save/reload around it)."""
    return Path(shutil.copytree(tiny_bundle, tmp_path_factory.mktemp("serve") / "bundle"))


@pytest.fixture()
def engine(bundle_copy: Path) -> Any:
    """A fresh engine per test: tests that add, remove or update must not leak into the next."""
    from recengine import Engine

    return Engine.open(bundle_copy, device="cpu", threads=1)


@pytest.fixture()
def make_client(engine: Any, bundle_copy: Path) -> Iterator[Any]:
    """`make_client(**config)` -> a Starlette TestClient over `engine` (lifespan run, pool started)."""
    from starlette.testclient import TestClient

    from recengine.server import ServerConfig, create_app

    opened: list[Any] = []

    def make(**overrides: Any) -> Any:
        config = ServerConfig(bundle=str(bundle_copy), **overrides)
        client = TestClient(create_app(config, engine=engine), raise_server_exceptions=False)
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture()
def client(make_client: Any) -> Any:
    """A client of a server with admin enabled (token `ADMIN_TOKEN`)."""
    return make_client(admin_token=ADMIN_TOKEN)


@pytest.fixture()
def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}
