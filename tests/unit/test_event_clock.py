"""Idle partitions: when a tick is due and at what event time, with a controllable wall clock."""

from __future__ import annotations

from tables.event_clock import EventClock

ALL_CAUGHT_UP = {0: True, 1: True}


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


def test_when_everything_is_quiet_event_time_runs_on_at_wall_clock_speed():
    clock = EventClock(idle_s=10)
    clock.received(0, now=0)
    clock.received(1, now=0)
    clock.due_ticks({0: 60_000, 1: 60_000}, ALL_CAUGHT_UP, now=0)
    assert clock.due_ticks({0: 60_000, 1: 60_000}, ALL_CAUGHT_UP, now=25) == {
        0: 85_000,
        1: 85_000,
    }


def test_a_partition_that_is_behind_gets_no_tick():
    clock = EventClock(idle_s=10)
    clock.received(0, now=0)
    clock.received(1, now=0)
    clock.due_ticks({0: 60_000, 1: 1_000}, {0: True, 1: False}, now=0)
    due = clock.due_ticks({0: 60_000, 1: 1_000}, {0: True, 1: False}, now=30)
    assert due == {0: 90_000}  # 1 still has records to read: its own events will move it


def test_a_tick_resets_idleness_like_any_record():
    clock = EventClock(idle_s=10)
    clock.received(0, now=0)
    clock.due_ticks({0: 1_000}, {0: True}, now=0)
    assert clock.due_ticks({0: 1_000}, {0: True}, now=11) == {0: 12_000}
    clock.received(0, now=11.5)  # the tick itself arrives
    assert clock.due_ticks({0: 12_000}, {0: True}, now=15) == {}
