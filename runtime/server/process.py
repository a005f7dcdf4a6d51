"""Start `recengine serve` as a child process on an ephemeral loopback port, and stop it (tests, bench).

The child prints `recengine serve: listening on http://HOST:PORT` once its socket is bound; a reader
thread drains its stderr (so a chatty server can never block on a full pipe) and keeps the lines for
diagnostics. `stop()` sends SIGTERM (graceful shutdown) and kills only after the timeout.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from ..errors import RecengineError

_LISTENING = re.compile(r"recengine serve: listening on (http://\S+)")


class ServerProcess:
    """A `recengine serve BUNDLE --port 0 ...` child process (use as a context manager)."""

    def __init__(self, bundle: str | Path, args: Sequence[str] = (), env: dict[str, str] | None = None) -> None:
        self.command = [sys.executable, "-m", "recengine", "serve", str(bundle), "--host", "127.0.0.1",
                        "--port", "0", *args]
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.url: str | None = None
        self.lines: list[str] = []
        self._found = threading.Event()
        self._reader: threading.Thread | None = None

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            m = _LISTENING.search(line)
            if m and self.url is None:
                self.url = m.group(1)
                self._found.set()
        self._found.set()  # stderr closed: the process ended

    def start(self, timeout: float = 120.0) -> str:
        """Start the child and wait until `/readyz` says ready; returns the base URL."""
        self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, env=self.env)
        self._reader = threading.Thread(target=self._drain, name="serve-stderr", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        self._found.wait(timeout)
        if self.url is None:
            self.stop(5)
            raise RecengineError("server did not start: " + " | ".join(self.lines[-10:]))
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RecengineError("server exited while starting: " + " | ".join(self.lines[-10:]))
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=5) as r:
                    if json.loads(r.read()).get("ready"):
                        return self.url
            except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
                pass
            time.sleep(0.1)
        self.stop(5)
        raise RecengineError(f"server not ready after {timeout} s: " + " | ".join(self.lines[-10:]))

    @property
    def port(self) -> int:
        assert self.url is not None
        return int(self.url.rsplit(":", 1)[1])

    def terminate(self) -> None:
        """Send SIGTERM (start a graceful shutdown) without waiting."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait up to `timeout` s for the graceful exit, then SIGKILL; returns the exit code."""
        if self.proc is None:
            return 0
        self.terminate()
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        if self._reader is not None:
            self._reader.join(5)
        return code

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
