"""Validation and upcasting: every bad input gets a stable reason; legacy orders are upcast."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import orjson
import pytest

from generator.config import GeneratorConfig
from generator.simulate import Emission, simulate
from streams.codec import dumps
from streams.records import ClickEvent, ClickType
from streams.validation import (
    LATEST_MS,
    MAX_MINOR_UNITS,
    MAX_ORDER_ID,
    MAX_QUANTITY,
    MAX_SCHEMA_VERSION,
    MAX_TEXT,
    ClickFields,
    InvalidEvent,
    Limits,
    _accept_usual_click,
    _parse_click_checked,
    parse_click,
    parse_click_fields,
    parse_order,
)
from tests.builders import (
    T0,
    click_bytes,
    click_json,
    legacy_order_json,
    make_click,
    make_order,
    order_json,
)

LOG_TIME = T0 + 1000


def reason(parse, raw: bytes) -> str:
    return rejection(parse, raw)[0]


def rejection(parse, raw: bytes) -> tuple[str, str]:
    with pytest.raises(InvalidEvent) as caught:
        parse(raw, LOG_TIME)
    return caught.value.reason, caught.value.detail


def order_with(**changes: Any) -> bytes:
    return orjson.dumps({**order_json(), **changes})


def item_json(**changes: Any) -> dict[str, Any]:
    return {**order_json()["items"][0], **changes}


def test_valid_click_round_trips_through_the_wire_format():
    assert parse_click(click_bytes(), LOG_TIME) == make_click()


def test_valid_order_round_trips_through_the_wire_format():
    assert parse_order(dumps(order_json()), LOG_TIME) == make_order()


def test_legacy_order_with_order_id_is_upcast_to_current_shape():
    order = parse_order(dumps(legacy_order_json(order_id=7, amount_cents=1250)), LOG_TIME)
    assert (order.order_id, order.amount_cents, order.currency) == (7, 1250, "EUR")
    assert order.upcast_from == 1 and order.items == () and order.payment is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"{not json", "malformed_json"),
        (b"[1, 2]", "not_an_object"),
        (b" " * 70_000, "oversized"),
    ],
)
def test_undecodable_clicks_are_rejected_with_reason(raw, expected):
    assert reason(parse_click, raw) == expected


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"version": 99}, "unknown_schema_version"),
        ({"schema": "other"}, "unknown_schema_version"),
        ({"user_id": None}, "missing_field"),
        ({"user_id": 17}, "wrong_type"),
        ({"device": "phone"}, "wrong_type"),
        ({"type": "teleport"}, "bad_value"),
        ({"url": ""}, "bad_value"),
        ({"occurred_at": "yesterday"}, "bad_timestamp"),
        ({"occurred_at": "2026-01-05T10:00:00"}, "bad_timestamp"),  # no offset
        ({"occurred_at": "1970-01-01T00:00:00Z"}, "bad_timestamp"),
        ({"occurred_at": "2999-01-01T00:00:00Z"}, "bad_timestamp"),
        ({"occurred_at": "2026-01-05T11:00:00Z"}, "bad_timestamp"),  # after its record
    ],
)
def test_invalid_click_fields_are_rejected_with_reason(change, expected):
    assert reason(parse_click, orjson.dumps({**click_json(), **change})) == expected


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"amount": "12.345"}, "bad_value"),
        ({"amount": "-5"}, "bad_value"),
        ({"amount": True}, "wrong_type"),
        ({"currency": "euro"}, "bad_value"),
        ({"id": "1001"}, "wrong_type"),
        ({"version": 3}, "unknown_schema_version"),
        ({"items": [{"sku": "a", "quantity": 0, "unit_price": "1"}]}, "bad_value"),
    ],
)
def test_invalid_order_fields_are_rejected_with_reason(change, expected):
    assert reason(parse_order, orjson.dumps({**order_json(), **change})) == expected


def test_amounts_are_exact_minor_units_per_currency():
    assert (
        parse_order(orjson.dumps({**order_json(), "amount": 19.99}), LOG_TIME).amount_cents == 1999
    )
    yen = {**order_json(), "currency": "JPY", "amount": "1500", "items": []}
    assert parse_order(orjson.dumps(yen), LOG_TIME).amount_cents == 1500


def test_size_bound_is_a_setting():
    with pytest.raises(InvalidEvent):
        parse_click(click_bytes(), LOG_TIME, Limits(max_event_bytes=100))


# parse_click = a fast path for the usual valid shape + the field-by-field reference for the rest;
# the two must give the same ClickEvent, or the same (reason, detail), for every input.

DEFAULT_LIMITS = Limits()
AFTER_2100 = LATEST_MS + 86_400_000  # a log time so late that only the 2000..2100 bound applies
MISSING = object()  # as a field value: the field is left out
TOP_FIELDS = tuple(click_json())
DEVICE_FIELDS = tuple(click_json()["device"])
ODD_VALUES = (
    *(MISSING, None, "", " ", "1", "x" * MAX_TEXT, "x" * (MAX_TEXT + 1), "teleport", "click"),
    *(0, 1, -1, 17, 1.0, 1.5, -0.0, 1e308, 2**53, 2**64 - 1, MAX_SCHEMA_VERSION + 1),
    *(True, False, [], ["x"], {}, {"id": "d-1"}),
    *(kind.value for kind in ClickType),
)
TIMESTAMPS = (
    *("yesterday", "", "2026-01-05T10:00:00", "2026-01-05", "2026-02-30T00:00:00Z"),
    *("1970-01-01T00:00:00Z", "1999-12-31T23:59:59.999Z", "2000-01-01T00:00:00Z"),
    *("2099-12-31T23:59:59.999+00:00", "2100-01-01T00:00:00Z", "2999-01-01T00:00:00Z"),
    *("2026-01-05T11:00:00+01:00", "2026-01-05T09:59:59.123456-00:30", "2026-01-05T10:00:00.5Z"),
)


def outcome(parse, raw: bytes, log_time_ms: int, limits: Limits) -> tuple[str, object]:
    """("accepted", the ClickEvent) or (reason, detail)."""
    try:
        return "accepted", parse(raw, log_time_ms, limits)
    except InvalidEvent as exc:
        return exc.reason, exc.detail


def fields_of(click: ClickEvent) -> ClickFields:
    return ClickFields(
        click.event_id, click.type, click.user_id, click.url, click.referrer, click.occurred_at_ms
    )


def verdict_agreed(body: Any, log_time_ms: int = LOG_TIME, limits: Limits = DEFAULT_LIMITS) -> str:
    """Assert parse_click and parse_click_fields agree with the reference on this body; return
    the shared verdict."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    expected = outcome(_parse_click_checked, raw, log_time_ms, limits)
    assert outcome(parse_click, raw, log_time_ms, limits) == expected, raw
    verdict, accepted_or_detail = expected
    expected_fields = fields_of(accepted_or_detail) if verdict == "accepted" else accepted_or_detail
    assert outcome(parse_click_fields, raw, log_time_ms, limits) == (verdict, expected_fields), raw
    return verdict


def click_with(changes: dict[str, object], device_changes: dict[str, object]) -> dict[str, Any]:
    body = click_json()
    for target, wanted in ((body, changes), (body["device"], device_changes)):
        for name, value in wanted.items():
            if value is MISSING:
                del target[name]
            else:
                target[name] = value
    return body


def generated_clicks(seed: int) -> list[Emission]:
    config = GeneratorConfig(seed=seed, count=3_000, events_per_second=1000, malformed_rate=0.1)
    return [emission for emission in simulate(config) if emission.stream == "clicks"]


def test_parse_click_agrees_with_reference_on_generated_traffic():
    verdicts = Counter(verdict_agreed(e.value, e.emit_at_ms) for e in generated_clicks(seed=5))
    assert verdicts["accepted"] > 2_000 and len(verdicts) == 8  # accepted + 7 malformed reasons


def test_generated_valid_clicks_take_the_fast_path():
    for emission in generated_clicks(seed=6):
        if emission.label["fault"] != "malformed":
            body = orjson.loads(emission.value)
            assert _accept_usual_click(body, emission.emit_at_ms, DEFAULT_LIMITS) is not None


def test_parse_click_agrees_with_reference_on_every_single_field_mutation():
    mutations = [
        *(({name: value}, {}) for name in TOP_FIELDS for value in ODD_VALUES),
        *(({}, {name: value}) for name in DEVICE_FIELDS for value in ODD_VALUES),
        *(({"occurred_at": text}, {}) for text in TIMESTAMPS),
    ]
    verdicts = Counter(verdict_agreed(click_with(*mutation)) for mutation in mutations)
    verdicts.update(verdict_agreed(click_with(*mutation), AFTER_2100) for mutation in mutations)
    assert set(verdicts) == {
        "accepted",
        "unknown_schema_version",
        "missing_field",
        "wrong_type",
        "bad_value",
        "bad_timestamp",
    }


def test_parse_click_agrees_with_reference_on_which_of_two_broken_fields_it_names():
    broken = [(name, value) for name in TOP_FIELDS for value in (MISSING, None, 17, "")]
    for (first, one), (second, other) in itertools.combinations(broken, 2):
        if first != second:
            verdict_agreed(click_with({first: one, second: other}, {}))


@pytest.mark.parametrize("skew_ms", [0, 1, Limits().max_future_skew_ms])
def test_parse_click_agrees_with_reference_at_the_future_skew_bound(skew_ms):
    limits = Limits(max_future_skew_ms=skew_ms)
    at_bound = click_json(occurred_at_ms=LOG_TIME + skew_ms)
    past_bound = click_json(occurred_at_ms=LOG_TIME + skew_ms + 1)
    assert verdict_agreed(at_bound, LOG_TIME, limits) == "accepted"
    assert verdict_agreed(past_bound, LOG_TIME, limits) == "bad_timestamp"


def test_parse_click_agrees_with_reference_on_odd_but_valid_shapes():
    odd = [
        click_with({"referrer": MISSING}, {}),
        click_with({"extra": [1, 2]}, {"extra": None}),
    ]
    assert [verdict_agreed(body) for body in odd] == ["accepted"] * len(odd)


# Issue 9: every number has a bound, a boolean is no number, and a detail names the full path
# and the actual problem.

OVER_EUR = "is more than 10000000000.00 EUR"


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"amount": 1e308}, f"amount 1e+308 {OVER_EUR}"),
        ({"amount": "100000000000000000.00"}, f"amount '100000000000000000.00' {OVER_EUR}"),
        ({"amount": "10000000000.01"}, f"amount '10000000000.01' {OVER_EUR}"),
        ({"amount": 2**64 - 1}, f"amount 18446744073709551615 {OVER_EUR}"),
        (
            {"items": [item_json(unit_price="10000000000.01")]},
            f"items[0].unit_price '10000000000.01' {OVER_EUR}",
        ),
        (
            {"items": [item_json(quantity=1_000_001)]},
            "items[0].quantity 1000001 is outside 1..1000000",
        ),
        ({"items": [item_json(quantity=-1)]}, "items[0].quantity -1 is outside 1..1000000"),
        ({"id": MAX_ORDER_ID + 1}, "id 9007199254740992 is outside 0..9007199254740991"),
        ({"id": -1}, "id -1 is outside 0..9007199254740991"),
        ({"version": 0}, "version 0 is outside 1..1000"),
        ({"version": 2**63}, "version 9223372036854775808 is outside 1..1000"),
    ],
)
def test_every_number_out_of_its_bound_is_a_bad_value(change, detail):
    assert rejection(parse_order, order_with(**change)) == ("bad_value", detail)


def test_numbers_at_their_bounds_are_accepted_and_exact():
    in_yen = {"currency": "JPY", "amount": MAX_MINOR_UNITS, "id": MAX_ORDER_ID}
    item = item_json(quantity=MAX_QUANTITY, unit_price=str(MAX_MINOR_UNITS))
    order = parse_order(order_with(**in_yen, items=[item]), LOG_TIME)
    assert (order.amount_cents, order.order_id) == (MAX_MINOR_UNITS, MAX_ORDER_ID)
    assert order.items[0].quantity == MAX_QUANTITY
    assert order.items[0].unit_price_cents == MAX_MINOR_UNITS
    most_euros = parse_order(order_with(amount="10000000000.00"), LOG_TIME)
    assert most_euros.amount_cents == MAX_MINOR_UNITS
    assert verdict_agreed(click_with({"version": MAX_SCHEMA_VERSION}, {})) == (
        "unknown_schema_version"
    )


@pytest.mark.parametrize(
    ("amount", "cents"),
    [(19.99, 1999), (49.9, 4990), (0.01, 1), (9999999999.99, 999999999999), (1e10, 10**12)],
)
def test_a_json_number_amount_is_read_as_its_shortest_decimal_exactly(amount, cents):
    assert parse_order(order_with(amount=amount), LOG_TIME).amount_cents == cents


def test_a_legacy_float_total_is_still_read_and_bounded():
    legacy = legacy_order_json(amount_cents=4990)
    assert legacy["total"] == 49.9
    assert parse_order(dumps(legacy), LOG_TIME).amount_cents == 4990
    assert rejection(parse_order, dumps({**legacy, "total": 1e308})) == (
        "bad_value",
        "amount 1e+308 is more than 10000000000.00 EUR (v1 field total)",
    )


@pytest.mark.parametrize(
    ("parse", "body", "detail"),
    [
        (parse_click, click_json() | {"version": True}, "version must be int, got bool"),
        (parse_order, order_json() | {"version": True}, "version must be int, got bool"),
        (parse_order, order_json() | {"id": True}, "id must be int, got bool"),
        (
            parse_order,
            order_json() | {"amount": True},
            "amount must be a decimal string or number, got bool",
        ),
        (
            parse_order,
            order_json() | {"items": [item_json(quantity=True)]},
            "items[0].quantity must be int, got bool",
        ),
        (
            parse_order,
            order_json() | {"items": [item_json(unit_price=False)]},
            "items[0].unit_price must be a decimal string or number, got bool",
        ),
    ],
)
def test_a_boolean_is_never_taken_for_a_number(parse, body, detail):
    assert rejection(parse, orjson.dumps(body)) == ("wrong_type", detail)


def test_a_boolean_version_is_not_a_version_on_the_click_fast_path_either():
    assert verdict_agreed(click_with({"version": True}, {})) == "wrong_type"
    assert verdict_agreed(click_with({"version": 1.0}, {})) == "wrong_type"


@pytest.mark.parametrize(
    ("amount", "detail"),
    [
        ("NaN", "amount 'NaN' is not a finite number"),
        ("sNaN", "amount 'sNaN' is not a finite number"),  # Decimal raised on it: a crash
        ("Infinity", "amount 'Infinity' is not a finite number"),
        ("-inf", "amount '-inf' is not a finite number"),
        ("1e999", "amount '1e999' is not plain digits with an optional decimal point"),
        ("-0", "amount '-0' has a minus sign"),
        (-0.0, "amount -0.0 has a minus sign"),
        ("-5", "amount '-5' is negative"),
        (" 5", "amount ' 5' is not plain digits with an optional decimal point"),
        ("1_000", "amount '1_000' is not plain digits with an optional decimal point"),
        (
            "\u0661\u0662",
            "amount '\u0661\u0662' is not plain digits with an optional decimal point",
        ),
        ("five", "amount 'five' is not a number"),
        ("0.00", "amount '0.00' must be positive"),
        ("12.345", "amount '12.345' has too many decimals for EUR (at most 2)"),
    ],
)
def test_a_bad_amount_is_named_for_what_it_is(amount, detail):
    assert rejection(parse_order, order_with(amount=amount)) == ("bad_value", detail)


def test_a_json_infinity_is_not_json():
    assert reason(parse_order, order_with().replace(b'"49.90"', b"1e999")) == "malformed_json"


def test_a_missing_order_id_is_a_missing_field():
    body = order_json()
    del body["id"]
    assert rejection(parse_order, orjson.dumps(body)) == ("missing_field", "id is required")
    assert rejection(parse_order, order_with(id=None)) == ("missing_field", "id is required")


def test_a_missing_amount_or_unit_price_is_a_missing_field():
    body = order_json()
    del body["amount"]
    assert rejection(parse_order, orjson.dumps(body)) == ("missing_field", "amount is required")
    priceless = {"sku": "a", "quantity": 1}
    assert rejection(parse_order, order_with(items=[priceless])) == (
        "missing_field",
        "items[0].unit_price is required",
    )


@pytest.mark.parametrize(
    ("parse", "body", "expected"),
    [
        (
            parse_click,
            click_with({}, {"id": 5}),
            ("wrong_type", "device.id must be str, got int"),
        ),
        (
            parse_click,
            click_with({}, {"id": MISSING}),
            ("missing_field", "device.id is required"),
        ),
        (
            parse_click,
            click_with({}, {"kind": ""}),
            ("bad_value", "device.kind must have 1 to 2048 characters, got 0"),
        ),
        (
            parse_order,
            order_json() | {"payment": {"method": None}},
            ("missing_field", "payment.method is required"),
        ),
        (
            parse_order,
            order_json() | {"payment": {"method": ["card"]}},
            ("wrong_type", "payment.method must be str, got list"),
        ),
        (
            parse_order,
            order_json() | {"items": [item_json(), item_json(), item_json(quantity=1.5)]},
            ("wrong_type", "items[2].quantity must be int, got float"),
        ),
        (
            parse_order,
            order_json() | {"items": [item_json(), "sku-2"]},
            ("wrong_type", "items[1] must be dict, got str"),
        ),
        (
            parse_order,
            order_json() | {"device": {**order_json()["device"], "ip": 7}},
            ("wrong_type", "device.ip must be str, got int"),
        ),
        (
            parse_order,
            {**legacy_order_json(), "orderId": None},
            ("missing_field", "id is required (v1 field orderId)"),
        ),
    ],
)
def test_a_detail_names_the_full_path_and_the_actual_problem(parse, body, expected):
    assert rejection(parse, orjson.dumps(body)) == expected


def test_currency_codes_are_ascii_capitals():
    assert rejection(parse_order, order_with(currency="\u00c4\u00d6\u00dc")) == (
        "bad_value",
        "currency '\u00c4\u00d6\u00dc' is not an ISO-4217 code",
    )


def test_a_long_bad_value_is_cut_short_in_its_detail():
    kind, detail = rejection(parse_click, orjson.dumps(click_json() | {"schema": "0" * 2047}))
    assert kind == "unknown_schema_version"
    assert detail == f"schema='{'0' * 36}... version=1, expected click v1"
