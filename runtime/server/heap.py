"""The server process's garbage-collector policy: what is alive after a (re)load is kept out of the
collector's way.

CPython's cyclic collector walks every tracked container of the generation it collects. With an engine
loaded, the oldest generation holds tens of thousands of objects (the engine's id maps and lists, the
imported web stack): a full collection of a MovieLens engine alone, in-process, took 6-15 ms, paid by
whichever request happened to trigger it, a p99 spike no engine work explains. `gc.freeze()` (Python >= 3.7)
moves every object alive at that moment into a permanent generation the collector never walks; requests'
own short-lived objects are still collected as usual. The server settles the heap after loading the
engine and after every reload (the old engine's objects are unfrozen first, so a cycle among them is
still collected). A library must not change its host's collector, so only `recengine serve` does this,
never `Engine`.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger("recengine.server")


def settle() -> None:
    """Collect what a (re)load left behind, then freeze everything alive (see the module docstring)."""
    start = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    log.debug("heap settled in %.1f ms: %d objects frozen", (time.perf_counter() - start) * 1e3,
              gc.get_freeze_count())


__all__ = ["settle"]
