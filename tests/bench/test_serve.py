"""`recengine bench serve` on the tiny bundle: a real server process, a real HTTP client, every field of
the report filled, zero errors, the Markdown rendered. Small budgets: this checks the bench, not speed."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("starlette")

from recengine.bench.serve import ENDPOINTS, ServeBenchConfig, run_serve_bench, write_serve_report  # noqa: E402
from recengine.errors import RequestError  # noqa: E402


@pytest.mark.timeout(300)
def test_bench_serve_report(tiny_bundle: Path, tmp_path: Path) -> None:
    cfg = ServeBenchConfig(bundle=tiny_bundle, concurrency=(1, 4), duration=0.5, requests=40, warmup=4,
                           in_process_requests=20, command="test", quiet=True)
    report = run_serve_bench(cfg)
    assert report["schema"] == "recengine-bench-serve/1"
    assert [(r["endpoint"], r["concurrency"]) for r in report["results"]] == [(e, c) for e in ENDPOINTS
                                                                               for c in (1, 4)]
    for r in report["results"]:
        assert r["errors"] == 0, r
        assert 0 < r["n_requests"] <= 40 and r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
        assert r["requests_per_s"] > 0
        # /proc counts CPU in 10 ms ticks: a 40-request measurement may round the server's share to 0
        assert r["server_cpu_us_per_request"] >= 0 and r["client_cpu_us_per_request"] > 0
        assert r["server_user_us_per_request"] + r["server_system_us_per_request"] == pytest.approx(
            r["server_cpu_us_per_request"], abs=0.2)
        assert r["requests_per_worker"] is None  # one worker: no split to report
        # one worker: the coalescing counters are read; only /recommend calls are ever answered together
        assert r["coalesced_share"] is not None and 0.0 <= r["coalesced_share"] <= 1.0
        if r["endpoint"] not in ("recommend_user", "recommend_history") or r["concurrency"] == 1:
            assert r["coalesced_share"] == 0.0 and r["mean_coalesced"] is None
        elif r["mean_coalesced"] is not None:
            assert 2 <= r["mean_coalesced"] <= 16
    assert {r["endpoint"] for r in report["in_process"]} == set(ENDPOINTS)
    assert {o["endpoint"] for o in report["overhead"]} == set(ENDPOINTS)
    assert "recommend_user_p99_ms_c8" not in report["targets"]  # no concurrency 8 measured: no verdict
    assert "recommend_user_overhead_p50_ms" in report["targets"]
    assert report["server"]["rss_mib_start"] > 0 and "Server exit code after SIGTERM: 0." in report["notes"]
    assert report["machine"]["load_average_at_end"] is not None
    files = write_serve_report(report, tmp_path / "out")
    md = files["markdown"].read_text()
    assert "| recommend_user | 4 |" in md and "In-process" in md


def test_bench_serve_config_is_checked(tiny_bundle: Path) -> None:
    with pytest.raises(RequestError, match="unknown endpoints"):
        ServeBenchConfig(bundle=tiny_bundle, endpoints=("recommend_user", "nope"))
    with pytest.raises(RequestError, match="concurrency"):
        ServeBenchConfig(bundle=tiny_bundle, concurrency=(0,))


def test_coalesced_counts_are_none_without_a_server() -> None:
    from recengine.bench.serve import coalesced_counts

    assert coalesced_counts("http://127.0.0.1:9") is None  # nothing listens on the discard port


def test_which_worker_answered_and_its_count() -> None:
    from recengine.bench.serve import worker_requests

    text = "\n".join([
        '# HELP recengine_http_requests_total x',
        'recengine_http_requests_total{endpoint="recommend",method="POST",code="200"} 120',
        'recengine_http_requests_total{endpoint="recommend",method="POST",code="422"} 3',
        'recengine_http_requests_total{endpoint="unmatched",method="GET",code="404"} 7',
        'recengine_http_requests_total{endpoint="search",method="POST",code="200"} 5',
        "recengine_process_start_time_seconds 1764550000.25",
    ])
    assert worker_requests(text) == (1764550000.25, 128)
    assert worker_requests("recengine_up 1") is None
