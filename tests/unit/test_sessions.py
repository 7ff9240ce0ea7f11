"""Session windows with event time as the only clock: gaps, bridging clicks, closing, the pane a
session counts in, ticks, late clicks, restarts and cut-short flushes."""

from __future__ import annotations

import random

from tables.sessions import Visit, absorb
from tables.window_state import SESSIONS_ENDED, Tick, user_key
from tests.unit.partition_rig import GAP, MIN, Partition, click


def summaries(out):
    return [(s.user, s.start_ms, s.end_ms, s.clicks, s.page_views, s.entry_host) for s in out]


def test_clicks_closer_than_the_gap_are_one_session_and_further_apart_two():
    visit = Visit("u", True, "")
    sessions = absorb([], 0, visit, GAP)
    sessions = absorb(sessions, GAP - 1, visit, GAP)
    assert [s[:3] for s in sessions] == [[0, GAP - 1, 2]]
    sessions = absorb(sessions, 2 * GAP - 1, visit, GAP)  # exactly a gap after the last
    assert [s[:3] for s in sessions] == [[0, GAP - 1, 2], [2 * GAP - 1, 2 * GAP - 1, 1]]


def test_a_click_between_two_sessions_bridges_them_and_the_earlier_entry_wins():
    sessions = absorb([], 0, Visit("u", True, "a.example"), GAP)
    sessions = absorb(sessions, 200_000, Visit("u", False, "b.example"), GAP)
    assert len(sessions) == 2
    sessions = absorb(sessions, 100_000, Visit("u", True, ""), GAP)
    assert sessions == [[0, 200_000, 3, 2, "a.example"]]


def test_a_session_closes_once_no_on_time_click_can_reach_it_and_counts_where_it_expired():
    p = Partition()
    p.apply([click(0, 10_000, host="a.example"), click(1, 50_000, view=False)])
    # end + gap - 1 = 169_999 lies in pane 120_000, which closes at watermark 190_000
    assert p.apply([click(2, 189_999, user="other")]).sessions == []
    out = p.apply([click(3, 190_000, user="other")])
    assert summaries(out.sessions) == [("u1", 10_000, 50_000, 2, 1, "a.example")]
    assert out.sessions[0].ended_in_ms == 120_000  # the pane holding 50_000 + GAP
    assert p.ended(120_000) == [1, 0, 40_000]
    assert p.get(user_key(0, "u1")) is None  # closed sessions leave no state
    assert out.progress.open_sessions == 1  # "other"


def test_the_expiry_pane_is_still_open_when_its_sessions_close():
    p = Partition()
    p.apply([click(0, 0)])  # expires at 120_000, the first instant of pane 120_000
    out = p.apply([Tick(1, 10 * MIN)])
    tumbling = {w.start_ms: w.counts for w in out.closed}
    assert tumbling[120_000] == {SESSIONS_ENDED: [1, 1, 0]}  # a bounce, in that pane's result


def test_a_tick_closes_sessions_of_a_quiet_partition_and_a_late_click_touches_none():
    p = Partition()
    p.apply([click(0, 1_000)])
    out = p.apply([Tick(1, 30 * MIN), click(2, 1_500)])  # click 2 is late: its pane closed
    assert summaries(out.sessions) == [("u1", 1_000, 1_000, 1, 1, "")]
    assert out.progress.late == 1 and out.progress.open_sessions == 0


def test_sessions_do_not_depend_on_batching_restarts_or_cut_short_flushes():
    rng = random.Random(11)
    users = [f"u{i}" for i in range(6)]
    times = sorted(rng.randrange(0, 40 * MIN) for _ in range(400))
    events = [
        click(i, t + rng.choice([0, 0, -20_000, -65_000]), rng.choice(users), rng.choice("xy"))
        for i, t in enumerate(times)
    ] + [Tick(400, 120 * MIN)]

    def run(chaos: bool):
        p, found, results, i = Partition(), set(), {}, 0
        while i < len(events):
            size = rng.randint(1, 30) if chaos else 1
            batch = events[i : i + size]
            if chaos and rng.random() < 0.2:  # crash mid-flush: the batch is redelivered
                cut = p.apply(batch, land=rng.randint(0, 5))
                found.update(summaries(cut.sessions))  # emitted before the crash
            out = p.apply(batch)
            found.update(summaries(out.sessions))
            results.update((w.start_ms, w.counts.get(SESSIONS_ENDED)) for w in out.closed)
            i += size
            if chaos and rng.random() < 0.1:
                p.restart()
        return found, results

    steady = run(chaos=False)
    assert run(chaos=True) == steady
    sessions, results = steady
    assert sum(r[0] for r in results.values() if r) == len(sessions) > 20
