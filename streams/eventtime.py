"""Event time is decided here, and only here: an event's time is its own `occurred_at`."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_timestamp(text: str) -> int:
    """ISO-8601 with an explicit offset -> epoch milliseconds (UTC). Raises ValueError."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError("timestamp has no UTC offset")
    return int(moment.timestamp() * 1000)


def format_timestamp(epoch_ms: int) -> str:
    """Epoch ms -> ISO-8601 UTC with milliseconds, e.g. 2026-11-26T12:00:00.000Z."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_time_ms(event: object) -> int:
    """The time every window, watermark and generator uses for an event."""
    return event.occurred_at_ms  # type: ignore[attr-defined]
