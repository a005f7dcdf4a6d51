"""Prometheus text exposition (format 0.0.4) for the server, written by hand.

Why not prometheus_client: the server needs three families (a counter, a histogram and some gauges),
and prometheus_client's multiprocess mode (for `--workers N`) wants a shared directory and env setup.
Each worker here exposes its own numbers (scraped per worker, or summed by the scraper), which is what
a per-process engine needs anyway: the catalogue of one worker can differ from another's after writes.
One lock guards the counts; an observation is a few dict operations.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

# Latency buckets (seconds): dense below 10 ms, where the engine answers.
BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                              1.0, 2.5, 5.0, 10.0)


@dataclass
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0
    n: int = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds
        self.n += 1


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
    return "{" + inner + "}" if inner else ""


def _num(x: float) -> str:
    return repr(float(x)) if not float(x).is_integer() else str(int(x))


class Metrics:
    """Request counts by endpoint and status code, errors by kind, latency histograms per endpoint."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = {}
        self._errors: dict[tuple[str, str], int] = {}
        self._latency: dict[str, _Histogram] = {}
        self._in_flight = 0
        self._coalesced_calls = 0
        self._coalesced_requests = 0

    def coalesced(self, n: int) -> None:
        """Record one engine call that answered `n` >= 2 concurrent requests together (`app._run_together`)."""
        with self._lock:
            self._coalesced_calls += 1
            self._coalesced_requests += n

    def started(self) -> None:
        with self._lock:
            self._in_flight += 1

    def finished(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        """Record one finished request (any status); 4xx count as client errors, 5xx as server errors."""
        with self._lock:
            self._in_flight -= 1
            key = (endpoint, method, status)
            self._requests[key] = self._requests.get(key, 0) + 1
            if status >= 400:
                kind = (endpoint, "server" if status >= 500 else "client")
                self._errors[kind] = self._errors.get(kind, 0) + 1
            hist = self._latency.get(endpoint)
            if hist is None:
                hist = self._latency[endpoint] = _Histogram()
            hist.observe(seconds)

    def render(self, gauges: Callable[[], list[tuple[str, str, dict[str, str], float]]]) -> str:
        """The exposition text; `gauges()` returns (name, help, labels, value) read at scrape time."""
        with self._lock:
            requests = dict(self._requests)
            errors = dict(self._errors)
            latency = {k: (list(h.counts), h.total, h.n) for k, h in self._latency.items()}
            in_flight = self._in_flight
            coalesced = (self._coalesced_calls, self._coalesced_requests)
        out: list[str] = [
            "# HELP recengine_http_requests_total HTTP requests served, by endpoint, method and status code.",
            "# TYPE recengine_http_requests_total counter",
        ]
        for (endpoint, method, status), n in sorted(requests.items()):
            out.append(f"recengine_http_requests_total"
                       f"{_labels((('endpoint', endpoint), ('method', method), ('code', str(status))))} {n}")
        out += ["# HELP recengine_http_errors_total HTTP error responses, by endpoint and kind (client = 4xx, "
                "server = 5xx).", "# TYPE recengine_http_errors_total counter"]
        for (endpoint, kind), n in sorted(errors.items()):
            out.append(f"recengine_http_errors_total{_labels((('endpoint', endpoint), ('kind', kind)))} {n}")
        out += ["# HELP recengine_http_request_duration_seconds Time from the request's arrival at the app to "
                "its response, by endpoint.", "# TYPE recengine_http_request_duration_seconds histogram"]
        for endpoint, (counts, total, n) in sorted(latency.items()):
            cumulative = 0
            for bound, c in zip((*BUCKETS, float("inf")), counts):
                cumulative += c
                le = "+Inf" if bound == float("inf") else _num(bound)
                out.append(f"recengine_http_request_duration_seconds_bucket"
                           f"{_labels((('endpoint', endpoint), ('le', le)))} {cumulative}")
            out.append(f"recengine_http_request_duration_seconds_sum{_labels((('endpoint', endpoint),))} {total!r}")
            out.append(f"recengine_http_request_duration_seconds_count{_labels((('endpoint', endpoint),))} {n}")
        out += ["# HELP recengine_http_requests_in_flight Requests being served now.",
                "# TYPE recengine_http_requests_in_flight gauge", f"recengine_http_requests_in_flight {in_flight}"]
        out += ["# HELP recengine_coalesced_calls_total Engine calls that answered several concurrent requests "
                "together (serve --coalesce).", "# TYPE recengine_coalesced_calls_total counter",
                f"recengine_coalesced_calls_total {coalesced[0]}",
                "# HELP recengine_coalesced_requests_total Requests answered by those calls.",
                "# TYPE recengine_coalesced_requests_total counter",
                f"recengine_coalesced_requests_total {coalesced[1]}"]
        for name, help_text, labels, value in gauges():
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge",
                    f"{name}{_labels(sorted(labels.items()))} {_num(value)}"]
        return "\n".join(out) + "\n"
