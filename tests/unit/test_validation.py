"""Validation and upcasting: every bad input gets a stable reason; legacy orders are upcast."""

from __future__ import annotations

import orjson
import pytest

from streams.codec import dumps
from streams.validation import InvalidEvent, Limits, parse_click, parse_order
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
    with pytest.raises(InvalidEvent) as caught:
        parse(raw, LOG_TIME)
    return caught.value.reason


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
