"""What the HTTP stack itself costs per request: uvicorn variants serving a trivial ASGI app (this folder's
stack.json).

    python stack_variants.py OUT.json [--duration 4] [--rounds 2]

Each variant runs as its own process (`python stack_variants.py --serve ...`) and is driven by
`recengine.bench.serve_client` at concurrency 8 with `POST /recommend`-sized requests; the app answers a fixed
result list at once ("trivial"), or after a hop to `recengine.server.pool.EnginePool` and back ("hop").
Reported: server CPU per request (/proc, user + system), client CPU per request, requests/s, p50/p99.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import subprocess
import sys
import time
from typing import Any

BODY = b'{"source":"stored","skipped":[],"results":[{"item_id":"1","score":0.5}]}'
VARIANTS = {
    "httptools + uvloop, trivial app": ["trivial", "httptools", "uvloop"],
    "httptools + uvloop, hop to EnginePool": ["hop", "httptools", "uvloop"],
    "h11 + uvloop, trivial app": ["trivial", "h11", "uvloop"],
    "httptools + asyncio loop, trivial app": ["trivial", "httptools", "asyncio"],
}


def serve(kind: str, http: str, loop: str) -> None:
    import uvicorn

    from recengine.server.pool import EnginePool

    sys.setswitchinterval(0.0005)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
    pools: list[EnginePool] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    pools.append(EnginePool(2))
                    await send({"type": "lifespan.startup.complete"})
                else:
                    pools[0].shutdown()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await receive()
        if kind == "hop":
            await pools[0].run(len, BODY)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": BODY})

    config = uvicorn.Config(app, host="127.0.0.1", port=0, http=http, loop=loop, log_level="warning",
                            access_log=False, lifespan="on", server_header=False)
    sock = config.bind_socket()
    print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", file=sys.stderr, flush=True)
    uvicorn.Server(config).run(sockets=[sock])


def measure(args: list[str], duration: float) -> dict[str, Any]:
    import numpy as np

    from recengine.bench.machine import load_average
    from recengine.bench.serve import cpu_times
    from recengine.bench.serve_client import drive, run

    proc = subprocess.Popen([sys.executable, __file__, "--serve", *args], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        url = None
        for line in proc.stderr:
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                url = m.group(1)
                break
        assert url is not None, "the variant did not start"
        port = int(url.rsplit(":", 1)[1])
        for _ in range(300):  # the socket is bound before uvicorn listens on it
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        requests = [("POST", "/recommend", b'{"user_id": "%d", "k": 10}' % i) for i in range(256)]
        run(drive(url, requests, 8, 1.0, 2000, 20))  # warm-up
        s0 = cpu_times([proc.pid])
        r = run(drive(url, requests, 8, duration, 10**6, 5))
        s1 = cpu_times([proc.pid])
        assert s0 is not None and s1 is not None
        a = np.asarray(r.samples_ms)
        return {"server_cpu_us_per_request": round((sum(s1) - sum(s0)) / r.sent * 1e6, 1),
                "client_cpu_us_per_request": round(r.client_cpu_s / r.sent * 1e6, 1),
                "requests_per_s": round(len(a) / r.wall_s, 1), "errors": sum(r.errors.values()),
                "p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3),
                "load_average": load_average()}
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(*sys.argv[2:5])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    rows = []
    for rnd in range(args.rounds):
        for name, variant in VARIANTS.items():
            row = {"round": rnd, "variant": name, **measure(variant, args.duration)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    from recengine.bench.machine import machine_info
    from recengine.bench.serve import cpu_flags

    machine = machine_info()
    machine["cpu_flags"] = cpu_flags()
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump({"command": " ".join(sys.argv), "concurrency": 8, "machine": machine, "rows": rows}, handle,
                  indent=1)


if __name__ == "__main__":
    main()
