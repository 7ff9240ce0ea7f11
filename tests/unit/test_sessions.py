"""Session windows with event time as the only clock: gaps, bridging clicks, closing, the pane a
session counts in, ticks, late clicks, and sessions that come out the same whatever the
batching, crashes, cut-short commits and rebalances (the clicks processor through the runner,
tests/unit/partition_rig.py)."""

from __future__ import annotations

import random

import orjson
import pytest

from agents.window_results import counts_of
from tables.sessions import Visit, absorb
from tables.user_sessions import SESSIONS_ENDED, user_key
from tests.unit.partition_rig import GAP, MIN, ClicksRig, Summary, chaotic, click, steady, tick


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


async def test_a_session_closes_once_no_on_time_click_can_reach_it_and_counts_where_it_expired():
    p = ClicksRig()
    await p.apply([click(10_000, host="a.example"), click(50_000, view=False)])
    # end + gap - 1 = 169_999 lies in pane 120_000, which closes at watermark 190_000
    assert (await p.apply([click(189_999, user="other")])).sessions == []
    step = await p.apply([click(190_000, user="other")])
    # it counts in the pane holding 50_000 + GAP
    assert step.sessions == [Summary("u1", 10_000, 50_000, 2, 1, "a.example", 120_000)]
    assert p.ended(120_000) == [1, 0, 40_000]
    assert p.shown("sessions", 120_000) == {
        "ended|sessions": 1,
        "ended|bounces": 0,
        "ended|duration_ms": 40_000,
    }
    assert user_key(0, "u1") not in p.state()  # closed sessions leave no state
    assert step.progress.open_sessions == 1  # "other"


async def test_the_expiry_pane_is_still_open_when_its_sessions_close():
    p = ClicksRig()
    await p.apply([click(0)])  # expires at 120_000, the first instant of pane 120_000
    step = await p.apply([tick(10 * MIN)])
    assert step.tumbling[120_000] == {SESSIONS_ENDED: [1, 1, 0]}  # a bounce, in its result


async def test_a_tick_closes_sessions_of_a_quiet_partition_and_a_late_click_touches_none():
    p = ClicksRig()
    await p.apply([click(1_000)])
    step = await p.apply([tick(30 * MIN), click(1_500)])  # the click is late: its pane closed
    assert step.sessions == [Summary("u1", 1_000, 1_000, 1, 1, "", 120_000)]
    assert step.late == ["c0.1"]
    assert step.progress.late == 1 and step.progress.open_sessions == 0


@pytest.mark.parametrize("seed", range(3))
async def test_sessions_do_not_depend_on_batching_crashes_cut_short_commits_or_rebalances(seed):
    rng = random.Random(seed)
    users = [f"u{i}" for i in range(6)]
    times = sorted(rng.randrange(0, 40 * MIN) for _ in range(400))
    inputs = [
        click(t + rng.choice([0, 0, -20_000, -65_000]), rng.choice(users), rng.choice("xy"))
        for t in times
    ]
    inputs.append(tick(120 * MIN))
    expected = await steady(inputs)
    ended = [
        counts_of(orjson.loads(raw)).get(SESSIONS_ENDED, [0])[0]
        for raw in expected.results.values()
    ]
    assert sum(ended) == len(expected.sessions) > 20
    for _ in range(3):
        assert await chaotic(inputs, rng) == expected
