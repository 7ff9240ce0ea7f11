"""Prometheus gauges of each source partition's progress, served by the worker at /metrics
beside Faust's own sensors. Values are the partition's durable counters (they survive restarts),
so they are gauges: `clickstream_partition_events{stream, partition, fate}`. A worker shows only
the partitions it owns: after a rebalance the others' series are dropped."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import Gauge

from tables.window_state import BatchOutcome

FATES = ("accepted", "duplicates", "late", "dead_letters")

PARTITION_EVENTS = Gauge(
    "clickstream_partition_events",
    "Events of a source partition by fate, since the beginning of its state",
    ["stream", "partition", "fate"],
)
PARTITION_OPEN_SESSIONS = Gauge(
    "clickstream_partition_open_sessions",
    "User sessions of a source partition not yet expired (clicks)",
    ["stream", "partition"],
)
PARTITION_WATERMARK = Gauge(
    "clickstream_partition_watermark_seconds",
    "Largest accepted event time of a source partition (epoch seconds)",
    ["stream", "partition"],
)


_shown: dict[str, set[int]] = {}  # stream -> partitions with series


def record_progress(stream: str, outcomes: Sequence[BatchOutcome]) -> None:
    for out in outcomes:
        _shown.setdefault(stream, set()).add(out.partition)
        partition = str(out.partition)
        for fate in FATES:
            PARTITION_EVENTS.labels(stream, partition, fate).set(getattr(out.progress, fate))
        PARTITION_WATERMARK.labels(stream, partition).set(out.progress.watermark_ms / 1000)
        PARTITION_OPEN_SESSIONS.labels(stream, partition).set(out.progress.open_sessions)


def forget_unassigned(stream: str, assigned: set[int]) -> None:
    for partition in _shown.get(stream, set()) - assigned:
        for fate in FATES:
            PARTITION_EVENTS.remove(stream, str(partition), fate)
        PARTITION_WATERMARK.remove(stream, str(partition))
        PARTITION_OPEN_SESSIONS.remove(stream, str(partition))
        _shown[stream].discard(partition)
