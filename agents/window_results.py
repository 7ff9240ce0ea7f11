"""WindowResult: the derived event for a window's final content in one source partition; and
WindowProgress: how far a source partition has emitted its results.

A result is emitted once per (stream, window, partition) with data, when the partition's
watermark passes the window's end + grace; key "<kind>/<start ms>" (every stream's and
partition's part of one window lands in the same results partition); id
"<stream>/<kind>/<start ms>/p<partition>". Sums saturate at MAX_COUNT; `saturated` then lists
the dimensions that reached it. Windows without data in a partition get no result from it.

Completeness rule: each time a partition's watermark passes a window's close, it sends a
progress record (kind "progress", its watermark) to every results partition, after the results
it closed. A window is complete once every source partition of the stream has sent either its
part or a progress record with watermark >= the window's end + grace; its total is the sum
(sketches: the register-wise max) of the parts that came. So the results are bounded by the
data and the partitions (one progress record per results partition and pass), never by the
span of event time.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from serving import keys
from streams.eventtime import format_timestamp
from tables import sketch
from tables.bounded import bounded
from tables.panes import ClosedWindow
from tables.windows import MAX_COUNT

# a result's fields that are not metrics
RESULT_FIELDS = frozenset(
    {"id", "stream", "kind", "start", "end", "partition", "partitions", "saturated", "folded"}
)


def result_key(stream: str, kind: str, start_ms: int) -> str:
    """The result's id without its partition (also a WindowTotal's id)."""
    return f"{stream}/{kind}/{start_ms}"


def window_key(kind: str, start_ms: int) -> bytes:
    """The record key of a window's results: one per window, whatever the stream."""
    return f"{kind}/{start_ms}".encode()


def progress_record(
    stream: str, partition: int, partitions: int, watermark_ms: int, grace_ms: int
) -> dict[str, Any]:
    """Every result of `partition` for a window with end + grace <= `watermark_ms` is out.
    (Not a result: how many there are depends on how the input was batched.)"""
    return {
        "id": f"{stream}/progress/{watermark_ms}/p{partition}",
        "stream": stream,
        "kind": "progress",
        "partition": partition,
        "partitions": partitions,
        "watermark": format_timestamp(watermark_ms),
        "watermark_ms": watermark_ms,
        "grace_ms": grace_ms,
    }


def counted(counts: Mapping[str, list[int]]) -> dict[str, Any]:
    """A window's counts as a result's fields: {metric: {name: count, or {count name: n}}},
    within the record budget (tables.bounded: `folded` when names were folded into OTHER);
    `saturated` lists the dimensions at MAX_COUNT."""
    kept, folded = bounded(counts)
    fields: dict[str, Any] = {}
    saturated = sorted(d for d, values in kept.items() if MAX_COUNT in values)
    if saturated:
        fields["saturated"] = saturated
    if folded:
        fields["folded"] = folded
    for dimension, values in sorted(kept.items()):
        metric, name = dimension.split(keys.SEP, 1)
        names = keys.COUNT_NAMES.get(metric)
        value = values[0] if names is None else dict(zip(names, values, strict=True))
        fields.setdefault(metric, {})[name] = value
    return fields


def counts_of(fields: Mapping[str, Any]) -> dict[str, list[int]]:
    """Inverse of counted(): a result's count metrics as dimension -> counts."""
    counts: dict[str, list[int]] = {}
    for metric, values in fields.items():
        if metric in RESULT_FIELDS or metric == keys.UNIQUES:
            continue
        names = keys.COUNT_NAMES.get(metric)
        for name, value in values.items():
            dimension = f"{metric}{keys.SEP}{name}"
            counts[dimension] = [value] if names is None else [value[n] for n in names]
    return counts


def window_result(
    stream: str, partition: int, partitions: int, window: ClosedWindow, pane_ms: int
) -> dict[str, Any]:
    kind = "tumbling" if window.end_ms - window.start_ms == pane_ms else "hopping"
    key = result_key(stream, kind, window.start_ms)
    body: dict[str, Any] = {
        "id": f"{key}/p{partition}",
        "stream": stream,
        "kind": kind,
        "start": format_timestamp(window.start_ms),
        "end": format_timestamp(window.end_ms),
        "partition": partition,
        "partitions": partitions,
    }
    body.update(counted(window.counts))
    for dimension, registers in sorted(window.sketches.items()):
        metric, name = dimension.split(keys.SEP, 1)
        body.setdefault(metric, {})[name] = {
            "estimate": sketch.estimate(registers),
            "registers": base64.b64encode(registers).decode(),
        }
    return body
