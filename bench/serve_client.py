"""The load generator of `recengine bench serve`: a lean HTTP/1.1 keep-alive client on asyncio protocols.

Why not aiohttp (the client this bench used first): on a 2-core machine the client shares the cores with
the server it measures, so every microsecond it spends per request is taken from the server and shows up in
the latency it reports. aiohttp spent ~230 µs of CPU per request (a coroutine, a response object, header
parsing into a multidict, `json.loads` of the body); this client spends a fraction of that (measured next to
the server's CPU in every report: `client_cpu_us_per_request`).

How: every request is encoded once, up front (request line, `host`, `content-type`, `content-length`, body).
Each connection is an `asyncio.Protocol` running a closed loop in callbacks, without coroutines: it writes
a request, and when the response's last byte arrives it records the latency and writes the next one.
Of the response it parses only what a check needs: the status line, `content-length` (the server always
sends it; a response without one is counted as an error and the connection closed), `connection: close`,
and the body, which must hold `"results"` (every measured endpoint answers a result list) for the request
to count as a success. Latency is from just before the write to the arrival of the last byte.

This is a measuring tool for servers that speak plain HTTP/1.1 with `content-length` (uvicorn does), not a
general client: no chunked bodies, no TLS, no redirects.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

_HEAD_END = b"\r\n\r\n"
_LENGTH = b"\r\ncontent-length:"
_CLOSE = b"\r\nconnection: close"
_OK_MARK = b'"results"'


def encode_request(method: str, path: str, body: bytes | None, host: str) -> bytes:
    """One complete HTTP/1.1 request as bytes (keep-alive is HTTP/1.1's default)."""
    head = f"{method} {path} HTTP/1.1\r\nhost: {host}\r\n"
    if body is not None:
        head += f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
    return (head + "\r\n").encode("latin-1") + (body or b"")


@dataclass
class _Phase:
    """One run over all connections: hand out requests until `budget` are sent or `deadline` passes."""

    requests: list[bytes]
    budget: int
    deadline: float
    record: bool
    sent: int = 0
    samples_ns: list[int] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    running: int = 0
    done: asyncio.Future[None] | None = None

    def next_request(self) -> bytes | None:
        if self.sent >= self.budget or time.perf_counter() >= self.deadline:
            return None
        request = self.requests[self.sent % len(self.requests)]
        self.sent += 1
        return request

    def finished_one(self) -> None:
        self.running -= 1
        if self.running == 0 and self.done is not None and not self.done.done():
            self.done.set_result(None)


class _Connection(asyncio.Protocol):
    """One keep-alive connection running a closed loop of requests (see the module docstring)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.phase: _Phase | None = None
        self.buffer = bytearray()
        self.started_ns = 0
        self.in_flight = False
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not subclasses

    def start(self, phase: _Phase) -> None:
        self.phase = phase
        phase.running += 1
        self._send()

    def _send(self) -> None:
        phase = self.phase
        assert phase is not None and self.transport is not None
        request = phase.next_request()
        if request is None:
            self.phase = None
            phase.finished_one()
            return
        self.in_flight = True
        self.started_ns = time.perf_counter_ns()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while True:  # a response can arrive in pieces; pipelining is not used, so at most one is complete
            end = buffer.find(_HEAD_END)
            if end < 0:
                return
            head = bytes(buffer[:end]).lower()
            at = head.find(_LENGTH)
            if at < 0:
                self._fail("no_content_length")
                return
            stop = head.find(b"\r\n", at + 2)
            try:
                length = int(head[at + len(_LENGTH):stop if stop > 0 else len(head)])
                status = int(head[9:12])
            except ValueError:
                self._fail("bad_response")
                return
            total = end + 4 + length
            if len(buffer) < total:
                return
            elapsed = time.perf_counter_ns() - self.started_ns
            ok = status == 200 and buffer.find(_OK_MARK, end + 4, total) >= 0
            del buffer[:total]
            self.in_flight = False
            phase = self.phase
            if phase is not None and phase.record:
                if ok:
                    phase.samples_ns.append(elapsed)
                else:
                    phase.errors[f"http_{status}"] += 1
            if head.find(_CLOSE) >= 0:  # the server is closing this connection: stop using it
                self._fail("server_closed")
                return
            if phase is not None:
                self._send()
            if not buffer:
                return

    def _fail(self, kind: str) -> None:
        phase, self.phase = self.phase, None
        if phase is not None:
            if phase.record:
                phase.errors[kind] += 1
            phase.finished_one()
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.phase is not None:
            self._fail("connection_lost" if self.in_flight else "connection_closed")
        if not self.closed.done():
            self.closed.set_result(None)


@dataclass(frozen=True)
class LoadResult:
    """What one closed-loop measurement produced."""

    samples_ms: list[float]
    errors: Counter[str]
    wall_s: float
    client_cpu_s: float
    sent: int


async def _open(host: str, port: int, n: int) -> list[_Connection]:
    loop = asyncio.get_running_loop()
    conns = []
    for _ in range(n):
        _, proto = await loop.create_connection(_Connection, host, port)
        conns.append(proto)
    return conns


async def _run_phase(conns: list[_Connection], phase: _Phase, timeout: float) -> None:
    phase.done = asyncio.get_running_loop().create_future()
    for conn in conns:
        if conn.transport is not None and not conn.transport.is_closing():
            conn.start(phase)
    if phase.running:
        await asyncio.wait_for(phase.done, timeout)


async def drive(url: str, requests: list[tuple[str, str, bytes | None]], concurrency: int, duration_s: float,
                max_requests: int, warmup_per_connection: int, timeout_s: float = 120.0) -> LoadResult:
    """`concurrency` keep-alive connections to `url`, each in a closed loop, for `duration_s` or
    `max_requests` (whichever ends first) after `warmup_per_connection` untimed requests on each.

    requests: (method, path with query, JSON body or None), sent in rotation. A connection the server
    closes is not reopened (its loss is counted as an error): the server under test must keep them."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    encoded = [encode_request(m, p, b, f"{host}:{port}") for m, p, b in requests]
    conns = await _open(host, port, concurrency)
    try:
        if warmup_per_connection:
            await _run_phase(conns, _Phase(encoded, warmup_per_connection * concurrency,
                                           time.perf_counter() + timeout_s, record=False), timeout_s)
        phase = _Phase(encoded, max_requests, 0.0, record=True)
        cpu0 = time.process_time()
        start = time.perf_counter()
        phase.deadline = start + duration_s
        await _run_phase(conns, phase, duration_s + timeout_s)
        wall = time.perf_counter() - start
        cpu = time.process_time() - cpu0
    finally:
        for conn in conns:
            if conn.transport is not None:
                conn.transport.close()
        await asyncio.gather(*(c.closed for c in conns), return_exceptions=True)
    return LoadResult([s / 1e6 for s in phase.samples_ns], phase.errors, wall, cpu, phase.sent)


def new_event_loop() -> Any:
    """uvloop's loop when installed (the cheaper one), else asyncio's."""
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


def run(coro: Any) -> Any:
    """Run `coro` on a fresh loop from `new_event_loop()`."""
    loop = new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


__all__ = ["LoadResult", "drive", "encode_request", "new_event_loop", "run"]
