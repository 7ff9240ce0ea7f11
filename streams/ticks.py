"""Tick records: how event time advances on an idle input partition, written into the log itself.

A worker whose partition has had no record for CLICKSTREAM_IDLE_SECONDS (and is caught up)
appends a tick to that partition: no event, just "event time here has reached T". Because the
tick is in the log, a replay (or a shadow version) sees the same time advance at the same
offset, so it closes the same windows with the same contents.

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


def tick_time(value: bytes | None) -> int | None:
    """The tick's time, or None when the value is not a tick's (it is then a dead letter)."""
    try:
        time_ms = orjson.loads(value or b"")["tick_ms"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return time_ms if isinstance(time_ms, int) and not isinstance(time_ms, bool) else None
