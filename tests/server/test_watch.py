"""`--watch`: a pointer file names the bundle to serve; the server moves to a new bundle when the file
changes, keeps serving the old one when it names a broken bundle, and never drops a request meanwhile."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")

from recengine.server.watch import read_pointer  # noqa: E402


def _wait_for(client: Any, bundle: Path, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert client.post("/recommend", json={"k": 2}).status_code == 200  # serving all along
        if Path(client.get("/readyz").json()["bundle"]).resolve() == bundle.resolve():
            return True
        time.sleep(0.05)
    return False


def test_pointer_file_moves_the_server_to_a_new_bundle(make_client: Any, engine: Any, bundle_copy: Path,
                                                      tmp_path: Path, caplog: Any) -> None:
    engine.add_items([{"item_id": "only-in-new", "title": "Only In The New Bundle"}])
    new = engine.save(tmp_path / "new-bundle")
    engine.reload(bundle_copy)  # back to the original: the watcher must bring the new one
    pointer = tmp_path / "CURRENT"
    client = make_client(watch=str(pointer), watch_interval_s=0.1)
    assert client.get("/items/only-in-new/similar").status_code == 404
    tmp = tmp_path / "CURRENT.tmp"
    tmp.write_text("new-bundle\n")  # relative to the pointer's directory
    tmp.replace(pointer)
    assert _wait_for(client, new), "the server did not move to the bundle the pointer names"
    assert client.get("/items/only-in-new/similar").status_code == 200

    with caplog.at_level(logging.ERROR, logger="recengine.server"):
        pointer.write_text(str(tmp_path / "no-such-bundle"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any("no-such-bundle" in r.getMessage() for r in caplog.records):
            time.sleep(0.05)
    assert any("cannot reload" in r.getMessage() for r in caplog.records)
    assert Path(client.get("/readyz").json()["bundle"]).resolve() == new.resolve()  # still the last good one
    assert client.get("/items/only-in-new/similar").status_code == 200

    copy = Path(shutil.copytree(bundle_copy, tmp_path / "third"))
    pointer.write_text(str(copy))
    assert _wait_for(client, copy)
    assert client.get("/items/only-in-new/similar").status_code == 404


def test_read_pointer(tmp_path: Path) -> None:
    p = tmp_path / "ptr"
    assert read_pointer(p) is None
    p.write_text("  \n")
    assert read_pointer(p) is None
    p.write_text("/abs/bundle\n")
    assert read_pointer(p) == Path("/abs/bundle")
    p.write_bytes(b"\xff\xfe")
    assert read_pointer(p) is None
