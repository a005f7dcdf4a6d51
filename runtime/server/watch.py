"""Reload on a new bundle: each worker watches a pointer file that names the bundle to serve.

`/admin/reload` reaches one worker of one replica. A fleet (N replicas x M workers) converges instead by
each worker polling one small file (on shared storage, or shipped by the deploy tool) that holds the path
of the bundle to serve: write a new bundle at a new path, then replace the pointer file's content
atomically (write a temporary file, rename it over the pointer). Every worker loads the new bundle on
its thread pool and swaps it in with `Engine.reload` (requests in flight finish on the old one). A
pointer naming a broken bundle is logged and skipped; the old bundle keeps serving, and the same content
is not retried until it changes.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from . import heap

log = logging.getLogger("recengine.server")


def read_pointer(pointer: Path) -> Path | None:
    """The bundle path the pointer file names (relative paths are relative to the file's directory);
    None when the file is missing or empty."""
    try:
        text = pointer.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not text:
        return None
    target = Path(text)
    return target if target.is_absolute() else (pointer.parent / target)


async def watch_pointer(pointer: Path, interval_s: float, get_engine: Any, pool: Executor,
                        stop: asyncio.Event, settle: bool = False) -> None:
    """Poll `pointer` every `interval_s` s until `stop` is set; reload the engine when it names a bundle
    other than the one served (and settle the heap after, with `settle`: `ServerConfig.freeze_heap`)."""
    loop = asyncio.get_running_loop()
    last: Path | None = None
    while not stop.is_set():
        target = read_pointer(pointer)
        engine = get_engine()
        if target is not None and target != last and engine is not None:
            last = target
            if target.resolve() != Path(engine.bundle_path).resolve():
                try:
                    await loop.run_in_executor(pool, engine.reload, str(target))
                    if settle:
                        await loop.run_in_executor(pool, heap.settle)
                    log.info("reloaded bundle %s (named by %s)", target, pointer)
                except Exception as exc:  # any failure: keep serving the old bundle, say why once
                    log.error("cannot reload bundle %s named by %s: %s", target, pointer, exc)
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
        except asyncio.TimeoutError:
            pass
