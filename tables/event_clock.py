"""When an idle partition gets a tick, and at what event time (pure; wall time passed in).

Rule: the event clock on a worker reads max(H, E + (now - T)): H the highest watermark among
the partitions there, of every stream (clicks and orders share one time: a funnel waits for
both), (E, T) the last H that passed the clock and when the clock saw it.
A partition that is caught up and has received no record for `idle_s` gets a tick at the
clock, if that is ahead of its own watermark. A tick carries a reading that the clock has
passed by the time the tick is applied, so ticks never re-anchor it and their delay costs event
time nothing: once nothing newer arrives, event time runs at wall speed from the last
watermark that passed the clock (after a busy period, the period's end). So a quiet partition
follows busy siblings as fast as wall time or faster, and runs ahead of slower ones.

Bound, with timer rounds every p s and ticks applied d s after they are sent: at wall t each
watermark is at least E + (t - T_E) - (max(idle_s, p) + p + d), E the last event's time and
T_E its arrival (the worker calls `received` for events only, so an idle partition gets a tick
every round).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

K = TypeVar("K", bound=Hashable)  # a partition, or (stream, partition)


@dataclass
class EventClock:
    idle_s: float
    anchor_ms: int = -1  # E
    anchored_at: float = 0.0  # T (wall seconds)
    last_record_at: dict[Hashable, float] = field(default_factory=dict)  # -> wall seconds

    def received(self, partition: Hashable, now: float) -> None:
        self.last_record_at[partition] = now

    def reading(self, now: float) -> int:
        """E + (now - T) in ms; -1 while no event time is known."""
        if self.anchor_ms < 0:
            return -1
        return self.anchor_ms + int((now - self.anchored_at) * 1000)

    def due_ticks(
        self, watermarks: Mapping[K, int], caught_up: Mapping[K, bool], now: float
    ) -> dict[K, int]:
        """partition -> tick time (ms), for the partitions assigned here (`watermarks`)."""
        high = max(watermarks.values(), default=-1)
        if high > self.reading(now):
            self.anchor_ms, self.anchored_at = high, now
        clock_ms = self.reading(now)
        if clock_ms < 0:
            return {}  # no event time known yet
        due = {}
        for partition, watermark in watermarks.items():
            last = self.last_record_at.setdefault(partition, now)
            idle = now - last >= self.idle_s
            if idle and caught_up.get(partition, False) and clock_ms > watermark:
                due[partition] = clock_ms
        return due
