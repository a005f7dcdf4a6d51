"""Request and response schemas of the HTTP API (pydantic v2, strict).

One model per request body, with the caps of `recengine.server.config` as constraints, so validation
(wrong types, missing fields, unknown fields, over-long lists) happens in pydantic-core before any engine
work, and the same models generate the OpenAPI document. Models are strict: `"10"` is not an integer and
`true` is not a number, because a host that sends the wrong type has a bug it should hear about.
Semantic checks (unknown scene key, bad filter operator, ...) stay in the engine, which raises
`RequestError`; the server maps that to 400.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from .config import (
    MAX_ADD_ITEMS,
    MAX_BATCH,
    MAX_CANDIDATES,
    MAX_EVENTS,
    MAX_GROUP,
    MAX_HISTORY,
    MAX_ID_CHARS,
    MAX_K,
    MAX_MAP_KEYS,
    MAX_REMOVE_IDS,
    MAX_TEXT_CHARS,
    MAX_VECTOR_DIM,
)

Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)]
Scalar = Text | int | float | bool | None
ScalarMap = Annotated[dict[Id, Scalar], Field(max_length=MAX_MAP_KEYS)]
FilterValue = Scalar | list[Scalar] | dict[str, Scalar | list[Scalar]]
Filter = Annotated[dict[Id, FilterValue], Field(
    max_length=MAX_MAP_KEYS,
    description='`{"ids": [...]}` and/or `attr_*` predicates: a scalar (equality), a list (membership) or '
                '`{op: value}` with op in eq, ne, in, not_in, lt, lte, gt, gte, contains (see recengine.filters).',
)]
K = Annotated[int, Field(ge=1, le=MAX_K, description=f"number of results (1..{MAX_K})")]
Candidates = Annotated[int, Field(ge=1, le=MAX_CANDIDATES,
                                  description="items retrieval hands to the fusion head (default: the bundle's)")]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


class RecommendBody(_Strict):
    """`Engine.recommend`: a stored user, a history of item ids, or neither (scene/profile or popular)."""

    user_id: Id | None = None
    history: Annotated[list[Id], Field(max_length=MAX_HISTORY)] | None = None
    scene: ScalarMap | None = None
    profile: ScalarMap | None = None
    k: K = 10
    exclude_seen: bool = True
    filter: Filter | None = None
    candidates: Candidates | None = None
    long_tail: Annotated[float, Field(ge=0.0, le=100.0)] = 0.0
    diversity: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    explain: bool = False
    fresh: Annotated[float, Field(ge=0.0, le=1.0, description="share of the k slots reserved for fresh items "
                                                              "(few interactions, or added live)")] = 0.0


class BatchBody(_Strict):
    """`Engine.recommend_batch`: one user-tower run and batched retrieval for all requests."""

    requests: Annotated[list[RecommendBody], Field(min_length=1, max_length=MAX_BATCH)]


class GroupBody(_Strict):
    """`Engine.recommend_group`."""

    user_ids: Annotated[list[Id], Field(min_length=1, max_length=MAX_GROUP)]
    strategy: Literal["average", "least_misery", "max_pleasure"] = "average"
    k: K = 10
    candidates: Candidates | None = None
    exclude_seen: bool = True
    scene: ScalarMap | None = None


class SearchBody(_Strict):
    """`Engine.search`: items whose text is closest to `text`."""

    text: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT_CHARS)]
    k: K = 10
    filter: Filter | None = None


class NewItem(BaseModel):
    """An item for `Engine.add_items`: `item_id`, the bundle's text columns (e.g. title, genres) and
    `attr_*` values as extra fields, or a prebuilt `text`."""

    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)
    __pydantic_extra__: dict[str, Scalar]

    item_id: Id
    text: Text | None = None
    vector: Annotated[list[float], Field(max_length=MAX_VECTOR_DIM, description="media vector (image/audio) "
                                         "of the bundle's media width, when the bundle has a media projection")] \
        | None = None


class AddItemsBody(_Strict):
    items: Annotated[list[NewItem], Field(min_length=1, max_length=MAX_ADD_ITEMS)]


class RemoveItemsBody(_Strict):
    ids: Annotated[list[Id], Field(min_length=1, max_length=MAX_REMOVE_IDS)]


class Event(_Strict):
    item_id: Id


class EventsBody(_Strict):
    """`Engine.update_user`: events are item ids or `{"item_id": ...}` objects, oldest first."""

    events: Annotated[list[Id | Event], Field(min_length=1, max_length=MAX_EVENTS)]


class SaveBody(_Strict):
    """`Engine.save`: write the live state (added/removed items, updated users) as a new bundle."""

    path: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    force: bool = False


class ReloadBody(_Strict):
    """`Engine.reload`: swap in `bundle` (default: the current bundle path again)."""

    bundle: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None


# ---------------------------------------------------------------------------------------------- responses
class Result(BaseModel):
    item_id: str
    score: float
    reason: str | None = Field(default=None, description="present with explain=true")


class RecommendResponse(BaseModel):
    source: str = Field(description="stored | history | cold | popular | group | item | search")
    skipped: list[str] = Field(description="request ids that were unknown (or removed) and were ignored")
    results: list[Result]


class BatchResponse(BaseModel):
    responses: list[RecommendResponse]


class AddItemsResponse(BaseModel):
    added: list[str]
    n_items: int


class RemoveItemsResponse(BaseModel):
    removed: int = Field(description="how many of the ids were live items")
    n_items: int


class UpdateUserResponse(BaseModel):
    user_id: str
    appended: int
    skipped: list[str]
    history_length: int
    created: bool


class UserResponse(BaseModel):
    user_id: str
    history: list[str]


class SaveResponse(BaseModel):
    path: str


class ReloadResponse(BaseModel):
    bundle: str
    n_items: int
    n_users: int
    provider: str


class HealthResponse(BaseModel):
    status: Literal["ok"]


class ReadyResponse(BaseModel):
    ready: bool
    provider: str | None = None
    device: str | None = None
    bundle: str | None = None
    n_items: int | None = None
    n_users: int | None = None
    variants: dict[str, str] | None = None
    item_variant: str | None = None
    uses_fusion: bool | None = None


class ErrorDetail(BaseModel):
    loc: str
    message: str


class ErrorResponse(BaseModel):
    error: str = Field(description="bad_request | invalid_json | validation_error | not_found | unauthorized | "
                                   "forbidden | admin_disabled | payload_too_large | unsupported_media_type | "
                                   "method_not_allowed | unavailable | internal_error")
    message: str
    request_id: str
    details: list[ErrorDetail] | None = None
