"""The JSON API and the start-up contract of `python -m dashboard`, over HTTP to the real process.

They live beside the browser tests because they share its rig (Redis + dashboard subprocess).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest
from dashboard_rig import (
    APP,
    FRAUDULENT,
    LATEST,
    MINUTE,
    Dashboard,
    LayoutWriter,
    project_fraud,
    scored_outcome,
    seed_fraud,
    seed_shop,
)

from clickstream.local.process import free_port
from clickstream.local.redis import LocalRedis
from serving import keys

pytestmark = pytest.mark.browser


def test_page_views_api_sums_partitions_for_the_newest_windows(
    layout: LayoutWriter, dashboard: Dashboard
) -> None:
    seed_shop(layout)

    code, headers, body = dashboard.get("/api/v1/page-views?windows=1")

    assert code == 200
    assert headers["Content-Type"] == "application/json"
    assert body == {
        "windows": 1,
        "rows": [
            {"window_start_ms": LATEST, "url": "/cart", "views": 15},
            {"window_start_ms": LATEST, "url": "/checkout", "views": 6},
            {"window_start_ms": LATEST, "url": "/home", "views": 212},
            {"window_start_ms": LATEST, "url": "/products/42", "views": 40},
        ],
    }


def test_page_views_api_defaults_to_ten_windows(layout: LayoutWriter, dashboard: Dashboard) -> None:
    seed_shop(layout)

    _, _, body = dashboard.get("/api/v1/page-views")

    assert isinstance(body, dict)
    starts = sorted({row["window_start_ms"] for row in body["rows"]})
    assert (body["windows"], starts) == (10, [LATEST - i * MINUTE for i in range(9, -1, -1)])


def test_orders_api_gives_counts_and_cents_per_currency(
    layout: LayoutWriter, dashboard: Dashboard
) -> None:
    seed_shop(layout)

    _, _, body = dashboard.get("/api/v1/orders?windows=1")

    assert body == {
        "windows": 1,
        "rows": [
            {"window_start_ms": LATEST, "currency": "EUR", "orders": 1, "revenue_cents": 4550},
            {"window_start_ms": LATEST, "currency": "USD", "orders": 5, "revenue_cents": 18_000},
        ],
    }


def test_pipeline_api_gives_stream_totals_and_partition_watermarks(
    layout: LayoutWriter, dashboard: Dashboard
) -> None:
    seed_shop(layout)

    _, _, body = dashboard.get("/api/v1/pipeline")

    assert isinstance(body, dict)
    clicks, orders = body["streams"]
    assert {k: v for k, v in clicks.items() if k != "partitions"} == {
        "stream": "clicks",
        "accepted": 24_600,
        "duplicates": 5,
        "late": 2,
        "dead_letters": 1,
        "low_watermark_ms": LATEST + 40_000,
        "open_sessions": 0,
        "dead_letter_reasons": {"malformed_json": 1},
    }
    assert orders["dead_letter_reasons"] == {"bad_value": 1, "unknown_schema_version": 2}
    assert clicks["partitions"][1] == {
        "partition": 1,
        "watermark_ms": LATEST + 40_000,
        "accepted": 8_500,
        "duplicates": 0,
        "late": 0,
        "dead_letters": 1,
        "open_sessions": 0,
    }
    assert (orders["stream"], orders["dead_letters"], len(orders["partitions"])) == ("orders", 3, 2)


def test_sessions_api_gives_sessions_bounce_rate_and_mean_duration(
    layout: LayoutWriter, dashboard: Dashboard
) -> None:
    layout.sessions(LATEST, 0, sessions=3, bounces=1, ms=300_000)
    layout.sessions(LATEST, 1, sessions=1, bounces=1, ms=0)

    _, _, body = dashboard.get("/api/v1/sessions?windows=1")

    assert body == {
        "windows": 1,
        "rows": [
            {
                "window_start_ms": LATEST,
                "sessions": 4,
                "bounces": 2,
                "duration_ms": 300_000,
                "bounce_rate": 0.5,
                "mean_duration_ms": 75_000.0,
            }
        ],
    }


def test_attribution_api_gives_orders_per_session_referrer_and_currency(
    layout: LayoutWriter, dashboard: Dashboard
) -> None:
    layout.attributed(LATEST, 0, "www.google.com", "USD", orders=2, cents=4_000)
    layout.attributed(LATEST, 1, "www.google.com", "USD", orders=1, cents=1_000)

    _, _, body = dashboard.get("/api/v1/attribution?windows=1")

    assert body == {
        "windows": 1,
        "rows": [
            {
                "window_start_ms": LATEST,
                "referrer": "www.google.com",
                "currency": "USD",
                "orders": 3,
                "revenue_cents": 5_000,
            }
        ],
    }


def test_meta_api_gives_window_and_grace(layout: LayoutWriter, dashboard: Dashboard) -> None:
    seed_shop(layout)

    assert dashboard.get("/api/v1/meta")[2] == {
        "version": APP,
        "window_ms": MINUTE,
        "grace_ms": 30_000,
        "session_gap_ms": None,
    }


def send(dashboard: Dashboard, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, raw body) of any method, errors included."""
    request = urllib.request.Request(dashboard.url + path, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


ABSURD_WINDOWS = {
    "zero": "0",
    "too-many": "1441",
    "negative": "-1",
    "word": "abc",
    "empty": "",
    "float": "2.5",
    "exponent": "1e3",
    "plus-sign": "%2B5",
    "spaces": "%205",
    "superscript-two": "%C2%B2",  # "²".isdigit() but int("²") raises
    "ten-digits": "1" * 10,
    "8000-digits": "9" * 8000,  # past int()'s 4300-digit limit
}


@pytest.mark.parametrize("windows", ABSURD_WINDOWS.values(), ids=ABSURD_WINDOWS.keys())
def test_a_bad_windows_parameter_is_a_json_400_naming_it(
    dashboard: Dashboard, windows: str
) -> None:
    for path in ("/api/v1/page-views", "/api/v1/orders"):
        code, headers, raw = send(dashboard, "GET", f"{path}?windows={windows}")

        assert (code, headers["Content-Type"]) == (400, "application/json")
        error = orjson.loads(raw)["error"]
        assert error.startswith("windows must be a whole number from 1 to 1440, got ")
        assert len(error) < 200


def seed_fraud_rewritten(layout: LayoutWriter, redis_url: str) -> None:
    """seed_fraud, then partition 1 again, newer: its counts are absolute values, they
    replace its first ones (the latest window: 3 orders, 2 alerts, then 2 and 2)."""
    seed_fraud(redis_url)
    project_fraud(redis_url, [scored_outcome(1, [(3, LATEST + 9_000, FRAUDULENT)])])
    layout.meta(window_ms=MINUTE, grace_ms=30_000)


def test_fraud_summary_api_gives_the_alert_rate_and_scores_per_window(
    layout: LayoutWriter, dashboard: Dashboard, redis_server: LocalRedis
) -> None:
    seed_fraud_rewritten(layout, redis_server.url)

    code, _, body = dashboard.get("/api/v1/fraud/summary?windows=1")

    assert code == 200 and isinstance(body, dict)
    summary = body["summary"]
    # the latest window: partition 0's (1 order, 1 alert) + partition 1's newest (1, 1)
    (row,) = summary["windows"]
    assert (row["window_start_ms"], row["orders"], row["alerts"]) == (LATEST, 2, 2)
    assert (summary["orders"], summary["alerts"], summary["alert_rate"]) == (2, 2, 1.0)
    assert sum(summary["scores"]) == 2 and summary["scores"][-1] == 2
    assert body["score_buckets"][0] == [0.0, 0.1] and len(body["score_buckets"]) == 10
    _, _, both = dashboard.get("/api/v1/fraud/summary?windows=2")
    assert isinstance(both, dict) and both["summary"]["orders"] == 3


def test_fraud_alerts_api_gives_the_newest_alerts_first_with_their_reasons(
    layout: LayoutWriter, dashboard: Dashboard, redis_server: LocalRedis
) -> None:
    seed_fraud_rewritten(layout, redis_server.url)

    code, _, body = dashboard.get("/api/v1/fraud/alerts")

    assert code == 200 and isinstance(body, dict)
    assert [a["order_id"] for a in body["alerts"]] == [3, 2] and body["limit"] == 50
    assert all(a["id"] == f"alert/e{a['order_id']}" and a["reasons"] for a in body["alerts"])
    _, _, one = dashboard.get("/api/v1/fraud/alerts?limit=1")
    assert isinstance(one, dict) and [a["order_id"] for a in one["alerts"]] == [3]
    code, _, bad = dashboard.get("/api/v1/fraud/alerts?limit=0")
    assert code == 400 and bad == {"error": "limit must be a whole number from 1 to 1000, got '0'"}


def test_fraud_order_api_explains_one_order_and_404s_an_unknown_one(
    layout: LayoutWriter, dashboard: Dashboard, redis_server: LocalRedis
) -> None:
    seed_fraud_rewritten(layout, redis_server.url)

    code, _, body = dashboard.get("/api/v1/fraud/orders/2")

    assert code == 200 and isinstance(body, dict)
    assert (body["id"], body["alert"], body["policy_version"]) == ("score/e2", True, 1)
    fired = {c["feature"] for c in body["contributions"] if c["reason"]}
    assert fired >= {"user_cards_10m", "small_order"} and body["features"] == FRAUDULENT
    code, _, missing = dashboard.get("/api/v1/fraud/orders/99")
    assert code == 404 and isinstance(missing, dict)
    assert missing["error"].startswith("no scored order '99': not scored yet, or older than")


def test_an_unknown_api_path_is_a_json_404(dashboard: Dashboard) -> None:
    code, _, body = dashboard.get("/api/v1/nope")

    assert (code, body) == (404, {"error": "no such endpoint: /api/v1/nope"})


@pytest.mark.parametrize("method", ["POST", "DELETE", "PUT", "PATCH"])
def test_an_unknown_api_path_is_a_json_404_for_any_method(
    dashboard: Dashboard, method: str
) -> None:
    for path in ("/api/v1/nope", "/api", "/api/"):
        code, headers, raw = send(dashboard, method, path)

        assert (code, headers["Content-Type"]) == (404, "application/json"), path
        assert orjson.loads(raw) == {"error": f"no such endpoint: {path}"}


@pytest.mark.parametrize("method", ["POST", "DELETE", "PUT", "PATCH"])
def test_another_method_on_an_api_route_is_a_json_405_with_allow(
    dashboard: Dashboard, method: str
) -> None:
    for path in ("/api/v1/page-views", "/api/v1/meta", "/healthz"):
        code, headers, raw = send(dashboard, method, path)

        assert (code, headers["Content-Type"]) == (405, "application/json"), path
        assert headers["Allow"] == "GET, HEAD, OPTIONS"
        assert orjson.loads(raw) == {
            "error": f"{method} is not allowed on {path} (allowed: GET, HEAD, OPTIONS)"
        }


def test_an_unexpected_error_in_an_api_route_is_a_json_500(
    layout: LayoutWriter, dashboard: Dashboard
) -> None:
    layout.client.hset(keys.meta(layout.app), "window_ms", "not a number")  # int() raises

    code, headers, raw = send(dashboard, "GET", "/api/v1/meta")

    assert (code, headers["Content-Type"]) == (500, "application/json")
    assert orjson.loads(raw) == {"error": "internal error, logged by the dashboard"}


def test_the_page_keeps_its_own_answers_outside_the_api(dashboard: Dashboard) -> None:
    code, headers, _ = send(dashboard, "POST", "/some/page")

    assert (code, headers["Content-Type"]) == (405, "text/html; charset=utf-8")


def test_healthz_is_ok_while_every_check_passes(layout: LayoutWriter, dashboard: Dashboard) -> None:
    layout.worker_report()

    assert dashboard.get("/healthz")[::2] == (
        200,
        {
            "status": "ok",
            "redis": "ok",
            "checks": {
                "workers": "1 reporting",
                "broker": "reachable",
                "projection": "current",
                "event time": "advancing",
            },
        },
    )
    assert dashboard.get("/livez")[::2] == (200, {"status": "ok"})


def test_healthz_names_what_is_down(layout: LayoutWriter, dashboard: Dashboard) -> None:
    def checks() -> dict[str, str]:
        code, _, body = dashboard.get("/healthz")
        assert code == 503 and isinstance(body, dict) and body["status"] == "down"
        return body["checks"]

    assert checks()["workers"] == f"no worker of {APP} has ever reported"
    now = int(time.time() * 1000)
    layout.worker_report(at_ms=now - 60_000)
    assert checks()["workers"].startswith(f"no worker of {APP} has reported for 6")

    layout.worker_report(
        "host:2",
        at_ms=now,
        broker={"reachable": False, "since_ms": now - 40_000},
        streams={"clicks": {"partitions": [0], "lag": 12, "applied_ms": now - 45_000}},
        sinks={"clicks": {"pending": 30, "failing": 4, "landed_ms": now - 20_000}},
    )
    found = checks()
    assert found["workers"] == "1 reporting"
    assert found["broker"] == "Kafka unreachable from 1 of 1 workers, for 40 s"
    assert found["projection"] == (
        "Redis writes failing: clicks: 30 fields waiting, last write 20 s ago"
    )
    assert found["event time"] == "stalled: clicks: 12 records waiting, none applied"
    _, _, detail = dashboard.get("/api/v1/health")
    assert isinstance(detail, dict)
    assert detail["workers"] == [
        {"worker": "host:2", "seen_s": detail["workers"][0]["seen_s"],
         "partitions": {"clicks": [0]}, "lag": {"clicks": 12}}
    ]  # fmt: skip


# --- start-up failures: one line on stderr, exit 2 ----------------------------------------------


@pytest.fixture
def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("CLICKSTREAM_", "DASH_"))}


def run_dashboard(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dashboard"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_unreachable_redis_stops_start_up_with_one_line_and_exit_2(
    clean_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    env = clean_env | {"CLICKSTREAM_REDIS_URL": f"redis://127.0.0.1:{port}/0"}

    result = run_dashboard(env, tmp_path)

    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert f"127.0.0.1:{port} is unreachable" in result.stderr
    assert "CLICKSTREAM_REDIS_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_setting_stops_start_up_with_one_line_and_exit_2(
    clean_env: dict[str, str], tmp_path: Path
) -> None:
    result = run_dashboard(clean_env | {"CLICKSTREAM_DASHBOARD_PORT": "eighty"}, tmp_path)

    assert result.returncode == 2
    assert result.stderr.startswith("dashboard: CLICKSTREAM_DASHBOARD_PORT='eighty'")
    assert result.stderr.count("\n") == 1


def test_a_taken_port_stops_start_up_with_one_line_and_exit_2(
    clean_env: dict[str, str], redis_server: LocalRedis, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = clean_env | {
            "CLICKSTREAM_REDIS_URL": redis_server.url,
            "CLICKSTREAM_DASHBOARD_PORT": str(port),
        }

        result = run_dashboard(env, tmp_path)

    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "CLICKSTREAM_DASHBOARD_PORT" in result.stderr
    assert result.stderr.count("\n") == 1
