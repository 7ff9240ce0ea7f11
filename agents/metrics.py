"""Prometheus gauges of each source partition's progress, served by the worker at /metrics
beside Faust's own sensors. Values are the partition's durable counters (they survive restarts),
so they are gauges: `clickstream_partition_events{stream, partition, fate}`."""

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
PARTITION_WATERMARK = Gauge(
    "clickstream_partition_watermark_seconds",
    "Largest accepted event time of a source partition (epoch seconds)",
    ["stream", "partition"],
)


def record_progress(stream: str, outcomes: Sequence[BatchOutcome]) -> None:
    for out in outcomes:
        partition = str(out.partition)
        for fate in FATES:
            PARTITION_EVENTS.labels(stream, partition, fate).set(getattr(out.progress, fate))
        PARTITION_WATERMARK.labels(stream, partition).set(out.progress.watermark_ms / 1000)
