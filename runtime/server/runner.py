"""Run the app under uvicorn: one process, or `--workers N` processes sharing one listening socket.

With one worker the engine is loaded first, then the socket is bound, so the real port is known even for
`--port 0` (tests and the bench use an ephemeral port): the line `recengine serve: listening on
http://HOST:PORT` goes to stderr once the engine is loaded. With N workers the line comes before the
workers load their engines; `/readyz` answers once a worker is ready (uvicorn accepts connections only
after the app's startup finished).

Shutdown (SIGTERM or Ctrl+C): uvicorn stops accepting, lets requests already received finish (up to
`graceful_timeout_s`), then the app's lifespan stops the engine pool; the process then exits 0.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from types import FrameType

from .config import ENV_CONFIG, ServerConfig

log = logging.getLogger("recengine.server")


def _exit_cleanly(sig: int, frame: FrameType | None) -> None:
    """Uvicorn re-raises the signal that stopped it once it has shut down gracefully; by then the work
    is done, so the process exits 0 instead of dying by the signal."""
    raise SystemExit(0)


def _uvicorn_config(config: ServerConfig, app: object, factory: bool = False) -> uvicorn.Config:  # noqa: F821
    import uvicorn

    return uvicorn.Config(
        app, host=config.host, port=config.port, workers=config.workers, factory=factory,
        log_level=config.log_level, access_log=config.access_log, lifespan="on",
        timeout_graceful_shutdown=int(max(1, round(config.graceful_timeout_s))),
        # the default 5 s keep-alive drops idle pooled connections of hosts that call in bursts
        timeout_keep_alive=30, server_header=False,
    )


def serve(config: ServerConfig) -> None:
    """Serve until stopped by a signal (blocking)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    logging.basicConfig(level=getattr(logging, config.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)
    if config.switch_interval_s is not None:
        sys.setswitchinterval(config.switch_interval_s)  # inherited by spawned workers via app_from_env
    if config.workers == 1:
        from .app import create_app, load_engine

        # loaded before binding: a bad bundle is one RecengineError line (exit 2), not a startup traceback
        ucfg = _uvicorn_config(config, create_app(config, engine=load_engine(config)))
    else:
        from ..bundle import open_bundle

        open_bundle(config.bundle, verify=True)  # fail here, once, rather than in every worker
        # each worker imports the factory by name, reads the config from the environment, loads its engine
        os.environ[ENV_CONFIG] = config.to_json()
        ucfg = _uvicorn_config(config, "recengine.server.app:app_from_env", factory=True)
    sock = ucfg.bind_socket()
    host, port = sock.getsockname()[:2]
    print(f"recengine serve: listening on http://{host}:{port} (workers {config.workers}, bundle {config.bundle})",
          file=sys.stderr, flush=True)
    if config.workers == 1:
        uvicorn.Server(ucfg).run(sockets=[sock])
    else:
        Multiprocess(ucfg, sockets=[sock]).run()
