"""Late-event records: an event that came after its window closed, recorded, never merged.

  topic: <app>-late-events     key: the original key (a late order fact: its event id)
  value: {"id", "reason", "event_id", "occurred_at", "window_start", "watermark",
          "source": {"topic", "partition", "offset"}}
The id is the source record's id (streams.dead_letters.source_id), followed by
"/<event_id>" when that record holds several events (an order facts record), so a record
repeated after a crash has the same id.
"""

from __future__ import annotations

from typing import Any

import orjson

from streams.eventtime import format_timestamp

EVENT_LATE = "window closed: event later than allowed lateness"
ORDER_LATE = "attribution closed: the order's facts came after its window's"


def late_event_value(
    record: Any,
    reason: str,
    event_id: str,
    time_ms: int,
    window_start_ms: int,
    watermark_ms: int,
    within: bool = False,
) -> bytes:
    """`within`: the record holds several events, so the id names the event too."""
    source = f"{record.topic}/{record.partition}/{record.offset}"
    return orjson.dumps(
        {
            "id": f"{source}/{event_id}" if within else source,
            "reason": reason,
            "event_id": event_id,
            "occurred_at": format_timestamp(time_ms),
            "window_start": format_timestamp(window_start_ms),
            "watermark": format_timestamp(watermark_ms),
            "source": {
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
            },
        }
    )
