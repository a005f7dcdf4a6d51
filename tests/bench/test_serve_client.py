"""The bench's load client against a scripted HTTP/1.1 server on 127.0.0.1: responses split across
packets are reassembled, only 200 + a result list counts as success, a closing server is an error, and
the budget in requests is respected. Every loop is bounded in count and time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from recengine.bench.serve_client import drive, encode_request, new_event_loop

OK = b'{"source":"stored","skipped":[],"results":[{"item_id":"1","score":0.5}]}'


def _response(status: int, body: bytes, extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % (status, len(body))
            + extra + b"\r\n" + body)


async def _serve(answer: Callable[[int], list[bytes] | None], run: Callable[[str], object]) -> object:
    """A server answering the n-th request with the given pieces (None: close the connection)."""
    count = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                count += 1
                pieces = answer(count)
                if pieces is None:
                    break
                for piece in pieces:
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        return await run(f"http://127.0.0.1:{port}")
    finally:
        server.close()


def _run(coro: object) -> object:
    loop = new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


REQUESTS = [("POST", "/recommend", b'{"user_id": "1"}'), ("GET", "/items/1/similar?k=3", None)]


def test_split_responses_are_reassembled_and_counted() -> None:
    whole = _response(200, OK)

    def answer(n: int) -> list[bytes]:
        return [whole[:7], whole[7:40], whole[40:]] if n % 2 else [whole]

    result = _run(_serve(answer, lambda url: drive(url, REQUESTS, 3, 10.0, 30, 2)))
    assert len(result.samples_ms) == 30 and not result.errors and result.sent == 30
    assert all(s > 0 for s in result.samples_ms) and result.client_cpu_s > 0


def test_errors_by_kind_and_a_closing_server() -> None:
    def answer(n: int) -> list[bytes] | None:
        if n == 5:
            return [_response(500, b'{"error":"internal_error"}')]
        if n == 8:
            return [_response(200, b'{"no":"list"}')]
        if n == 12:
            return None  # drop the connection with the request in flight
        return [_response(200, OK)]

    result = _run(_serve(answer, lambda url: drive(url, REQUESTS, 1, 10.0, 20, 0)))
    assert result.errors["http_500"] == 1 and result.errors["http_200"] == 1
    assert result.errors["connection_lost"] == 1
    assert len(result.samples_ms) == 12 - 3  # answers 1..11 minus the two bad ones; the loop stops at 12


def test_connection_close_header_stops_that_connection() -> None:
    result = _run(_serve(lambda n: [_response(200, OK, b"Connection: close\r\n")],
                         lambda url: drive(url, REQUESTS, 2, 10.0, 10, 0)))
    assert len(result.samples_ms) == 2 and result.errors["server_closed"] == 2


def test_encoded_requests() -> None:
    assert encode_request("GET", "/healthz", None, "h:1") == b"GET /healthz HTTP/1.1\r\nhost: h:1\r\n\r\n"
    raw = encode_request("POST", "/search", b'{"text":"x"}', "h:1")
    assert raw.endswith(b'content-length: 12\r\n\r\n{"text":"x"}') and b"content-type: application/json" in raw
