"""The real server: `recengine serve` as a child process on an ephemeral 127.0.0.1 port, driven over real
sockets. Concurrent reads and writes (and reloads) without one error; graceful shutdown finishes a request
that was in flight when SIGTERM arrived; `--workers 2`; CLI errors. Every wait is bounded."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
httpx = pytest.importorskip("httpx")

from recengine.server.process import ServerProcess  # noqa: E402

TOKEN = "real-server-token-42"


def _run_all(threads: list[threading.Thread], timeout_s: float) -> None:
    """Start the client threads and wait for them all (bounded: a hang fails the test, never blocks it)."""
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s)
    assert not any(t.is_alive() for t in threads), "requests did not finish in time"


@pytest.fixture(scope="module")
def server(bundle_copy: Path) -> Any:
    proc = ServerProcess(bundle_copy, ["--admin-token", TOKEN, "--log-level", "warning"])
    proc.start(timeout=120)
    yield proc
    proc.stop(30)


@pytest.mark.timeout(180)
def test_concurrent_reads_writes_and_reloads_over_http(server: ServerProcess, bundle_copy: Path) -> None:
    from recengine import Engine

    ids = Engine.open(bundle_copy, device="cpu")
    users, items = ids.user_ids()[:20], ids.item_ids()[:100]
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    lock = threading.Lock()

    def record(r: Any, what: str) -> None:
        with lock:
            statuses[r.status_code] += 1
            if r.status_code != 200:
                failures.append(f"{what}: {r.status_code} {r.text[:200]}")

    def reader(n: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            for i in range(40):
                record(c.post("/recommend", json={"user_id": users[(n + i) % len(users)], "k": 5}), "recommend")
                if i % 4 == 0:
                    record(c.post("/recommend", json={"history": items[i:i + 3], "k": 5}), "history")
                    record(c.get(f"/items/{items[i]}/similar", params={"k": 3}), "similar")
                    record(c.post("/search", json={"text": f"film {i}", "k": 3}), "search")

    def writer(n: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            for i in range(10):
                new = f"w{n}-{i}"
                record(c.post("/items", json={"items": [{"item_id": new, "title": f"Written {n} {i}"}]}), "add")
                record(c.post(f"/users/writer-{n}/events", json={"events": [new, items[i]]}), "update")
                if i % 2:
                    record(c.request("DELETE", "/items", json={"ids": [new]}), "remove")

    def reloader() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            for _ in range(2):
                time.sleep(0.2)
                record(c.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}), "reload")

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(4)]
    threads += [threading.Thread(target=writer, args=(n,)) for n in range(2)]
    _run_all(threads + [threading.Thread(target=reloader)], 150)
    assert failures == [], failures[:5]
    assert statuses[200] == 4 * (40 + 10 * 3) + 2 * (10 * 2 + 5) + 2
    with httpx.Client(base_url=server.url, timeout=10) as c:
        metrics = c.get("/metrics").text
    assert 'recengine_http_requests_total{endpoint="recommend",method="POST",code="200"}' in metrics
    assert "recengine_http_errors_total{" not in metrics  # no error response at all
    assert 'recengine_engine_info{bundle=' in metrics and 'provider="CPUExecutionProvider"' in metrics


@pytest.mark.timeout(120)
def test_concurrent_good_and_bad_recommends_each_get_their_own_answer(server: ServerProcess, bundle_copy: Path) -> None:
    """/recommend calls from 8 threads at once (coalesced on the server's lane), bad bodies and bodies the
    engine refuses among them: each request gets the status its own body earns, the good ones full lists."""
    from recengine import Engine

    ids = Engine.open(bundle_copy, device="cpu")
    users, items = ids.user_ids()[:10], ids.item_ids()[:50]
    cases = [({"user_id": users[0], "k": 5}, 200), ({"history": items[:3], "k": 4}, 200),
             ({"user_id": users[1], "k": "many"}, 422), ({"user_id": users[2], "k": 3, "filter": {"nope": 1}}, 400),
             ({"user_id": users[3], "k": 6}, 200), ({"history": "not a list"}, 422)]
    from recengine.errors import RequestError

    with pytest.raises(RequestError):
        ids.recommend(**cases[3][0])  # the engine itself refuses it: a 400
    wrong: list[str] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            for i in range(24):
                body, want = cases[(n + i) % len(cases)]
                r = c.post("/recommend", json=body)
                ok = r.status_code == want and (want != 200 or len(r.json()["results"]) == body["k"])
                if not ok:
                    with lock:
                        wrong.append(f"{body} -> {r.status_code} {r.text[:120]}")

    _run_all([threading.Thread(target=client, args=(n,)) for n in range(8)], 100)
    assert wrong == [], wrong[:5]
    with httpx.Client(base_url=server.url, timeout=10) as c:
        metrics = c.get("/metrics").text
    assert "recengine_coalesced_calls_total" in metrics
    assert 'recengine_http_errors_total{endpoint="recommend",kind="server"}' not in metrics  # never a 500


def _partial_request(url: str, body: bytes, sent: int) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    head = (f"POST /recommend HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    sock.sendall(head + body[:sent])
    return sock


def _read_response(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, json.loads(rest[:length])


@pytest.mark.timeout(180)
def test_graceful_shutdown_finishes_the_request_in_flight(bundle_copy: Path) -> None:
    """SIGTERM while a request's body is still arriving: the server stops accepting new connections but
    answers that request in full, then exits 0."""
    proc = ServerProcess(bundle_copy, ["--log-level", "info", "--graceful-timeout", "20"])
    url = proc.start(timeout=120)
    try:
        body = json.dumps({"k": 3}).encode()
        sock = _partial_request(url, body, sent=3)
        deadline = time.monotonic() + 30
        while "recengine_http_requests_in_flight 1" not in httpx.get(url + "/metrics", timeout=10).text:
            assert time.monotonic() < deadline, "the partial request never reached the app"
            time.sleep(0.05)  # until the app is reading our body: the request is in flight
        proc.terminate()
        deadline = time.monotonic() + 20
        refused = False
        while time.monotonic() < deadline:  # the listening socket closes while our request waits
            try:
                socket.create_connection(("127.0.0.1", proc.port), timeout=1).close()
            except OSError:
                refused = True
                break
            time.sleep(0.05)
        assert refused, "server kept accepting connections after SIGTERM"
        assert proc.proc is not None and proc.proc.poll() is None, "server exited with a request in flight"
        sock.sendall(body[3:])
        status, payload = _read_response(sock)
        sock.close()
        assert status == 200 and len(payload["results"]) == 3
    finally:
        code = proc.stop(30)
    assert code == 0, proc.lines[-20:]
    assert any("engine pool stopped" in line for line in proc.lines), proc.lines[-20:]


@pytest.mark.timeout(240)
def test_two_workers_each_serve(bundle_copy: Path) -> None:
    with ServerProcess(bundle_copy, ["--workers", "2", "--log-level", "warning"]) as proc:
        with httpx.Client(base_url=proc.url, timeout=30) as c:
            # wait until both workers answer /readyz (each loads its own engine)
            codes = [c.post("/recommend", json={"k": 2}).status_code for _ in range(30)]
            assert codes == [200] * 30
            assert c.get("/readyz").json()["ready"] is True
            assert "recengine_catalogue_items" in c.get("/metrics").text
        code = proc.stop(60)
    assert code == 0, proc.lines[-20:]


def test_cli_errors_are_one_line_exit_2(tmp_path: Path, bundle_copy: Path) -> None:
    import subprocess
    import sys

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "recengine", "serve", *args], capture_output=True, text=True,
                              timeout=120)

    for args, words in ((str(tmp_path / "missing"), "missing"),
                        ((str(bundle_copy), "--admin-token", "short"), "at least 8"),
                        ((str(bundle_copy), "--workers", "0"), "workers"),
                        ((str(tmp_path / "missing"), "--workers", "2"), "missing")):
        r = run(*([args] if isinstance(args, str) else args))
        assert r.returncode == 2, (args, r.stderr[-500:])
        assert r.stderr.startswith("error:") and words in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_print_openapi_loads_nothing(tmp_path: Path) -> None:
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "recengine", "serve", str(tmp_path / "not-needed"), "--print-openapi"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert "/recommend" in doc["paths"] and "RecommendBody" in doc["components"]["schemas"]
