"""Orders attributed to the entry referrer of their session (tables.attribution), through
apply_batch of a clicks partition, with event time as the only clock: which session covers an
order, when a pane's attribution is final (both watermarks), sessions kept for lagging orders,
facts forwarded twice, late facts."""

from __future__ import annotations

from tables.attribution import NO_SESSION, OrderFacts, retained_key
from tables.window_state import Tick
from tests.unit.partition_rig import GAP, MIN, Partition, click


def facts(offset: int, watermark_ms: int, *orders: tuple) -> OrderFacts:
    """orders: (order id, user, time, currency, cents)."""
    return OrderFacts(offset, [tuple(o) for o in orders], watermark_ms)  # type: ignore[misc]


def attributed(out) -> dict:
    return {(a.start_ms, d): v for a in out.attributions for d, v in a.counts.items()}


def test_an_order_counts_for_its_sessions_entry_host_once_both_streams_passed_its_pane():
    p = Partition()
    p.apply([click(0, 1_000, host="www.google.com"), click(1, 50_000)])
    p.apply([facts(2, 40_000, ("o1", "u1", 40_000, "EUR", 1250))])
    out = p.apply([click(3, 5 * MIN)])  # clicks are past minute 0; the orders are not yet
    assert out.attributions == []
    out = p.apply([facts(4, 5 * MIN)])  # now both are
    assert attributed(out) == {(0, "attributed|www.google.com|EUR"): [1, 1250]}
    assert p.apply([Tick(5, 10 * MIN), facts(6, 10 * MIN)]).attributions == []  # once


def test_the_orders_watermark_may_lead_the_clicks():
    p = Partition()
    p.apply([facts(0, 5 * MIN, ("o1", "u1", 30_000, "USD", 500))])
    out = p.apply([click(1, 20_000, host="news.example")])
    assert out.attributions == []  # the clicks have not passed minute 0
    out = p.apply([click(2, 2 * MIN)])
    assert attributed(out) == {(0, "attributed|news.example|USD"): [1, 500]}


def test_orders_outside_every_session_and_sessions_without_referrer():
    p = Partition()
    p.apply([click(0, 10 * MIN, user="u1"), click(1, 10 * MIN, user="u2", host="")])
    before_u1 = p.apply([facts(2, 11 * MIN, ("o1", "u1", 1 * MIN, "USD", 100))])
    assert attributed(before_u1) == {(MIN, f"attributed|{NO_SESSION}|USD"): [1, 100]}
    p.apply([facts(3, 12 * MIN, ("o2", "u2", 10 * MIN + 5, "USD", 200))])
    out = p.apply([click(4, 30 * MIN, user="u3"), facts(5, 30 * MIN)])
    assert attributed(out) == {(10 * MIN, "attributed|(direct)|USD"): [1, 200]}


def test_an_order_just_before_a_session_expires_still_counts_for_it():
    p = Partition()
    p.apply([click(0, 0, host="a.example")])
    late_in_gap = GAP - 1  # the session covers [0, 0 + gap)
    p.apply([facts(1, 3 * MIN, ("o1", "u1", late_in_gap, "USD", 100))])
    out = p.apply([click(2, 10 * MIN, user="u9"), facts(3, 10 * MIN)])
    assert attributed(out) == {(MIN, "attributed|a.example|USD"): [1, 100]}


def test_a_session_closed_while_orders_lag_is_kept_until_they_pass_it():
    p = Partition()
    p.apply([click(0, 1_000, host="a.example")])
    out = p.apply([Tick(1, 20 * MIN)])  # the session closes; orders are still at nothing
    assert len(out.sessions) == 1 and retained_key(0, "u1") in p.store
    out = p.apply([facts(2, 20 * MIN, ("o1", "u1", 30_000, "USD", 700))])
    assert attributed(out) == {(0, "attributed|a.example|USD"): [1, 700]}
    assert retained_key(0, "u1") not in p.store


def test_facts_forwarded_twice_count_once():
    p = Partition()
    p.apply([click(0, 1_000, host="a.example")])
    order = ("o1", "u1", 2_000, "USD", 100)
    p.apply([facts(1, 2_000, order)])
    p.apply([facts(2, 2_000, order)])  # the orders side redid its batch
    out = p.apply([Tick(3, 5 * MIN), facts(4, 5 * MIN)])
    assert attributed(out) == {(0, "attributed|a.example|USD"): [1, 100]}


def test_facts_after_their_panes_attribution_closed_are_late_not_merged():
    p = Partition()
    p.apply([click(0, 1_000), Tick(1, 5 * MIN), facts(2, 5 * MIN)])
    out = p.apply([facts(3, 5 * MIN, ("o1", "u1", 2_000, "USD", 100))])
    assert out.progress.late_orders == 1 and [o.event_id for o in out.late_orders] == ["o1"]
    assert out.attributions == []


def test_order_facts_are_counted_as_such_never_as_clicks():
    p = Partition()
    out = p.apply([facts(0, 1_000, ("o1", "u1", 1_000, "USD", 100)), click(1, 1_000)])
    assert out.progress.order_facts == 1 and out.progress.accepted == 1
    assert out.progress.watermark_ms == 1_000  # facts do not move the clicks watermark
