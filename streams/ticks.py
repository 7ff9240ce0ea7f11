"""Tick records: how event time advances on an idle input partition, kept in the app's own
time log (`<app>-<stream>-ticks`, partition p for input partition p).

A worker whose input partition p is caught up at offset N and has had no record for
CLICKSTREAM_IDLE_SECONDS appends a tick to partition p of the stream's time log: no event,
just "after input offset N, event time here has reached T". Every reader applies a tick right
after input offset N, whatever the order in which the two logs are fetched (engine.time_log),
so a restarted worker, or a replay that follows this time log, closes the same windows with
the same contents and gives the same late verdicts. A tick is taken only from the app that
owns the time log and no later than its record's timestamp plus the future skew
(streams.control).

  key: none      value: {"tick_ms": T, "after": N, "by": "<app id>"}
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson


@dataclass(frozen=True, slots=True)
class TickRecord:
    time_ms: int
    after: int  # the input offset it follows (-1: before the first)
    by: str  # the app id that wrote it


def tick_value(time_ms: int, after: int, app_id: str) -> bytes:
    return orjson.dumps({"tick_ms": time_ms, "after": after, "by": app_id})


def read_tick(value: bytes | None) -> TickRecord | None:
    """The tick, or None when the value is not a tick's (a dead letter)."""
    try:
        body = orjson.loads(value or b"")
        time_ms, after, by = body["tick_ms"], body["after"], body["by"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    if _is_int(time_ms) and _is_int(after) and after >= -1 and isinstance(by, str):
        return TickRecord(time_ms, after, by)
    return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
