"""Server configuration and request caps (plain dataclasses; the CLI and tests build them).

Caps exist because one HTTP request must not be able to occupy a worker for seconds or allocate without
bound: the engine itself accepts k up to 10,000 and any history length, which is fine in-process (the host
chose the numbers) but not from an untrusted network peer.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..cooccur import check_weight
from ..errors import RequestError
from ..models import VARIANTS
from ..requests import MAX_QUERY_CHARS

# Request caps. They are module constants (not per-server settings) because they are also written into
# the OpenAPI schema, which a client generator reads once.
MAX_K = 1000
"""Largest `k` any endpoint returns."""
MAX_CANDIDATES = 10_000
"""Largest `candidates` (items retrieval hands to the fusion head)."""
MAX_HISTORY = 1000
"""Longest `history` a recommend request may carry (the user tower reads the most recent ones only)."""
MAX_BATCH = 256
"""Most requests in one `POST /recommend/batch`."""
MAX_GROUP = 100
"""Most members in one `POST /recommend/group`."""
MAX_ADD_ITEMS = 256
"""Most items in one `POST /items` (each is run through the text encoder)."""
MAX_REMOVE_IDS = 10_000
"""Most ids in one `DELETE /items`."""
MAX_EVENTS = 1000
"""Most events in one `POST /users/{id}/events`."""
MAX_TEXT_CHARS = MAX_QUERY_CHARS
"""Longest search text or item text field, in characters (the engine's own cap on search text,
`recengine.requests.MAX_QUERY_CHARS`; the encoder truncates tokens anyway)."""
MAX_ID_CHARS = 512
"""Longest item or user id, in characters."""
MAX_MAP_KEYS = 64
"""Most keys in a scene, profile, filter or item mapping."""
MAX_VECTOR_DIM = 4096
"""Longest media `vector` of an added item (image/audio vectors; the bundle checks the exact width)."""
DEFAULT_MAX_BODY_BYTES = 1 << 20
"""Default request body limit (1 MiB): 256 items of 4 KiB text fit."""

ENV_CONFIG = "RECENGINE_SERVE_CONFIG"
"""Environment variable through which `--workers N` hands the configuration to each worker process
(uvicorn spawns workers by importing an app factory by name; it cannot pass Python objects)."""

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class ServerConfig:
    """Everything `recengine serve` needs; validated on construction so a typo fails before any loading.

    threads: ONNX Runtime intra-op threads per model session (1 by default: concurrent requests already
    keep the cores busy, and several multi-threaded ORT runs at once spin against each other).
    pool_size: threads that run engine calls other than `POST /recommend`, which runs on the coalescing
    lane unless `coalesce` is 1 (CPU-bound work never runs on the event loop). One per core:
    ONNX Runtime and hnswlib release the GIL, so that many calls run in parallel; more threads only pass
    the GIL around more (measured on 2 cores: 4 threads cost ~20 % more server CPU per request than 2).
    coalesce: the most concurrent `POST /recommend` calls one engine call answers together (1: never
    together, and recommend calls run on the general pool). Above 1 they run on a lane of one thread that
    takes the recommend calls already queued behind the one it starts, never waiting for more, and answers
    them with `Engine.recommend_batch(independent=True)`: each gets the answer it gets alone, for less CPU
    and a shorter tail under load (`recengine.server.pool`).
    graceful_timeout_s: how long shutdown waits for in-flight requests before closing their connections.
    switch_interval_s: the interpreter's GIL switch interval in the server process (None: Python's 5 ms).
    The event loop and the pool threads hand the GIL back and forth on every request; with the default
    5 ms a thread that wants it can wait that long behind a busy one, which shows up directly in p99.
    fresh_below: items with fewer interactions count as fresh for a request's `fresh` share (Engine.open).
    cooccur_weight: weight of the item co-occurrence signal (Engine.open; None: the bundle's).
    item_variant: encoder variant for items added through POST /items (Engine.open; None: fp32 where the
    serving encoder is INT8, so added items match the export's catalogue vectors; "int8" adds faster).
    freeze_heap: settle the process's heap after loading the engine and after every reload (`gc.freeze()`,
    `recengine.server.heap`): `recengine serve` turns it on; a host embedding `create_app` keeps its own
    garbage-collector policy unless it asks for this.
    watch: a pointer file naming the bundle to serve, polled every `watch_interval_s` s by every worker
    (see `recengine.server.watch`): how a fleet of replicas and workers moves to a new bundle.
    """

    bundle: str
    host: str = "127.0.0.1"
    port: int = 8000
    device: str = "auto"
    threads: int | None = 1
    workers: int = 1
    admin_token: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    pool_size: int = field(default_factory=lambda: max(2, os.cpu_count() or 1))
    coalesce: int = 16
    graceful_timeout_s: float = 30.0
    switch_interval_s: float | None = 0.0005
    fresh_below: int = 5
    cooccur_weight: float | None = None
    item_variant: str | None = None
    freeze_heap: bool = False
    watch: str | None = None
    watch_interval_s: float = 10.0
    access_log: bool = False
    log_level: str = "info"

    def __post_init__(self) -> None:
        if not isinstance(self.bundle, str) or not self.bundle:
            raise RequestError("bundle must be a non-empty path")
        if self.item_variant is not None and self.item_variant not in VARIANTS:
            raise RequestError(f"item variant must be one of {', '.join(VARIANTS)}, got {self.item_variant!r}")
        if self.device not in DEVICES:
            raise RequestError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if not (0 <= self.port <= 65535):
            raise RequestError(f"port must be between 0 and 65535, got {self.port}")
        if self.threads is not None and not (1 <= self.threads <= 1024):
            raise RequestError(f"threads must be between 1 and 1024, got {self.threads}")
        if not (1 <= self.workers <= 256):
            raise RequestError(f"workers must be between 1 and 256, got {self.workers}")
        if not (1 <= self.pool_size <= 1024):
            raise RequestError(f"pool size must be between 1 and 1024, got {self.pool_size}")
        if not (1 <= self.coalesce <= MAX_BATCH):
            raise RequestError(f"coalesce must be between 1 and {MAX_BATCH}, got {self.coalesce}")
        if not (1024 <= self.max_body_bytes <= 1 << 30):
            raise RequestError(f"max body bytes must be between 1 KiB and 1 GiB, got {self.max_body_bytes}")
        if self.admin_token is not None and len(self.admin_token) < 8:
            raise RequestError("admin token must be at least 8 characters (or leave it out to disable /admin)")
        if self.switch_interval_s is not None and not (1e-6 <= self.switch_interval_s <= 1.0):
            raise RequestError(f"switch interval must be between 1e-6 and 1 s, got {self.switch_interval_s}")
        if not (1 <= self.fresh_below <= 2**62):
            raise RequestError(f"fresh_below must be between 1 and 2**62, got {self.fresh_below}")
        if self.cooccur_weight is not None:
            check_weight(self.cooccur_weight)
        if not (0.05 <= self.watch_interval_s <= 86400):
            raise RequestError(f"watch interval must be between 0.05 s and a day, got {self.watch_interval_s}")
        if self.graceful_timeout_s <= 0:
            raise RequestError(f"graceful timeout must be > 0 s, got {self.graceful_timeout_s}")

    @property
    def bundle_path(self) -> Path:
        return Path(self.bundle)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServerConfig:
        data: Any = json.loads(text)
        if not isinstance(data, dict):
            raise RequestError(f"{ENV_CONFIG} must hold a JSON object")
        return cls(**data)


def caps() -> dict[str, int]:
    """The request caps by name (served in the OpenAPI description and documented in docs/serve.md)."""
    return {
        "k": MAX_K, "candidates": MAX_CANDIDATES, "history": MAX_HISTORY, "batch": MAX_BATCH,
        "group_members": MAX_GROUP, "add_items": MAX_ADD_ITEMS, "remove_ids": MAX_REMOVE_IDS,
        "events": MAX_EVENTS, "vector_dim": MAX_VECTOR_DIM, "text_chars": MAX_TEXT_CHARS, "id_chars": MAX_ID_CHARS,
        "map_keys": MAX_MAP_KEYS,
    }
