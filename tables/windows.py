"""Event-time tumbling windows: [start, start + size), closed once watermark >= end + grace;
and how long, in event time, an event_id is remembered for dedup."""

from __future__ import annotations

from dataclasses import dataclass

PAGE_VIEW_WINDOW_MS = 60_000
DEFAULT_GRACE_MS = 30_000
DEFAULT_DEDUP_HORIZON_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class WindowSpec:
    size_ms: int = PAGE_VIEW_WINDOW_MS
    grace_ms: int = DEFAULT_GRACE_MS
    dedup_horizon_ms: int = DEFAULT_DEDUP_HORIZON_MS  # how long (event time) an id is kept

    def start_of(self, time_ms: int) -> int:
        return time_ms - time_ms % self.size_ms

    def closes_at(self, start_ms: int) -> int:
        """The watermark at which the window [start, start + size) stops accepting events."""
        return start_ms + self.size_ms + self.grace_ms

    def is_closed(self, start_ms: int, watermark_ms: int) -> bool:
        return watermark_ms >= self.closes_at(start_ms)
