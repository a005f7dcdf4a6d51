"""`GET /metrics` is valid Prometheus text: counters per endpoint and code, cumulative histograms whose
+Inf bucket equals the count, the catalogue gauge following live writes."""

from __future__ import annotations

import re
from typing import Any

import pytest

pytest.importorskip("starlette")

from recengine.server.metrics import BUCKETS, Metrics  # noqa: E402

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.e+-]+|\+Inf|NaN)$')


def _samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a valid sample line: {line!r}"
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def test_counts_histograms_and_gauges(client: Any, engine: Any) -> None:
    for _ in range(3):
        assert client.post("/recommend", json={"k": 2}).status_code == 200
    assert client.post("/recommend", json={"k": 0}).status_code == 422
    assert client.get("/items/ghost/similar").status_code == 404
    client.post("/items", json={"items": [{"item_id": "m-1", "title": "Metric Film"}]})
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    s = _samples(r.text)
    assert s['recengine_http_requests_total{endpoint="recommend",method="POST",code="200"}'] == 3
    assert s['recengine_http_requests_total{endpoint="recommend",method="POST",code="422"}'] == 1
    assert s['recengine_http_errors_total{endpoint="recommend",kind="client"}'] == 1
    assert s['recengine_http_errors_total{endpoint="similar",kind="client"}'] == 1
    buckets = [s[f'recengine_http_request_duration_seconds_bucket{{endpoint="recommend",le="{le}"}}']
               for le in [*(repr(b) if not float(b).is_integer() else str(int(b)) for b in BUCKETS), "+Inf"]]
    assert buckets == sorted(buckets)
    assert buckets[-1] == s['recengine_http_request_duration_seconds_count{endpoint="recommend"}'] == 4
    assert s['recengine_http_request_duration_seconds_sum{endpoint="recommend"}'] > 0
    assert s["recengine_catalogue_items"] == engine.n_items
    assert s["recengine_users"] == engine.n_users
    assert s["recengine_up"] == 1
    assert s["recengine_http_requests_in_flight"] == 0


def test_label_values_are_escaped() -> None:
    m = Metrics()
    m.started()
    m.finished('we"ird\\name\n', "GET", 500, 0.002)
    text = m.render(lambda: [("g", "help", {"bundle": 'a"b'}, 1.0)])
    assert 'endpoint="we\\"ird\\\\name\\n"' in text
    assert 'g{bundle="a\\"b"} 1' in text
    assert 'recengine_http_errors_total{endpoint="we\\"ird\\\\name\\n",kind="server"} 1' in text
