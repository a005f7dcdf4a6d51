"""The HTTP bodies mirror the Engine's signatures one to one: an option the engine gains (or loses) fails
here until the server's schema follows, so the API cannot drift silently."""

from __future__ import annotations

import inspect

import pytest

pytest.importorskip("starlette")

from recengine.engine import Engine  # noqa: E402
from recengine.server import schemas  # noqa: E402

# (Engine method, body model, engine parameters carried elsewhere: path/query, or server-side settings)
MIRRORS = [
    ("recommend", schemas.RecommendBody, set()),
    ("recommend_group", schemas.GroupBody, set()),
    ("search", schemas.SearchBody, set()),
    ("save", schemas.SaveBody, set()),
    ("reload", schemas.ReloadBody, set()),
    ("remove_items", schemas.RemoveItemsBody, set()),
    ("update_user", schemas.EventsBody, {"user_id"}),   # user_id is the path
    ("add_items", schemas.AddItemsBody, {"batch_size"}),  # encoder batching is the server's business
]


@pytest.mark.parametrize("method, model, elsewhere", MIRRORS, ids=[m for m, _, _ in MIRRORS])
def test_body_fields_are_the_engine_parameters(method: str, model: type, elsewhere: set[str]) -> None:
    params = set(inspect.signature(getattr(Engine, method)).parameters) - {"self"} - elsewhere
    fields = set(model.model_fields)
    assert fields == params, (method, sorted(fields ^ params))


@pytest.mark.parametrize("method, model", [("recommend", schemas.RecommendBody), ("search", schemas.SearchBody),
                                           ("recommend_group", schemas.GroupBody)])
def test_defaults_are_the_engine_defaults(method: str, model: type) -> None:
    for name, param in inspect.signature(getattr(Engine, method)).parameters.items():
        if name in model.model_fields and param.default is not inspect.Parameter.empty:
            assert model.model_fields[name].default == param.default, (method, name)


def test_similar_items_parameters_are_path_and_query() -> None:
    assert set(inspect.signature(Engine.similar_items).parameters) == {"self", "item_id", "k", "filter"}
