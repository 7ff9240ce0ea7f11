"""The Faust app: settings wired into faust.App, tables declared, agents attached. Nothing runs
at import time; `create_app(settings)` builds it."""

from __future__ import annotations

import logging
from typing import cast

import faust
import redis.asyncio as aioredis
from faust.sensors.prometheus import setup_prometheus_sensors

from agents.batch_delivery import BatchHandler, batch_delivering_consumer
from agents.clicks import aggregate_clicks
from agents.orders import aggregate_orders
from agents.window_totals import combine_window_parts
from agents.windowed import EventKind, WindowedAggregation
from clickstream.membership import group_instance_id
from clickstream.settings import Settings
from clickstream.state_dir import state_folder
from serving import keys
from serving.projection import RedisProjection
from streams.topics import PARTS_TABLE
from tables.state_table import declare_state_table


def broker_urls(bootstrap: str) -> str:
    return ";".join(f"kafka://{hostport.strip()}" for hostport in bootstrap.split(","))


def create_app(settings: Settings) -> faust.App:
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
    redis_client = aioredis.Redis.from_url(settings.redis, socket_timeout=5)
    spec = settings.window_spec
    topics = settings.topics
    aggregations: dict[str, WindowedAggregation] = {}  # source topic -> its aggregation

    def attach(kind: EventKind, topic_name: str, session_gap_ms: int | None = None) -> None:
        table = declare_state_table(
            app,
            kind.table,
            f"source partition -> {kind.stream} pane cells and sketches, seen ids, progress",
            settings.partitions,
        )
        retention_ms = round(settings.retention_hours * 3_600_000)
        projection = RedisProjection(redis_client, settings.app_id, kind.stream, retention_ms)
        aggregation = WindowedAggregation(
            app,
            table,
            kind,
            topic_name,
            spec,
            settings.limits,
            projection,
            topics,
            settings.idle_seconds,
            settings.commit_seconds,
            session_gap_ms,
        )
        aggregations[topic_name] = aggregation
        source = app.topic(
            topic_name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.partitions,
        )

        async def aggregate(stream: faust.StreamT) -> None:
            async for events in cast(faust.Stream, stream).take_events(
                settings.batch_size, settings.batch_seconds
            ):
                await aggregation.apply_events(events)

        aggregate.__qualname__ = aggregate.__name__ = kind.agent  # how Faust logs it
        app.agent(source, name=kind.agent)(aggregate)
        fast_paths[topic_name] = aggregation.apply_fetched

    fast_paths: dict[str, BatchHandler] = {}
    metrics = settings.click_metrics
    gap_ms = settings.session_gap_seconds * 1000 if keys.SESSIONS in metrics else None
    attach(aggregate_clicks(metrics), topics.clicks.name, gap_ms)
    attach(aggregate_orders(forward_facts=keys.ATTRIBUTED in metrics), topics.orders.name)
    attach_totals(app, settings)
    # In a worker, fetched records of these topics skip Faust's per-message path (the agents
    # above stay declared: they subscribe the topics, and serve test_context).
    setattr(app.transport, "Consumer", batch_delivering_consumer(fast_paths))  # noqa: B010

    @app.task
    async def quiet_client_debug_logs() -> None:
        # Faust's worker sets the root logger to DEBUG (for its spinner), so aiokafka would
        # build a debug record per sent message (~20% of the hot path's CPU in a profile).
        logging.getLogger("aiokafka").setLevel(logging.getLevelName(settings.python_log_level))

    @app.task
    async def publish_window_settings() -> None:
        await redis_client.hset(
            keys.meta(settings.app_id),
            mapping={
                "window_ms": spec.size_ms,
                "grace_ms": spec.grace_ms,
                "hop_ms": spec.hop_ms,
                "retention_ms": round(settings.retention_hours * 3_600_000),
                "session_gap_ms": settings.session_gap_seconds * 1000,
            },
        )

    @app.timer(max(settings.commit_seconds / 2, 0.1))
    async def commit_staged_state() -> None:
        """Commit what quiet streams staged (busy ones commit as their batches come)."""
        for aggregation in aggregations.values():
            try:
                await aggregation.commit_if_due()
            except Exception as exc:  # a broker hiccup: staged state and offsets wait
                logging.getLogger(__name__).warning("commit failed, will retry: %r", exc)

    if settings.idle_seconds > 0:

        @app.timer(max(settings.idle_seconds / 2, 0.5))
        async def tick_idle_partitions() -> None:
            """Advance event time on quiet partitions (tables.event_clock, streams.ticks)."""
            for aggregation in aggregations.values():
                try:
                    await aggregation.tick_idle_partitions()
                except Exception as exc:  # a rebalance or a broker hiccup: try on the next round
                    logging.getLogger(__name__).warning("no ticks this round: %r", exc)

    subscription = [*(spec.name for spec in topics.all()), *app.tables]
    app.conf.consumer_group_instance_id = group_instance_id(settings, subscription)
    return app


def attach_totals(app: faust.App, settings: Settings) -> None:
    """combine_window_parts: window results and progress in, one total per window out (low
    volume, as only windows with data have parts: the plain per-event agent)."""
    topics = settings.topics

    def raw_topic(name: str) -> faust.TopicT:
        return app.topic(
            name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        )

    table = declare_state_table(
        app, PARTS_TABLE, "window -> its parts until totalled; stream -> its partitions' progress",
        settings.partitions,
    )  # fmt: skip
    combine = combine_window_parts(table, raw_topic(topics.window_totals.name), settings.top_k)
    combine.__qualname__ = combine.__name__ = "combine_window_parts"
    app.agent(raw_topic(topics.window_results.name), name="combine_window_parts")(combine)
