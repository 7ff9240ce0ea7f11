"""The Faust app: settings wired into faust.App, and the topology, one processor per line.
Nothing runs at import time; `create_app(settings)` builds it.

  clicks ──(+ clicks ticks, order facts)──► aggregate_clicks ──► results, sessions, dead letters,
                                                                late events
  orders ──(+ orders ticks)───────────────► aggregate_orders ──► results, order facts, ...
  window results ─────────────────────────► combine_window_parts ──► window totals
  clicks, orders, fraud policy (+ ticks) ─► rekey_*_for_fraud ─► profile_orders ─►
                                                  score_orders ──► scored orders, fraud alerts
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import faust
import redis.asyncio as aioredis
from faust.sensors.prometheus import setup_prometheus_sensors
from faust.types import TP

from agents.clicks import aggregate_clicks
from agents.fraud import (
    ProfileOrders,
    ScoreOrders,
    click_forwarder,
    order_forwarder,
    policy_forwarder,
)
from agents.orders import aggregate_orders
from agents.window_totals import WindowTotals
from agents.windowed import EventKind, WindowedConfig, WindowedMetrics, WindowedSink
from clickstream import health
from clickstream.membership import group_instance_id
from clickstream.rebuild import ReadBackGuard
from clickstream.settings import Settings
from clickstream.state_dir import state_folder
from engine.delivery import Fetch
from engine.topology import Engine, EngineConfig
from serving import keys
from serving.fraud_projection import FraudProjection
from serving.projection import RedisProjection
from serving.sender import InBackground

READ_BACK_CHECK_S = 5.0  # how often a worker asks whether the closed panes need reading back
log = logging.getLogger(__name__)


def broker_urls(bootstrap: str) -> str:
    return ";".join(f"kafka://{hostport.strip()}" for hostport in bootstrap.split(","))


def create_app(settings: Settings, stops: Mapping[TP, int] | None = None) -> faust.App:
    """`stops`: a bounded run's input and time log partitions -> the first offset not read
    (a replay: engine.delivery)."""
    app = faust.App(
        settings.app_id,
        broker=broker_urls(settings.bootstrap),
        store=settings.store,
        datadir=str(state_folder(settings)),  # <var>/worker-<port>/<app id>
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        web_bind=settings.worker_host,
        web_host=settings.worker_host,
        web_port=settings.worker_port,
        stream_buffer_maxsize=settings.batch_size * 2,
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=max(1, settings.session_timeout_seconds // 10),
        autodiscover=False,
        env={},  # Faust would read BROKER_URL, WEB_PORT, ... itself; settings are ours alone
    )
    setup_prometheus_sensors(app, name_prefix=settings.app_id)  # GET /metrics on the worker
    # bounded: a hung Redis holds a background round (serving.sender) for 5 s at most
    redis_client = aioredis.Redis.from_url(
        settings.redis, socket_timeout=5, socket_connect_timeout=5
    )
    metrics = settings.click_metrics
    config = WindowedConfig(
        spec=settings.window_spec,
        limits=settings.limits,
        topics=settings.topics,
        app_id=settings.app_id,
        clock_app_id=settings.clock,
        session_gap_ms=settings.session_gap_seconds * 1000 if keys.SESSIONS in metrics else None,
    )
    retention_ms = round(settings.retention_hours * 3_600_000)
    spec = settings.window_spec
    meta = {
        "window_ms": spec.size_ms,
        "grace_ms": spec.grace_ms,
        "hop_ms": spec.hop_ms,
        "retention_ms": retention_ms,
        "session_gap_ms": settings.session_gap_seconds * 1000,
    }

    def windowed(kind: EventKind) -> WindowedMetrics:
        projection = RedisProjection(redis_client, settings.app_id, kind.stream, retention_ms, meta)
        # only clicks have sessions
        stream_config = config if kind.stream == "clicks" else replace(config, session_gap_ms=None)
        sink = InBackground(WindowedSink(projection, kind.stream), kind.stream)
        return WindowedMetrics(kind, stream_config, sink)

    state = "source partition -> {} pane cells and sketches, sessions, seen ids, progress"
    engine = Engine(app, _engine_config(settings, stops))
    forward = keys.ATTRIBUTED in metrics
    streams = {
        "clicks": engine.attach(windowed(aggregate_clicks(metrics)), help=state.format("clicks")),
        "orders": engine.attach(
            windowed(aggregate_orders(forward_facts=forward)), help=state.format("orders")
        ),
    }
    engine.attach(
        WindowTotals(settings.topics, settings.top_k),
        help="window -> its parts until totalled; stream -> its partitions' progress",
    )
    if settings.fraud == "on":
        topics, limits, clock = settings.topics, settings.limits, settings.clock
        position = "source partition -> forwarding position (offsets, watermark)"
        commit_s = settings.fraud_commit_seconds  # each order crosses three commits
        engine.attach(click_forwarder(topics, limits, clock), help=position, commit_s=commit_s)
        engine.attach(order_forwarder(topics, limits, clock), help=position, commit_s=commit_s)
        engine.attach(policy_forwarder(topics, limits, clock), help=position, commit_s=commit_s)
        engine.attach(
            ProfileOrders(topics),
            help="user, card, IP, device -> its feature state",
            commit_s=commit_s,
        )
        parts = "order -> its feature parts until scored; the policy versions read"
        scorer = ScoreOrders(
            topics,
            settings.fraud_policy,
            settings.window_spec.size_ms,
            InBackground(FraudProjection(redis_client, settings.app_id, spec.size_ms), "fraud"),
        )
        engine.attach(scorer, help=parts, commit_s=commit_s)
    engine.install()

    @app.task
    async def quiet_client_debug_logs() -> None:
        # Faust's worker sets the root logger to DEBUG (for its spinner), so aiokafka would
        # build a debug record per sent message (~20% of the hot path's CPU in a profile).
        logging.getLogger("aiokafka").setLevel(logging.getLevelName(settings.python_log_level))

    guard = ReadBackGuard(settings)

    @app.timer(READ_BACK_CHECK_S)
    async def read_back_closed_panes() -> None:
        """After Redis lost its data, the closed panes come back from the results (once)."""
        guard.poke()

    worker, sinks = health.worker_name(), [r.processor.sink for r in engine.runners]

    async def report_health_once() -> None:
        producer: Any = app.producer._ensure_producer()  # type: ignore[attr-defined]  # aiokafka's
        reachable = await health.probe(producer.client)
        health.BROKER.probed(reachable, settings.bootstrap)
        if reachable:  # event time stands still while the broker is away (tables.event_clock)
            engine.clock.broker_back(time.monotonic())
        else:
            engine.clock.broker_away(health.BROKER.answered_at)
        now_ms = round(time.time() * 1000)
        body = health.report(streams, [s for s in sinks if isinstance(s, InBackground)], now_ms)
        await health.publish(redis_client, settings.app_id, worker, body)

    @app.task
    async def report_health() -> None:
        """Whether the broker answers; this worker's partitions, lag and Redis rounds. A loop,
        not a timer: a probe that waits out its bound must not overlap the next."""
        while not app.should_stop:
            try:
                await report_health_once()
            except Exception as exc:  # a rebalance or a hiccup: the next round
                log.warning("health report failed, will retry: %r", exc)
            await asyncio.sleep(health.HEARTBEAT_S)

    @app.task
    async def publish_window_settings() -> None:  # again with every restate (serving.epoch)
        await redis_client.hset(keys.meta(settings.app_id), mapping=meta)  # type: ignore[arg-type]

    subscription = [*(spec.name for spec in settings.topics.all()), *app.tables]
    app.conf.consumer_group_instance_id = group_instance_id(settings, subscription)
    return app


def _engine_config(settings: Settings, stops: Mapping[TP, int] | None) -> EngineConfig:
    follows_own_clock = settings.clock == settings.app_id
    return EngineConfig(
        partitions=settings.partitions,
        commit_s=settings.commit_seconds,
        idle_s=settings.idle_seconds,
        batch_size=settings.batch_size,
        batch_s=settings.batch_seconds,
        ticks_by=settings.app_id if follows_own_clock else None,
        max_skew_ms=settings.limits.max_future_skew_ms,
        stops=stops,
        fetch=Fetch(settings.fetch_max_wait_ms, settings.fetch_min_bytes),
    )
