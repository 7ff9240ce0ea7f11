"""The scorer's sink (serving.fraud_projection) on a real Redis: absolute counts, the newest
orders and alerts kept and the rest trimmed with their bodies, and nothing lost while Redis is
down."""

from __future__ import annotations

import redis
import redis.asyncio as aioredis

from clickstream.local.process import free_port
from clickstream.local.redis import LocalRedis
from serving import keys, read_model
from serving.fraud_projection import FraudProjection
from streams.fraud import PANE_COUNTS, FraudOutcome

MIN = 60_000
T0 = 1_767_225_600_000


def outcome(partition: int, orders: range, alert_from: int) -> FraudOutcome:
    """Orders n (one a minute from T0, alerts from `alert_from` on), their pane counts."""
    panes, scored, alerts = {}, [], []
    for n in orders:
        time_ms = T0 + n * MIN
        counts = [0] * PANE_COUNTS
        counts[0], counts[1] = 1, int(n >= alert_from)
        counts[2 + (9 if n >= alert_from else 0)] = 1
        panes[time_ms] = counts
        scored.append((str(n), time_ms, b'{"order_id": %d}' % n))
        if n >= alert_from:
            alerts.append((str(n), time_ms, b'{"order_id": %d, "alert": true}' % n))
    return FraudOutcome(partition, panes, scored, alerts)


async def test_only_the_newest_orders_and_alerts_are_kept_with_their_bodies(
    redis_server, app_id, monkeypatch
):
    monkeypatch.setattr(keys, "FRAUD_EXPLAINED", 5)
    monkeypatch.setattr(keys, "FRAUD_ALERTS", 3)
    client = aioredis.Redis.from_url(redis_server.url)
    projection = FraudProjection(client, app_id, 60_000)
    projection.stage([outcome(0, range(0, 6), alert_from=2)])
    assert await projection.flush()
    projection.stage([outcome(1, range(6, 9), alert_from=6)])
    assert await projection.flush()

    reader = read_model.connect(redis_server.url)
    assert reader.zrange(keys.fraud(app_id, "scored"), 0, -1) == ["4", "5", "6", "7", "8"]
    assert sorted(reader.hkeys(keys.fraud(app_id, "explained"))) == ["4", "5", "6", "7", "8"]
    assert [a["order_id"] for a in read_model.fraud_alerts(reader, app_id, 3)] == [8, 7, 6]
    assert sorted(reader.hkeys(keys.fraud(app_id, "alert"))) == ["6", "7", "8"]
    assert read_model.fraud_order(reader, app_id, "3") is None  # trimmed
    summary = read_model.fraud_summary(reader, app_id, 100)  # the counts are not trimmed
    assert (summary.orders, summary.alerts, summary.scores[9]) == (9, 7, 7)
    await client.aclose()


async def test_what_fails_while_redis_is_down_is_sent_once_it_is_back(tmp_path, app_id):
    own = LocalRedis(tmp_path / "redis", free_port())
    own.start()
    client = aioredis.Redis.from_url(own.url, socket_timeout=2, socket_connect_timeout=2)
    try:
        projection = FraudProjection(client, app_id, 60_000)
        own.stop()
        projection.stage([outcome(0, range(0, 3), alert_from=1)])
        assert not await projection.flush()
        projection.stage([outcome(0, range(3, 4), alert_from=0)])
        assert not await projection.flush()
        own.start()
        assert await projection.flush()
        reader = redis.Redis.from_url(own.url, decode_responses=True)
        summary = read_model.fraud_summary(reader, app_id, 10)
        assert (summary.orders, summary.alerts) == (4, 3)
        assert [a["order_id"] for a in read_model.fraud_alerts(reader, app_id, 10)] == [3, 2, 1]
    finally:
        await client.aclose()
        own.stop()
