"""`recengine.server.heap.settle`: what a (re)load left behind is collected, what is alive is frozen."""

from __future__ import annotations

import gc
import weakref

import pytest

pytest.importorskip("starlette")

from recengine.server import heap  # noqa: E402


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_settle_collects_cycles_and_freezes_the_living() -> None:
    try:
        gc.freeze()  # as after an earlier load: an old engine's cycle sits in the permanent generation
        old = _Node()
        old.other = _Node()
        old.other.other = old
        gone = weakref.ref(old)
        gc.freeze()
        del old
        kept = [_Node() for _ in range(10)]
        heap.settle()
        assert gone() is None  # unfrozen first, so the old cycle was collected
        assert gc.get_freeze_count() >= len(kept)
        before = gc.get_freeze_count()
        gc.collect()
        assert gc.get_freeze_count() == before  # a collection no longer walks (or frees) them
    finally:
        gc.unfreeze()
