"""Idle partitions: when a tick is due and at what event time, with a controllable wall clock;
and the worker's tick loop simulated on a virtual wall clock, to bound how far behind wall time
event time falls once everything is quiet."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tables.event_clock import EventClock

ALL_CAUGHT_UP = {0: True, 1: True}
START_MS = 1_767_225_600_000


def test_no_tick_before_any_event_time_is_known():
    clock = EventClock(idle_s=10)
    assert clock.due_ticks({0: -1, 1: -1}, ALL_CAUGHT_UP, now=100) == {}


def test_a_quiet_partition_follows_its_busy_sibling():
    clock = EventClock(idle_s=10)
    clock.received(0, now=0)
    clock.received(1, now=0)
    assert clock.due_ticks({0: 50_000, 1: 20_000}, ALL_CAUGHT_UP, now=5) == {}  # not idle yet
    clock.received(0, now=12)  # partition 0 keeps receiving, 1 stays quiet
    due = clock.due_ticks({0: 62_000, 1: 20_000}, ALL_CAUGHT_UP, now=12)
    assert due == {1: 62_000}


def test_event_time_stands_still_while_the_broker_is_away():
    clock = EventClock(idle_s=1)
    clock.received(0, now=0)
    clock.received(1, now=0)
    clock.due_ticks({0: 60_000, 1: 60_000}, ALL_CAUGHT_UP, now=0)
    clock.broker_away(answered_at=3)  # the probe last had an answer at 3 s
    assert clock.due_ticks({0: 60_000, 1: 60_000}, ALL_CAUGHT_UP, now=10) == {}
    assert clock.reading(now=10) == 63_000
    clock.broker_back(now=20)
    # the outage counts neither as time passed nor as quiet: idle again 1 s after the return
    assert clock.due_ticks({0: 60_000, 1: 60_000}, ALL_CAUGHT_UP, now=20.5) == {}
    assert clock.due_ticks({0: 60_000, 1: 60_000}, ALL_CAUGHT_UP, now=21) == {
        0: 64_000,
        1: 64_000,
    }


def test_when_everything_is_quiet_event_time_runs_on_at_wall_clock_speed():
    clock = EventClock(idle_s=10)
    clock.received(0, now=0)
    clock.received(1, now=0)
    clock.due_ticks({0: 60_000, 1: 60_000}, ALL_CAUGHT_UP, now=0)
    assert clock.due_ticks({0: 60_000, 1: 60_000}, ALL_CAUGHT_UP, now=25) == {
        0: 85_000,
        1: 85_000,
    }


def test_a_tick_applied_late_does_not_hold_the_clock_back():
    clock = EventClock(idle_s=10)
    clock.received(0, now=0)
    clock.due_ticks({0: 60_000}, {0: True}, now=0)
    assert clock.due_ticks({0: 60_000}, {0: True}, now=11) == {0: 71_000}
    # the tick is applied a second later: the watermark it sets is behind the clock by then
    clock.received(0, now=12)
    assert clock.due_ticks({0: 71_000}, {0: True}, now=23) == {0: 83_000}  # not 82_000


def test_a_watermark_that_passes_the_clock_anchors_it():
    clock = EventClock(idle_s=10)
    clock.received(0, now=0)
    clock.due_ticks({0: 60_000, 1: 60_000}, ALL_CAUGHT_UP, now=0)
    # a backfill: event time runs 60x faster than wall time while it lasts
    clock.received(0, now=5)
    clock.due_ticks({0: 360_000, 1: 60_000}, ALL_CAUGHT_UP, now=5)
    assert clock.reading(now=5) == 360_000
    assert clock.due_ticks({0: 360_000, 1: 60_000}, ALL_CAUGHT_UP, now=20) == {
        0: 375_000,
        1: 375_000,
    }


def test_behind_a_sibling_slower_than_wall_time_the_clock_still_runs_at_wall_speed():
    clock = EventClock(idle_s=10)
    clock.received(0, now=0)
    clock.due_ticks({0: 60_000, 1: 60_000}, ALL_CAUGHT_UP, now=0)
    clock.received(0, now=20)  # partition 0 busy, at half wall speed; 1 quiet
    assert clock.due_ticks({0: 70_000, 1: 60_000}, ALL_CAUGHT_UP, now=20) == {1: 80_000}


def test_a_partition_that_is_behind_gets_no_tick():
    clock = EventClock(idle_s=10)
    clock.received(0, now=0)
    clock.received(1, now=0)
    clock.due_ticks({0: 60_000, 1: 1_000}, {0: True, 1: False}, now=0)
    due = clock.due_ticks({0: 60_000, 1: 1_000}, {0: True, 1: False}, now=30)
    assert due == {0: 90_000}  # 1 still has records to read: its own events will move it


def test_a_record_of_any_kind_resets_idleness():
    clock = EventClock(idle_s=10)
    clock.received(0, now=0)
    clock.due_ticks({0: 1_000}, {0: True}, now=0)
    assert clock.due_ticks({0: 1_000}, {0: True}, now=11) == {0: 12_000}
    clock.received(0, now=11.5)  # e.g. the tick itself arrives (agents/windowed.py counts it)
    assert clock.due_ticks({0: 12_000}, {0: True}, now=15) == {}


# The worker's loop, simulated: events and ticks arriving, and the timer's rounds.


@dataclass(frozen=True)
class Arrival:
    at: float  # wall seconds
    partition: int
    time_ms: int  # event time


@dataclass(frozen=True)
class Loop:
    """agents/windowed.py around one EventClock: `received` for each batch of events (and of
    ticks, if `ticks_are_activity`), the timer of clickstream/app.py every `period` asking for
    due ticks, each applied to its partition `delay` s after it was sent (produce, fetch)."""

    idle_s: float
    delay: float
    ticks_are_activity: bool
    partitions: int = 4

    @property
    def period(self) -> float:
        return max(self.idle_s / 2, 0.5)  # clickstream/app.py's tick timer

    def run(self, arrivals: list[Arrival], until: float) -> list[tuple[float, dict[int, int]]]:
        """(wall time, every partition's watermark) every 10 ms of virtual wall time."""
        clock = EventClock(self.idle_s)
        watermarks = dict.fromkeys(range(self.partitions), -1)
        in_flight: list[tuple[float, int, int]] = []  # (applied at, partition, tick ms)
        pending = sorted(arrivals, key=lambda a: a.at)
        next_round = 0.013  # the timer's phase: not in step with anything else
        samples = []
        for step in range(round(until * 100) + 1):
            now = step / 100
            while pending and pending[0].at <= now:
                event = pending.pop(0)
                watermarks[event.partition] = max(watermarks[event.partition], event.time_ms)
                clock.received(event.partition, now)
            for tick in [t for t in in_flight if t[0] <= now]:
                in_flight.remove(tick)
                _, partition, tick_ms = tick
                watermarks[partition] = max(watermarks[partition], tick_ms)
                if self.ticks_are_activity:
                    clock.received(partition, now)
            if now >= next_round:
                all_caught_up = dict.fromkeys(watermarks, True)
                due = clock.due_ticks(dict(watermarks), all_caught_up, now)
                in_flight += [(now + self.delay, p, tick_ms) for p, tick_ms in due.items()]
                next_round += self.period
            samples.append((now, dict(watermarks)))
        return samples


def backfill(seconds: float, speed: float, partitions: int = 4) -> list[Arrival]:
    """A busy import: every 50 ms a fetch with events on every partition, event time running
    `speed` times faster than wall time."""
    return [
        Arrival(k * 0.05, p, START_MS + round(k * 0.05 * speed * 1000))
        for k in range(round(seconds / 0.05) + 1)
        for p in range(partitions)
    ]


def lags_behind_wall_speed(
    samples: list[tuple[float, dict[int, int]]], arrivals: list[Arrival]
) -> list[float]:
    """Seconds each partition's watermark is behind E + (t - T) at each wall time t >= T, for
    the last event at wall T with event time E (the highest)."""
    last = max(arrivals, key=lambda a: a.time_ms)
    return [
        (last.time_ms + (now - last.at) * 1000 - watermark) / 1000
        for now, watermarks in samples
        if now >= last.at
        for watermark in watermarks.values()
    ]


@pytest.mark.parametrize("idle_s", [2, 5])
@pytest.mark.parametrize("delay", [0.05, 0.4, 1.2])
def test_after_a_backfill_every_watermark_runs_at_wall_speed_within_idle_round_and_delay(
    idle_s, delay
):
    loop = Loop(idle_s, delay, ticks_are_activity=False)
    arrivals = backfill(seconds=30, speed=20)  # 10 minutes of event time in 30 s
    lags = lags_behind_wall_speed(loop.run(arrivals, until=30 + 120), arrivals)
    assert min(lags) >= 0  # never ahead of the last event plus the wall time since
    assert max(lags) <= max(idle_s, loop.period) + loop.period + delay


@pytest.mark.parametrize("idle_s", [2, 5])
@pytest.mark.parametrize("delay", [0.05, 0.4, 1.2])
def test_ticks_counted_as_records_sample_the_clock_less_often_but_lose_no_time(idle_s, delay):
    loop = Loop(idle_s, delay, ticks_are_activity=True)  # agents/windowed.py as it is
    arrivals = backfill(seconds=30, speed=20)
    lags = lags_behind_wall_speed(loop.run(arrivals, until=30 + 120), arrivals)
    assert min(lags) >= 0
    assert max(lags) <= idle_s + 2 * loop.period + 2 * delay  # bounded: no drift over 2 min


def test_when_the_last_event_arrives_on_a_round_only_idle_and_delay_are_lost():
    loop = Loop(idle_s=2, delay=0.1, ticks_are_activity=False)
    arrivals = [Arrival(0.01, p, START_MS) for p in range(4)]  # just before the first round
    lags = lags_behind_wall_speed(loop.run(arrivals, until=60), arrivals)
    assert max(lags) <= 2 + loop.period + 0.1
    assert max(lags[len(lags) // 2 :]) <= loop.period + 0.1 + 0.02  # then one tick a round
