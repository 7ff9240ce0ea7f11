"""Helpers for the browser tests: seed Redis in the serving.keys layout, run `python -m dashboard`.

Imported by conftest.py and the tests (pytest puts this directory on sys.path).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis

from clickstream.local.process import free_port
from fraud.features import FEATURES, Order
from fraud.policy import DEFAULT_POLICY, load_policy, score_order
from serving import keys
from serving.fraud_projection import FraudProjection
from streams.fraud import (
    PANE_COUNTS,
    FraudOutcome,
    alert_value,
    score_bucket,
    scored_order_value,
)

APP = "shoptest"
MINUTE = 60_000
LATEST = 1_767_268_800_000 + 20 * MINUTE  # 2026-01-01 12:20 UTC
START_TIMEOUT = 30.0
POLICY = load_policy(DEFAULT_POLICY, FEATURES)


class LayoutWriter:
    """Writes numbers exactly as serving.keys lays them out: per-source-partition partials,
    absolute HSETs (a rewrite replaces a partition's value, never adds to it)."""

    def __init__(self, client: redis.Redis, app: str = APP) -> None:
        self.client = client
        self.app = app

    def worker_report(self, worker: str = "host:1", at_ms: int | None = None, **parts: Any) -> None:
        """A worker's health report (clickstream.health), healthy unless `parts` say otherwise;
        by default dated a day ahead, so that it stays fresh however long the test runs."""
        at = at_ms if at_ms is not None else round(time.time() * 1000) + 86_400_000
        body = {
            "at": at,
            "broker": {"reachable": True, "since_ms": at},
            "streams": {
                "clicks": {"partitions": [0, 1, 2], "lag": 0, "applied_ms": at},
                "orders": {"partitions": [0, 1, 2], "lag": 0, "applied_ms": at},
            },
            "sinks": {"clicks": {"pending": 0, "failing": 0, "landed_ms": at}},
            **parts,
        }
        self.client.zadd(keys.workers(self.app), {worker: at})
        self.client.hset(keys.worker_health(self.app), worker, orjson.dumps(body))

    def meta(self, window_ms: int, grace_ms: int) -> None:
        self.client.hset(
            keys.meta(self.app), mapping={"window_ms": window_ms, "grace_ms": grace_ms}
        )

    def page_views(self, start_ms: int, partition: int, views: dict[str, int]) -> None:
        fields = {keys.field(partition, url): n for url, n in views.items()}
        self.client.hset(keys.window(self.app, keys.PAGE_VIEWS, start_ms), mapping=fields)
        self.client.zadd(keys.windows(self.app, keys.PAGE_VIEWS), {str(start_ms): start_ms})

    def orders(self, start_ms: int, partition: int, currency: str, orders: int, cents: int) -> None:
        fields = {
            keys.field(partition, currency, "orders"): orders,
            keys.field(partition, currency, "cents"): cents,
        }
        self.client.hset(keys.window(self.app, keys.ORDERS, start_ms), mapping=fields)
        self.client.zadd(keys.windows(self.app, keys.ORDERS), {str(start_ms): start_ms})

    def sessions(self, start_ms: int, partition: int, sessions: int, bounces: int, ms: int) -> None:
        names = keys.COUNT_NAMES[keys.SESSIONS]
        fields = {
            keys.field(partition, "ended", name): value
            for name, value in zip(names, (sessions, bounces, ms), strict=True)
        }
        self.client.hset(keys.window(self.app, keys.SESSIONS, start_ms), mapping=fields)
        self.client.zadd(keys.windows(self.app, keys.SESSIONS), {str(start_ms): start_ms})

    def attributed(
        self, start_ms: int, partition: int, referrer: str, currency: str, orders: int, cents: int
    ) -> None:
        fields = {
            keys.field(partition, referrer, currency, "orders"): orders,
            keys.field(partition, referrer, currency, "cents"): cents,
        }
        self.client.hset(keys.window(self.app, keys.ATTRIBUTED, start_ms), mapping=fields)
        self.client.zadd(keys.windows(self.app, keys.ATTRIBUTED), {str(start_ms): start_ms})

    def pipeline(self, stream: str, partition: int, **counters: int) -> None:
        fields = {keys.field(partition, name): value for name, value in counters.items()}
        self.client.hset(keys.pipeline(self.app, stream), mapping=fields)

    def dead_letter_reasons(self, stream: str, partition: int, **reasons: int) -> None:
        fields = {keys.field(partition, reason): n for reason, n in reasons.items()}
        self.client.hset(keys.dead_letter_reasons(self.app, stream), mapping=fields)


def scored_outcome(partition: int, orders: list[tuple[int, int, dict[str, float]]]) -> FraudOutcome:
    """One scorer batch's outcome over (order id, order time, features), scored by the default
    policy and encoded as the scorer encodes them; its panes count only these orders."""
    panes: dict[int, list[int]] = {}
    scored, alerts = [], []
    for order_id, time_ms, features in orders:
        order = Order(f"e{order_id}", order_id, f"u{order_id % 7}", time_ms, 1_999, "EUR",
                      "card-1", "DE", "dev-1", "10.0.0.1")  # fmt: skip
        score = score_order(features, POLICY)
        scored.append((str(order_id), time_ms, scored_order_value(order, features, score)))
        if score.alert:
            alerts.append((str(order_id), time_ms, alert_value(order, score)))
        counts = panes.setdefault(time_ms - time_ms % MINUTE, [0] * PANE_COUNTS)
        counts[0] += 1
        counts[1] += score.alert
        counts[2 + score_bucket(score.score)] += 1
    return FraudOutcome(partition, panes, scored, alerts)


def project_fraud(redis_url: str, outcomes: list[FraudOutcome], app: str = APP) -> None:
    """The outcomes through the worker's own sink (serving.fraud_projection) into Redis."""

    async def write() -> None:
        client = aioredis.Redis.from_url(redis_url)
        projection = FraudProjection(client, app, 60_000)
        projection.stage(outcomes)
        assert await projection.flush()
        await client.aclose()

    asyncio.run(write())


FRAUDULENT = {"user_cards_10m": 3, "small_order": 1, "session_pages": 0, "new_device": 1}


def seed_fraud(redis_url: str) -> None:
    """Four orders on two scorer partitions, in two windows: orders 2 and 3 (the latest
    window) are alerts."""
    project_fraud(redis_url, [
        scored_outcome(0, [(1, LATEST - MINUTE, {}), (2, LATEST + 5_000, FRAUDULENT)]),
        scored_outcome(1, [(3, LATEST + 9_000, FRAUDULENT), (4, LATEST + 20_000, {})]),
    ])  # fmt: skip


@dataclass
class Dashboard:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    password: str = ""

    def get(
        self, path: str, auth: tuple[str, str] | None = None
    ) -> tuple[int, dict[str, str], object]:
        """(status, headers, parsed JSON body) of a GET, errors included."""
        request = urllib.request.Request(self.url + path)
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, dict(response.headers), orjson.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), orjson.loads(error.read())


def start_dashboard(tmp: Path, redis_url: str, **env: str) -> Dashboard:
    """`python -m dashboard` on a free port; returns once /healthz answers (any status)."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CLICKSTREAM_", "DASH_"))}
    clean |= {
        "CLICKSTREAM_REDIS_URL": redis_url,
        "CLICKSTREAM_DASHBOARD_PORT": str(port),
        "CLICKSTREAM_APP_ID": APP,
        **env,
    }
    tmp.mkdir(parents=True, exist_ok=True)
    log = tmp / "dashboard.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "dashboard"],
            cwd=tmp,  # no stray .env is read
            env=clean,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    dashboard = Dashboard(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dashboard exited with {process.returncode}: {log.read_text()}")
        with contextlib.suppress(OSError):
            dashboard.get("/healthz")
            return dashboard
        time.sleep(0.1)
    stop_dashboard(dashboard)
    raise RuntimeError(f"dashboard did not answer in {START_TIMEOUT:.0f}s: {log.read_text()}")


def stop_dashboard(dashboard: Dashboard) -> None:
    dashboard.process.terminate()
    try:
        dashboard.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        dashboard.process.kill()
        dashboard.process.wait(timeout=10)


def seed_shop(layout: LayoutWriter) -> None:
    """20 quiet windows of history, then a latest window with hand-picked partials on 3 partitions.

    Latest window: /home 120 + 80 + 12 = 212, all pages 273; USD 5 orders 180.00, EUR 1 order 45.50.
    """
    layout.meta(window_ms=MINUTE, grace_ms=30_000)
    layout.worker_report()
    rng = random.Random(7)
    urls = ["/home", "/products/42", "/search", "/cart", "/checkout", "/pricing", "/blog/launch"]
    for i in range(20):
        start = LATEST - (20 - i) * MINUTE
        for partition in range(3):
            views = {url: rng.randint(5, 60 - 7 * rank) for rank, url in enumerate(urls)}
            layout.page_views(start, partition, views)
            layout.orders(start, partition, "USD", rng.randint(1, 6), rng.randint(2_000, 40_000))
            layout.orders(start, partition, "EUR", rng.randint(0, 3), rng.randint(0, 15_000))
    layout.page_views(LATEST, 0, {"/home": 120, "/cart": 15})
    layout.page_views(LATEST, 1, {"/home": 80, "/products/42": 40})
    layout.page_views(LATEST, 2, {"/home": 12, "/checkout": 6})
    layout.orders(LATEST, 0, "USD", orders=3, cents=12_999)
    layout.orders(LATEST, 1, "USD", orders=2, cents=5_001)
    layout.orders(LATEST, 1, "EUR", orders=1, cents=4_550)
    layout.pipeline("clicks", 0, watermark_ms=LATEST + 41_000, accepted=9_000, duplicates=3, late=2)
    layout.pipeline("clicks", 1, watermark_ms=LATEST + 40_000, accepted=8_500, dead_letters=1)
    layout.pipeline("clicks", 2, watermark_ms=LATEST + 42_000, accepted=7_100, duplicates=2)
    layout.pipeline("orders", 0, watermark_ms=LATEST + 39_000, accepted=310, late=1)
    layout.pipeline("orders", 1, watermark_ms=LATEST + 40_500, accepted=295, dead_letters=3)
    layout.dead_letter_reasons("clicks", 1, malformed_json=1)
    layout.dead_letter_reasons("orders", 0, unknown_schema_version=1)
    layout.dead_letter_reasons("orders", 1, unknown_schema_version=1, bad_value=1)
