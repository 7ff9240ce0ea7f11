"""When an idle partition gets a tick, and at what event time (pure; wall time passed in).

Rule: a stream's event clock on a worker is E + (now - T), where E is the highest watermark
among its partitions there and T the wall time E was first seen: event time runs on at
wall-clock speed once nothing newer arrives. A partition that is caught up and has received
no record for `idle_s` gets a tick at the event clock, if that is ahead of its own watermark.
So a quiet partition follows its busy siblings, and when all are quiet, windows still close
about grace + idle_s after the last event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass
class EventClock:
    idle_s: float
    high_ms: int = -1  # E
    high_seen_at: float = 0.0  # T (wall seconds)
    last_record_at: dict[int, float] = field(default_factory=dict)  # partition -> wall seconds

    def received(self, partition: int, now: float) -> None:
        self.last_record_at[partition] = now

    def due_ticks(
        self, watermarks: Mapping[int, int], caught_up: Mapping[int, bool], now: float
    ) -> dict[int, int]:
        """partition -> tick time (ms), for the partitions assigned here (`watermarks`)."""
        high = max(watermarks.values(), default=-1)
        if high > self.high_ms:
            self.high_ms, self.high_seen_at = high, now
        if self.high_ms < 0:
            return {}  # no event time known yet
        clock_ms = self.high_ms + int((now - self.high_seen_at) * 1000)
        due = {}
        for partition, watermark in watermarks.items():
            last = self.last_record_at.setdefault(partition, now)
            idle = now - last >= self.idle_s
            if idle and caught_up.get(partition, False) and clock_ms > watermark:
                due[partition] = clock_ms
        return due
