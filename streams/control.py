"""Control records (ticks, order facts) move event time, so they are trusted like events.

Rule: a control record is taken only when it was written by the app that owns its log (`by` =
that app id: this app for order facts, CLICKSTREAM_CLOCK_APP_ID's for ticks) and none of its
times is later than its Kafka record's timestamp plus the future skew, the bound every event
obeys (streams.validation). Anything else is a dead letter: `foreign_<kind>` when another app
wrote it, `bad_<kind>` when its times run ahead of its record. Judged against the record's own
timestamp, so a replay gives the same verdict."""

from __future__ import annotations

from streams.eventtime import format_timestamp


def control_verdict(
    kind: str, by: str, latest_ms: int, app_id: str, log_time_ms: int, max_skew_ms: int
) -> tuple[str, str] | None:
    """(reason, detail) when the control record of `kind` must not be taken, else None.
    `latest_ms`: the latest event time it claims."""
    if by != app_id:
        return f"foreign_{kind}", f"written by app {by[:100]!r}, not by this app ({app_id!r})"
    if latest_ms > log_time_ms + max_skew_ms:
        return (
            f"bad_{kind}",
            f"its time {_text(latest_ms)} is more than {max_skew_ms // 1000} s after its record's "
            f"timestamp {_text(log_time_ms)} (CLICKSTREAM_MAX_FUTURE_SKEW_SECONDS)",
        )
    return None


def _text(time_ms: int) -> str:
    try:
        return format_timestamp(time_ms)
    except (ValueError, OverflowError, OSError):
        return f"{time_ms} ms"
