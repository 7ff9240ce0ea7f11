"""The simulated traffic: deterministic, valid where it should be, broken exactly as labelled."""

from __future__ import annotations

import itertools
import random
from collections import Counter, defaultdict
from dataclasses import replace

import orjson
import pytest

from generator.simulate import Emission, GeneratorConfig, simulate
from streams.records import ClickEvent, ClickType, OrderCreated
from streams.validation import InvalidEvent, Limits, parse_click, parse_order

Event = tuple[Emission, ClickEvent | OrderCreated]  # an emission and what validation made of it
ALL_REASONS = {
    "malformed_json",
    "not_an_object",
    "wrong_type",
    "missing_field",
    "oversized",
    "bad_timestamp",
    "unknown_schema_version",
}


def make_config(**overrides: object) -> GeneratorConfig:
    return replace(GeneratorConfig(seed=7, count=5_000), **overrides)  # type: ignore[arg-type]


def emissions_of(**overrides: object) -> list[Emission]:
    return list(simulate(make_config(**overrides)))


def parse(emission: Emission) -> ClickEvent | OrderCreated:
    parser = parse_click if emission.stream == "clicks" else parse_order
    return parser(emission.value, emission.emit_at_ms)


def well_formed(emissions: list[Emission]) -> list[Event]:
    return [(e, parse(e)) for e in emissions if e.label["fault"] != "malformed"]


def first_copies(emissions: list[Emission]) -> list[Emission]:
    """One emission per event: no duplicates, no malformed neighbours."""
    return [e for e in emissions if e.label["fault"] not in ("duplicate", "malformed")]


def of_scenario(events: list[Event], scenario: str | None) -> list[Event]:
    return [(e, r) for e, r in events if e.label["scenario"] == scenario]


def clicks_by_session(events: list[Event]) -> dict[str, list[ClickEvent]]:
    """Each session's clicks in the order they occurred."""
    sessions: dict[str, list[ClickEvent]] = defaultdict(list)
    for _, record in events:
        if isinstance(record, ClickEvent):
            sessions[record.session_id].append(record)
    for clicks in sessions.values():
        clicks.sort(key=lambda click: click.occurred_at_ms)
    return sessions


def orders_of(events: list[Event]) -> list[OrderCreated]:
    """Orders in the current shape (legacy ones carry no items, payment or device)."""
    return [r for e, r in events if isinstance(r, OrderCreated) and e.label["fault"] != "legacy"]


def share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


@pytest.fixture(scope="module")
def faulty_stream() -> list[Emission]:
    """20k emissions with every fault and fraud made common, so shares can be measured."""
    return emissions_of(
        count=20_000,
        duplicate_rate=0.05,
        out_of_order_rate=0.1,
        late_rate=0.05,
        late_by_ms=(1_000, 2_000),  # short, so the cut at `count` hides almost no late event
        malformed_rate=0.05,
        legacy_order_rate=0.3,
        fraud_rate=0.1,
    )


@pytest.fixture(scope="module")
def shop_events() -> list[Event]:
    """Each event of 20k emissions once, parsed. Nothing is delayed, so every event sent before
    the cut at `count` arrives together with everything that happened before it."""
    sent = emissions_of(count=20_000, out_of_order_rate=0.0, late_rate=0.0, fraud_rate=0.2)
    return well_formed(first_copies(sent))


def test_same_seed_gives_byte_identical_emissions() -> None:
    assert emissions_of(count=3_000) == emissions_of(count=3_000)


def test_different_seeds_give_different_emissions() -> None:
    first, second = emissions_of(seed=1, count=500), emissions_of(seed=2, count=500)
    assert [e.value for e in first] != [e.value for e in second]


def test_global_random_state_is_neither_used_nor_changed() -> None:
    random.seed(1)
    state = random.getstate()
    first = emissions_of(count=1_000)
    assert random.getstate() == state
    random.seed(2)
    assert emissions_of(count=1_000) == first


def test_emissions_come_out_in_send_time_order(faulty_stream: list[Emission]) -> None:
    times = [e.emit_at_ms for e in faulty_stream]
    assert times == sorted(times)


def test_count_bounds_the_number_of_emissions() -> None:
    assert len(emissions_of(count=1_234)) == 1_234


def test_duration_bounds_the_send_time() -> None:
    config = make_config(count=None, duration_s=30.0)
    sent = list(simulate(config))
    assert sent and all(config.start_ms <= e.emit_at_ms < config.start_ms + 30_000 for e in sent)


def test_rate_sets_records_per_simulated_second() -> None:
    sent = emissions_of(count=None, duration_s=1_200.0, events_per_second=10.0)
    assert len(sent) / 1_200 == pytest.approx(10.0, rel=0.15)


def test_diurnal_traffic_peaks_in_the_evening_and_dips_in_the_morning() -> None:
    midnight_ms = GeneratorConfig().start_ms

    def sent_in_ten_minutes_from(hour: int) -> int:
        start_ms = midnight_ms + hour * 3_600_000
        config = make_config(
            count=None, start_ms=start_ms, duration_s=600.0, events_per_second=10.0, diurnal=True
        )
        return sum(1 for _ in simulate(config))

    assert sent_in_ten_minutes_from(20) > 2 * sent_in_ten_minutes_from(8)


def test_keys_are_the_user_id_of_the_event(faulty_stream: list[Emission]) -> None:
    for emission, record in well_formed(faulty_stream):
        assert emission.key == record.user_id.encode()


def test_every_well_formed_emission_passes_validation_as_labelled(
    faulty_stream: list[Emission],
) -> None:
    for emission, record in well_formed(faulty_stream):
        assert record.event_id == emission.label["event_id"]
        assert record.occurred_at_ms == emission.label["occurred_at_ms"]
        assert emission.emit_at_ms - record.occurred_at_ms == emission.label["delay_ms"]
        assert isinstance(record, ClickEvent if emission.stream == "clicks" else OrderCreated)


def test_legacy_orders_are_v1_payloads_that_get_upcast(faulty_stream: list[Emission]) -> None:
    legacy = [(e, r) for e, r in well_formed(faulty_stream) if e.label["fault"] == "legacy"]
    assert legacy
    for emission, order in legacy:
        assert b'"orderId"' in emission.value
        assert isinstance(order, OrderCreated) and order.upcast_from == 1


def test_current_orders_are_not_upcast(faulty_stream: list[Emission]) -> None:
    for emission, record in well_formed(faulty_stream):
        if emission.stream == "orders" and emission.label["fault"] is None:
            assert isinstance(record, OrderCreated) and record.upcast_from is None


def test_every_malformed_emission_is_rejected_with_its_labelled_reason(
    faulty_stream: list[Emission],
) -> None:
    malformed = [e for e in faulty_stream if e.label["fault"] == "malformed"]
    for emission in malformed:
        with pytest.raises(InvalidEvent) as rejected:
            parse(emission)
        assert rejected.value.reason == emission.label["expected_reason"]
    assert {e.label["expected_reason"] for e in malformed} == ALL_REASONS


def test_malformed_payloads_are_utf8_text(faulty_stream: list[Emission]) -> None:
    for emission in faulty_stream:
        if emission.label["fault"] == "malformed":
            emission.value.decode("utf-8")


def test_oversized_payloads_exceed_the_configured_size_limit() -> None:
    sent = emissions_of(count=2_000, malformed_rate=0.5, max_event_bytes=10_000)
    oversized = [e for e in sent if e.label["expected_reason"] == "oversized"]
    assert oversized and all(len(e.value) > 10_000 for e in oversized)
    for emission in oversized:
        with pytest.raises(InvalidEvent, match="oversized"):
            parse_click(emission.value, emission.emit_at_ms, Limits(max_event_bytes=10_000))


def test_malformed_event_id_is_given_only_when_the_payload_still_has_one(
    faulty_stream: list[Emission],
) -> None:
    for emission in faulty_stream:
        if emission.label["fault"] == "malformed" and emission.label["event_id"] is not None:
            assert orjson.loads(emission.value)["event_id"] == emission.label["event_id"]


def test_fault_shares_match_the_configured_rates(faulty_stream: list[Emission]) -> None:
    events = first_copies(faulty_stream)
    orders = [e for e in events if e.stream == "orders"]
    faults = Counter(e.label["fault"] for e in faulty_stream)
    assert share(faults["duplicate"], len(events)) == pytest.approx(0.05, rel=0.25)
    assert share(faults["malformed"], len(events)) == pytest.approx(0.05, rel=0.25)
    assert share(faults["late"], len(events)) == pytest.approx(0.05, rel=0.25)
    assert share(faults["out_of_order"], len(events)) == pytest.approx(0.1, rel=0.25)
    assert share(faults["legacy"], len(orders)) == pytest.approx(0.3, rel=0.25)


def test_default_fault_rates_are_small() -> None:
    defaults = GeneratorConfig()
    assert defaults.duplicate_rate == 0.01 and defaults.out_of_order_rate == 0.05
    assert defaults.late_rate == 0.005 and defaults.malformed_rate == 0.005
    assert defaults.legacy_order_rate == 0.2 and defaults.fraud_rate == 0.02


def test_fraud_events_make_up_the_configured_share(faulty_stream: list[Emission]) -> None:
    fraud = sum(1 for e in faulty_stream if e.label["scenario"] is not None)
    assert share(fraud, len(faulty_stream)) == pytest.approx(0.1, rel=0.3)
    scenarios = {e.label["scenario"] for e in faulty_stream}
    assert scenarios == {None, "bot", "card_testing", "account_takeover", "no_session"}


def test_without_fraud_rate_no_event_is_fraud() -> None:
    assert all(e.label["scenario"] is None for e in emissions_of(fraud_rate=0.0))


def test_duplicates_repeat_the_first_copy_bytes_and_key_a_little_later(
    faulty_stream: list[Emission],
) -> None:
    first_copy = {e.label["event_id"]: e for e in first_copies(faulty_stream)}
    duplicates = [e for e in faulty_stream if e.label["fault"] == "duplicate"]
    assert duplicates
    for duplicate in duplicates:
        original = first_copy[duplicate.label["event_id"]]
        assert (duplicate.key, duplicate.value) == (original.key, original.value)
        assert 0 < duplicate.emit_at_ms - original.emit_at_ms <= 5_000


def test_late_events_are_sent_at_least_late_by_min_after_they_occurred() -> None:
    sent = emissions_of(count=8_000, events_per_second=10.0, late_rate=0.05)
    late = [(e, parse(e)) for e in sent if e.label["fault"] == "late"]
    assert late
    for emission, record in late:
        assert 120_000 <= emission.emit_at_ms - record.occurred_at_ms <= 600_000


def test_out_of_order_events_are_delayed_by_at_most_the_configured_max(
    faulty_stream: list[Emission],
) -> None:
    for emission, record in well_formed(faulty_stream):
        delay_ms = emission.emit_at_ms - record.occurred_at_ms
        if emission.label["fault"] == "out_of_order":
            assert 0 < delay_ms <= 10_000
        elif emission.label["fault"] in (None, "legacy"):
            assert delay_ms == 0


def test_orders_follow_a_checkout_in_the_same_session_except_sessionless_fraud(
    shop_events: list[Event],
) -> None:
    sessions = clicks_by_session(shop_events)
    for emission, record in shop_events:
        if not isinstance(record, OrderCreated):
            continue
        if emission.label["scenario"] == "no_session":
            assert record.session_id is None
            continue
        assert record.session_id is not None
        checkouts = [c for c in sessions[record.session_id] if c.type == ClickType.CHECKOUT]
        assert any(c.occurred_at_ms < record.occurred_at_ms for c in checkouts)


def test_ordered_items_were_added_to_the_cart_in_the_same_session(
    shop_events: list[Event],
) -> None:
    sessions = clicks_by_session(shop_events)
    orders = [o for o in orders_of(shop_events) if o.session_id is not None]
    assert len(orders) > 50
    for order in orders:
        assert order.session_id is not None
        clicks = sessions[order.session_id]
        added = {c.url.removeprefix("/p/") for c in clicks if c.type == ClickType.ADD_TO_CART}
        assert {item.sku for item in order.items} <= added


def test_order_amount_is_the_sum_of_its_items(shop_events: list[Event]) -> None:
    for order in orders_of(shop_events):
        assert order.amount_cents == sum(i.quantity * i.unit_price_cents for i in order.items)
        assert order.amount_cents > 0


def test_orders_come_in_several_currencies_and_jpy_has_no_minor_digits(
    shop_events: list[Event],
) -> None:
    currencies: set[str] = set()
    for emission, record in shop_events:
        if isinstance(record, OrderCreated) and emission.label["fault"] is None:
            currencies.add(record.currency)
            if record.currency == "JPY":
                assert "." not in orjson.loads(emission.value)["amount"]
    assert {"EUR", "USD", "GBP", "JPY"} <= currencies


def test_sessions_enter_from_referrers_and_click_on_without_one(
    shop_events: list[Event],
) -> None:
    sessions = clicks_by_session(shop_events).values()
    assert {clicks[0].referrer for clicks in sessions} >= {None, "https://www.google.com/"}
    assert all(c.referrer is None for clicks in sessions for c in clicks[1:])


def test_returning_users_mostly_come_back_on_devices_they_used_before(
    shop_events: list[Event],
) -> None:
    devices_by_user: dict[str, set[str]] = defaultdict(set)
    sessions_by_user: dict[str, set[str]] = defaultdict(set)
    for _, record in of_scenario(shop_events, None):
        if isinstance(record, ClickEvent):
            devices_by_user[record.user_id].add(record.device.id)
            sessions_by_user[record.user_id].add(record.session_id)
    returning = [user for user, sessions in sessions_by_user.items() if len(sessions) >= 3]
    assert len(returning) > 20
    sessions = sum(len(sessions_by_user[user]) for user in returning)
    devices = sum(len(devices_by_user[user]) for user in returning)
    assert devices < sessions / 2


def test_bot_sessions_are_dozens_of_sub_second_page_views_from_a_bot_device(
    shop_events: list[Event],
) -> None:
    sessions = clicks_by_session(of_scenario(shop_events, "bot"))
    complete = [clicks for clicks in sessions.values() if len(clicks) >= 30]
    assert complete
    for clicks in complete:
        gaps = [b.occurred_at_ms - a.occurred_at_ms for a, b in itertools.pairwise(clicks)]
        assert max(gaps) < 1_000
        assert {c.device.kind for c in clicks} == {"bot"}
        assert {c.type for c in clicks} == {ClickType.PAGE_VIEW}


def test_card_testing_is_many_small_orders_within_minutes_each_with_a_new_card(
    shop_events: list[Event],
) -> None:
    orders_by_user: dict[str, list[OrderCreated]] = defaultdict(list)
    for order in orders_of(of_scenario(shop_events, "card_testing")):
        orders_by_user[order.user_id].append(order)
    bursts = [orders for orders in orders_by_user.values() if len(orders) >= 8]
    assert bursts
    for orders in bursts:
        cards = {o.payment.card_fingerprint for o in orders if o.payment is not None}
        assert len(cards) == len(orders)
        times = [o.occurred_at_ms for o in orders]
        assert max(times) - min(times) < 10 * 60_000
        assert all(o.amount_cents <= 600 for o in orders)  # under 6 units, JPY included


def test_account_takeover_is_a_known_account_on_a_new_device_buying_big(
    shop_events: list[Event],
) -> None:
    honest = of_scenario(shop_events, None)
    honest_clicks = defaultdict(list)
    for _, record in honest:
        if isinstance(record, ClickEvent):
            honest_clicks[record.user_id].append(record)
    takeovers = orders_of(of_scenario(shop_events, "account_takeover"))
    assert takeovers
    for order in takeovers:
        before = [
            c for c in honest_clicks[order.user_id] if c.occurred_at_ms < order.occurred_at_ms
        ]
        assert before, "the account was used honestly before"
        assert order.device is not None
        assert order.device.id not in {c.device.id for c in before}
    honest_eur = sorted(o.amount_cents for o in orders_of(honest) if o.currency == "EUR")
    median_eur = honest_eur[len(honest_eur) // 2]
    assert all(o.amount_cents > median_eur for o in takeovers if o.currency == "EUR")


def test_sessionless_orders_have_no_session_and_no_clicks(shop_events: list[Event]) -> None:
    records = [record for _, record in of_scenario(shop_events, "no_session")]
    assert records
    assert all(isinstance(r, OrderCreated) and r.session_id is None for r in records)


@pytest.mark.parametrize(
    "overrides",
    [
        {"duplicate_rate": 1.5},
        {"late_rate": -0.1},
        {"events_per_second": 0},
        {"late_by_ms": (600_000, 120_000)},
        {"users": 0},
    ],
)
def test_invalid_config_is_rejected(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        make_config(**overrides)
