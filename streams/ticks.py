"""Tick records: how event time advances on an idle input partition, written into the log itself.

A worker whose partition has had no record for CLICKSTREAM_IDLE_SECONDS (and is caught up)
appends a tick to that partition: no event, just "event time here has reached T". Because the
tick is in the log, a replay (or a shadow version) sees the same time advance at the same
offset, so it closes the same windows with the same contents. A tick is taken only from the
app itself and no later than its record's timestamp plus the future skew (streams.control).

  headers: ("clickstream-tick", b"1")      value: {"tick_ms": T, "by": "<app id>"}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

TICK_HEADER = "clickstream-tick"


def tick_record(time_ms: int, app_id: str) -> tuple[bytes, list[tuple[str, bytes]]]:
    """(value, headers) of a tick."""
    return orjson.dumps({"tick_ms": time_ms, "by": app_id}), [(TICK_HEADER, b"1")]


def is_tick(headers: Iterable[tuple[str, Any]] | Mapping[str, Any] | None) -> bool:
    if not headers:
        return False
    if isinstance(headers, Mapping):
        return TICK_HEADER in headers
    return any(name == TICK_HEADER for name, _ in headers)


def read_tick(value: bytes | None) -> tuple[int, str] | None:
    """(time, app id) of a tick, or None when the value is not a tick's (a dead letter)."""
    try:
        body = orjson.loads(value or b"")
        time_ms, by = body["tick_ms"], body["by"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    if isinstance(time_ms, int) and not isinstance(time_ms, bool) and isinstance(by, str):
        return time_ms, by
    return None
