"""`recengine.server.heap.settle`: what a (re)load left behind is collected, what is alive is frozen; only a
server that asks for it (`ServerConfig.freeze_heap`, set by `recengine serve`) settles its heap."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import pytest

pytest.importorskip("starlette")

from recengine.server import heap  # noqa: E402


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _collected_by_the_oldest_generation(obj: object) -> bool:
    return any(o is obj for o in gc.get_objects(generation=2))


def test_settle_collects_cycles_and_freezes_the_living() -> None:
    try:
        old = _Node()
        old.other = _Node()
        old.other.other = old
        gone = weakref.ref(old)
        gc.freeze()  # as after an earlier load: an old engine's cycle sits in the permanent generation
        del old
        kept = _Node()
        gc.collect()
        assert gone() is not None  # frozen: a collection does not reach it
        heap.settle()
        assert gone() is None  # unfrozen first, so the old cycle was collected
        assert not _collected_by_the_oldest_generation(kept)  # frozen: no collection walks it
        gc.unfreeze()
        assert _collected_by_the_oldest_generation(kept)
    finally:
        gc.unfreeze()


def test_only_a_server_that_asks_freezes_its_heap(bundle_copy: Path) -> None:
    from recengine.server import ServerConfig
    from recengine.server.app import load_engine

    gc.unfreeze()
    try:
        load_engine(ServerConfig(bundle=str(bundle_copy)))  # an embedding host's default
        assert gc.get_freeze_count() == 0
        load_engine(ServerConfig(bundle=str(bundle_copy), freeze_heap=True))
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_recengine_serve_asks_for_it_and_passes_coalesce(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI's config: heap frozen, `--coalesce` (default 16) passed through; nothing is served here."""
    from recengine.cli import main
    from recengine.server import runner

    seen = []
    monkeypatch.setattr(runner, "serve", seen.append)
    for args, coalesce in (([], 16), (["--coalesce", "1"], 1)):
        assert main(["serve", str(tmp_path), *args]) == 0
        assert seen[-1].freeze_heap and seen[-1].coalesce == coalesce
    capsys.readouterr()
    assert main(["serve", str(tmp_path), "--coalesce", "0"]) == 2
    assert "coalesce must be between 1" in capsys.readouterr().err


@pytest.mark.parametrize(("workers", "threads", "helper"), [(1, 1, True), (2, 1, False), (1, 2, False),
                                                             (1, None, False)])
def test_search_gets_a_helper_thread_only_where_the_workers_leave_a_cpu_idle(
        bundle_copy: Path, monkeypatch: pytest.MonkeyPatch, workers: int, threads: int | None,
        helper: bool) -> None:
    """`recengine.overlap`: on 2 CPUs one worker with one ONNX thread leaves a core for search's BM25 half;
    two workers, or an engine whose sessions take every core, do not."""
    from recengine import overlap
    from recengine.server import ServerConfig
    from recengine.server.app import load_engine

    monkeypatch.setattr(overlap, "usable_cpus", lambda: 2)
    engine = load_engine(ServerConfig(bundle=str(bundle_copy), workers=workers, threads=threads))
    assert (engine._state.helper is not None) == helper
