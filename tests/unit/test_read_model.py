"""The read model against a throwaway redis-server, seeded exactly as serving.keys lays it out."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from clickstream.local.process import free_port
from clickstream.local.redis import LocalRedis
from serving import keys, read_model
from serving.read_model import OrderRow, PageViewRow, PartitionRow, PipelineRow
from tables import sketch

APP = "shop"
MINUTE = 60_000
T0 = 1_700_000_040_000  # a window start, epoch ms


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = LocalRedis(tmp_path_factory.mktemp("redis"), free_port())
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    client = read_model.connect(redis_url)
    client.flushdb()
    return client


def write_page_views(
    client: redis.Redis, start: int, partition: int, views: dict[str, int]
) -> None:
    client.zadd(keys.windows(APP, keys.PAGE_VIEWS), {str(start): start})
    fields = {keys.field(partition, url): n for url, n in views.items()}
    client.hset(keys.window(APP, keys.PAGE_VIEWS, start), mapping=fields)


def write_orders(
    client: redis.Redis, start: int, partition: int, currency: str, orders: int, cents: int
) -> None:
    client.zadd(keys.windows(APP, keys.ORDERS), {str(start): start})
    fields = {
        keys.field(partition, currency, "orders"): orders,
        keys.field(partition, currency, "cents"): cents,
    }
    client.hset(keys.window(APP, keys.ORDERS, start), mapping=fields)


def write_pipeline(client: redis.Redis, stream: str, partition: int, **counters: int) -> None:
    fields = {keys.field(partition, name): value for name, value in counters.items()}
    client.hset(keys.pipeline(APP, stream), mapping=fields)


def test_page_views_are_summed_over_partitions_oldest_window_first(client: redis.Redis) -> None:
    write_page_views(client, T0 + MINUTE, 0, {"/cart": 2, "/home": 5})
    write_page_views(client, T0 + MINUTE, 1, {"/home": 3})
    write_page_views(client, T0, 1, {"/home": 1})

    assert read_model.page_views(client, APP, last_windows=10) == [
        PageViewRow(T0, "/home", 1),
        PageViewRow(T0 + MINUTE, "/cart", 2),
        PageViewRow(T0 + MINUTE, "/home", 8),
    ]


def test_page_views_keep_only_the_newest_windows(client: redis.Redis) -> None:
    for i in range(5):
        write_page_views(client, T0 + i * MINUTE, 0, {"/home": i + 1})

    rows = read_model.page_views(client, APP, last_windows=2)

    assert [(r.window_start_ms, r.views) for r in rows] == [
        (T0 + 3 * MINUTE, 4),
        (T0 + 4 * MINUTE, 5),
    ]


def test_orders_sum_counts_and_cents_per_currency_over_partitions(client: redis.Redis) -> None:
    write_orders(client, T0, 0, "USD", orders=2, cents=1999)
    write_orders(client, T0, 3, "USD", orders=1, cents=501)
    write_orders(client, T0, 3, "EUR", orders=4, cents=10_000)

    assert read_model.orders(client, APP, last_windows=1) == [
        OrderRow(T0, "EUR", orders=4, revenue_cents=10_000),
        OrderRow(T0, "USD", orders=3, revenue_cents=2500),
    ]


def test_fields_of_unknown_kinds_are_skipped(client: redis.Redis) -> None:
    write_orders(client, T0, 0, "USD", orders=1, cents=100)
    client.hset(keys.window(APP, keys.ORDERS, T0), keys.field(0, "USD", "refunds"), 7)
    write_pipeline(client, "clicks", 0, accepted=5, future_counter=9)

    assert read_model.orders(client, APP, 1) == [OrderRow(T0, "USD", 1, 100)]
    assert read_model.pipeline(client, APP)[0].accepted == 5


def test_a_listed_window_without_its_hash_gives_no_rows(client: redis.Redis) -> None:
    client.zadd(keys.windows(APP, keys.PAGE_VIEWS), {str(T0): T0})

    assert read_model.page_views(client, APP, 10) == []


def test_pipeline_sums_counters_and_keeps_each_partition_watermark(client: redis.Redis) -> None:
    write_pipeline(client, "clicks", 0, watermark_ms=T0 + 5, accepted=10, duplicates=1, late=2)
    write_pipeline(client, "clicks", 1, watermark_ms=T0, accepted=7, dead_letters=3)

    clicks, orders = read_model.pipeline(client, APP)

    assert clicks == PipelineRow(
        stream="clicks",
        accepted=17,
        duplicates=1,
        late=2,
        dead_letters=3,
        low_watermark_ms=T0,
        partitions=(PartitionRow(0, T0 + 5, 10, 1, 2, 0), PartitionRow(1, T0, 7, 0, 0, 3)),
    )
    assert orders == PipelineRow("orders", 0, 0, 0, 0, None, ())


def test_meta_reads_window_and_grace_and_is_empty_before_any_worker(client: redis.Redis) -> None:
    assert read_model.meta(client, APP) == read_model.Meta(window_ms=None, grace_ms=None)

    client.hset(keys.meta(APP), mapping={"window_ms": MINUTE, "grace_ms": 30_000})

    assert read_model.meta(client, APP) == read_model.Meta(window_ms=MINUTE, grace_ms=30_000)


def test_snapshot_equals_the_single_reads(client: redis.Redis) -> None:
    client.hset(keys.meta(APP), mapping={"window_ms": MINUTE, "grace_ms": 0})
    write_page_views(client, T0, 0, {"/home": 1})
    write_orders(client, T0, 1, "GBP", orders=1, cents=250)
    write_pipeline(client, "orders", 1, watermark_ms=T0, accepted=1)

    snap = read_model.snapshot(client, APP, last_windows=5)

    assert snap.meta == read_model.meta(client, APP)
    assert snap.page_views == read_model.page_views(client, APP, 5)
    assert snap.orders == read_model.orders(client, APP, 5)
    assert snap.pipeline == read_model.pipeline(client, APP)


def test_a_client_returning_bytes_reads_the_same_rows(client: redis.Redis, redis_url: str) -> None:
    write_page_views(client, T0, 0, {"/home": 4})

    raw = redis.Redis.from_url(redis_url)  # decode_responses=False

    assert read_model.page_views(raw, APP, 1) == [PageViewRow(T0, "/home", 4)]


@pytest.mark.parametrize("windows", [0, -1, read_model.MAX_WINDOWS + 1])
def test_window_counts_outside_the_range_are_refused(client: redis.Redis, windows: int) -> None:
    with pytest.raises(ValueError, match="between 1 and 1440"):
        read_model.page_views(client, APP, windows)


def test_an_unreachable_redis_raises_unavailable_naming_it(tmp_path: Path) -> None:
    port = free_port()
    client = read_model.connect(f"redis://127.0.0.1:{port}/0", timeout=0.5)

    with pytest.raises(read_model.Unavailable, match=f"127.0.0.1:{port} is unreachable"):
        read_model.snapshot(client, APP, 10)
    with pytest.raises(read_model.Unavailable):
        read_model.ping(client)


def write_sketch(client: redis.Redis, start: int, partition: int, name: str, users) -> None:
    registers = sketch.empty()
    for user in users:
        sketch.add(registers, *sketch.position(user))
    client.zadd(keys.windows(APP, keys.UNIQUES), {str(start): start})
    field = keys.field(partition, name)
    client.hset(keys.window(APP, keys.UNIQUES, start), field, base64.b64encode(registers))


def test_unique_users_merge_the_partitions_sketches(client):
    write_sketch(client, T0, 0, "users", [f"u{i}" for i in range(0, 300)])
    write_sketch(client, T0, 1, "users", [f"u{i}" for i in range(200, 500)])  # 100 shared
    (row,) = read_model.uniques(client, APP, 5)
    assert row.window_start_ms == T0 and row.sketch == "users"
    assert abs(row.users - 500) <= 4 * sketch.STANDARD_ERROR * 500


def test_the_funnel_counts_each_user_once_across_windows_and_gives_conversions(client):
    viewers = [f"u{i}" for i in range(400)]
    write_sketch(client, T0, 0, "page_view", viewers)
    write_sketch(client, T0 + MINUTE, 0, "page_view", viewers[:100])  # the same users again
    write_sketch(client, T0 + MINUTE, 1, "add_to_cart", viewers[:100])
    write_sketch(client, T0 + MINUTE, 1, "checkout", viewers[:50])
    write_sketch(client, T0 + MINUTE, 0, "buyers", viewers[:25])
    steps = read_model.funnel(client, APP, 5)
    assert [s.step for s in steps] == ["page_view", "add_to_cart", "checkout", "buyers"]
    assert [s.users for s in steps] == pytest.approx([400, 100, 50, 25], abs=2)
    assert steps[0].conversion is None
    assert [s.conversion for s in steps[1:]] == pytest.approx([0.25, 0.5, 0.5], abs=0.01)


def test_counts_sum_a_metrics_partitions(client):
    for partition, n in ((0, 3), (1, 4)):
        client.zadd(keys.windows(APP, keys.REFERRERS), {str(T0): T0})
        client.hset(keys.window(APP, keys.REFERRERS, T0), keys.field(partition, "t.co"), n)
    assert read_model.counts(client, APP, keys.REFERRERS, 5) == [read_model.CountRow(T0, "t.co", 7)]


def test_sessions_sum_partitions_and_give_bounce_rate_and_mean_duration(client):
    client.zadd(keys.windows(APP, keys.SESSIONS), {str(T0): T0})
    fields = {}
    for partition, counts in enumerate([(3, 1, 90_000), (1, 1, 0)]):
        for name, value in zip(keys.COUNT_NAMES[keys.SESSIONS], counts, strict=True):
            fields[keys.field(partition, "ended", name)] = value
    client.hset(keys.window(APP, keys.SESSIONS, T0), mapping=fields)
    write_pipeline(client, "clicks", 0, open_sessions=5)
    write_pipeline(client, "clicks", 1, open_sessions=2)
    assert read_model.sessions(client, APP, 5) == [
        read_model.SessionRow(T0, 4, 2, 90_000, 0.5, 22_500.0)
    ]
    assert read_model.pipeline(client, APP)[0].open_sessions == 7


def test_attribution_sums_partitions_per_referrer_and_currency(client):
    client.zadd(keys.windows(APP, keys.ATTRIBUTED), {str(T0): T0})
    fields = {}
    for partition, (orders, cents) in enumerate([(2, 3_000), (1, 500)]):
        fields[keys.field(partition, "www.google.com", "EUR", "orders")] = orders
        fields[keys.field(partition, "www.google.com", "EUR", "cents")] = cents
    fields[keys.field(1, "(direct)", "JPY", "orders")] = 1
    fields[keys.field(1, "(direct)", "JPY", "cents")] = 1_200
    client.hset(keys.window(APP, keys.ATTRIBUTED, T0), mapping=fields)
    assert read_model.attribution(client, APP, 5) == [
        read_model.AttributionRow(T0, "(direct)", "JPY", 1, 1_200),
        read_model.AttributionRow(T0, "www.google.com", "EUR", 3, 3_500),
    ]
    assert read_model.snapshot(client, APP, 5).attributed == read_model.attribution(client, APP, 5)


def test_partials_summed_over_partitions_saturate_like_the_workers_sums(
    client: redis.Redis,
) -> None:
    key = keys.window("shop", keys.ORDERS, 60_000)
    top = 2**63 - 1
    client.hset(key, mapping={f"{p}|EUR|orders": 1 for p in range(3)})
    client.hset(key, mapping={f"{p}|EUR|cents": top for p in range(3)})
    client.zadd(keys.windows("shop", keys.ORDERS), {"60000": 60_000})
    (row,) = read_model.orders(client, "shop", 1)
    assert (row.orders, row.revenue_cents) == (3, top)
