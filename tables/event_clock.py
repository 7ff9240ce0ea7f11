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

While the broker does not answer (the worker's probe, clickstream.health), event time stands
still: no tick is due, the reading stops at the last moment the broker answered, and once it
answers again the outage does not count as time passed, nor as quiet: each partition is idle
only `idle_s` after the broker came back. Producers hold their records while the broker is
away, so a quiet log then is no evidence of a quiet source (issue 16: ticks queued in a stall
made valid events late).

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
    stopped_at: float | None = None  # the broker's last answer, while it does not answer

    def received(self, partition: Hashable, now: float) -> None:
        self.last_record_at[partition] = now

    def broker_away(self, answered_at: float) -> None:
        """The broker has not answered since `answered_at`: event time stands still from then."""
        if self.stopped_at is None:
            self.stopped_at = answered_at

    def broker_back(self, now: float) -> None:
        if self.stopped_at is None:
            return
        self.anchored_at += now - self.stopped_at  # the outage is no time passed ...
        for partition in self.last_record_at:
            self.last_record_at[partition] = now  # ... and no quiet
        self.stopped_at = None

    def reading(self, now: float) -> int:
        """E + (now - T) in ms; -1 while no event time is known."""
        if self.anchor_ms < 0:
            return -1
        if self.stopped_at is not None:
            now = min(now, self.stopped_at)
        return self.anchor_ms + int((now - self.anchored_at) * 1000)

    def due_ticks(
        self, watermarks: Mapping[K, int], caught_up: Mapping[K, bool], now: float
    ) -> dict[K, int]:
        """partition -> tick time (ms), for the partitions assigned here (`watermarks`)."""
        if self.stopped_at is not None:
            return {}  # the broker is away: no evidence that anything is quiet
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
