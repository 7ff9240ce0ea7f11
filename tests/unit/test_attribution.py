"""Orders attributed to the entry referrer of their session (tables.attribution), through the
clicks processor and the runner (tests/unit/partition_rig.py), with event time as the only
clock: which session covers an order, when a pane's attribution is final (both watermarks),
sessions kept for lagging orders, facts forwarded twice, late facts."""

from __future__ import annotations

import orjson

from tables.attribution import NO_SESSION, retained_key
from tests.unit.partition_rig import GAP, MIN, ClicksRig, at, click, facts, tick


async def test_an_order_counts_for_its_sessions_entry_host_once_both_streams_passed_its_pane():
    p = ClicksRig()
    await p.apply([click(1_000, host="www.google.com"), click(50_000)])
    await p.apply([facts(40_000, ("o1", "u1", 40_000, "EUR", 1250))])
    step = await p.apply([click(5 * MIN)])  # clicks are past minute 0; the orders are not yet
    assert step.attributed == {}
    step = await p.apply([facts(5 * MIN)])  # now both are
    assert step.attributed == {(0, "attributed|www.google.com|EUR"): [1, 1250]}
    assert p.shown("attributed", 0) == {
        "www.google.com|EUR|orders": 1,
        "www.google.com|EUR|cents": 1250,
    }
    assert (await p.apply([tick(10 * MIN), facts(10 * MIN)])).attributed == {}  # once


async def test_the_orders_watermark_may_lead_the_clicks():
    p = ClicksRig()
    await p.apply([facts(5 * MIN, ("o1", "u1", 30_000, "USD", 500))])
    step = await p.apply([click(20_000, host="news.example")])
    assert step.attributed == {}  # the clicks have not passed minute 0
    step = await p.apply([click(2 * MIN)])
    assert step.attributed == {(0, "attributed|news.example|USD"): [1, 500]}


async def test_orders_outside_every_session_and_sessions_without_referrer():
    p = ClicksRig()
    await p.apply([click(10 * MIN, user="u1"), click(10 * MIN, user="u2", host="")])
    before_u1 = await p.apply([facts(11 * MIN, ("o1", "u1", 1 * MIN, "USD", 100))])
    assert before_u1.attributed == {(MIN, f"attributed|{NO_SESSION}|USD"): [1, 100]}
    await p.apply([facts(12 * MIN, ("o2", "u2", 10 * MIN + 5, "USD", 200))])
    step = await p.apply([click(30 * MIN, user="u3"), facts(30 * MIN)])
    assert step.attributed == {(10 * MIN, "attributed|(direct)|USD"): [1, 200]}


async def test_an_order_just_before_a_session_expires_still_counts_for_it():
    p = ClicksRig()
    await p.apply([click(0, host="a.example")])
    late_in_gap = GAP - 1  # the session covers [0, 0 + gap)
    await p.apply([facts(3 * MIN, ("o1", "u1", late_in_gap, "USD", 100))])
    step = await p.apply([click(10 * MIN, user="u9"), facts(10 * MIN)])
    assert step.attributed == {(MIN, "attributed|a.example|USD"): [1, 100]}


async def test_a_session_closed_while_orders_lag_is_kept_until_they_pass_it():
    p = ClicksRig()
    await p.apply([click(1_000, host="a.example")])
    step = await p.apply([tick(20 * MIN)])  # the session closes; orders are still at nothing
    assert len(step.sessions) == 1 and retained_key(0, "u1") in p.state()
    step = await p.apply([facts(20 * MIN, ("o1", "u1", 30_000, "USD", 700))])
    assert step.attributed == {(0, "attributed|a.example|USD"): [1, 700]}
    assert retained_key(0, "u1") not in p.state()


async def test_facts_forwarded_twice_count_once():
    p = ClicksRig()
    await p.apply([click(1_000, host="a.example")])
    order = ("o1", "u1", 2_000, "USD", 100)
    await p.apply([facts(2_000, order)])
    await p.apply([facts(2_000, order)])  # the orders side redid its batch
    step = await p.apply([tick(5 * MIN), facts(5 * MIN)])
    assert step.attributed == {(0, "attributed|a.example|USD"): [1, 100]}


async def test_facts_after_their_panes_attribution_closed_are_late_not_merged():
    p = ClicksRig()
    await p.apply([click(1_000), tick(5 * MIN), facts(5 * MIN)])
    step = await p.apply([facts(5 * MIN, ("o1", "u1", 2_000, "USD", 100))])
    assert step.progress.late_orders == 1 and step.late_orders == ["o1"]
    assert step.attributed == {}


async def test_a_late_orders_id_is_its_own_records_however_its_facts_were_batched():
    p = ClicksRig()
    await p.apply([click(1_000), tick(5 * MIN), facts(5 * MIN)])
    await p.apply([facts(5 * MIN, ("o1", "u1", 2_000, "USD", 100, 41))])
    await p.apply([facts(5 * MIN, ("o2", "u1", 2_000, "USD", 100))])  # facts of old: no offset
    late = [orjson.loads(r.value) for r in p.driver.outputs("late_events")]
    facts_topic = p.topics.order_facts.name
    assert [(e["id"], e["source"]["topic"]) for e in late] == [
        ("orders/0/41", "orders"),
        (f"{facts_topic}/0/2/o2", facts_topic),
    ]


async def test_order_facts_are_counted_as_such_never_as_clicks():
    p = ClicksRig()
    step = await p.apply([facts(1_000, ("o1", "u1", 1_000, "USD", 100)), click(1_000)])
    assert step.progress.order_facts == 1 and step.progress.accepted == 1
    assert step.progress.watermark_ms == at(1_000)  # facts do not move the clicks watermark
