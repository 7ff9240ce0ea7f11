"""Prometheus series per source partition: shown while owned, dropped after a rebalance."""

from __future__ import annotations

from prometheus_client import REGISTRY

from agents.metrics import forget_unassigned, record_progress
from tables.window_state import BatchOutcome, Progress


def series(stream: str) -> set[str]:
    return {
        sample.labels["partition"]
        for metric in REGISTRY.collect()
        if metric.name == "clickstream_partition_watermark_seconds"
        for sample in metric.samples
        if sample.labels.get("stream") == stream
    }


def test_partitions_a_worker_no_longer_owns_lose_their_series():
    record_progress(
        "test-stream", [BatchOutcome(p, progress=Progress(watermark_ms=1_000)) for p in range(4)]
    )
    assert series("test-stream") == {"0", "1", "2", "3"}
    forget_unassigned("test-stream", {1, 3})
    assert series("test-stream") == {"1", "3"}
    forget_unassigned("test-stream", {0, 1, 2, 3})  # newly assigned: shown at their next batch
    assert series("test-stream") == {"1", "3"}
