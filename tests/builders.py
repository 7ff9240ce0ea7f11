"""Event builders for tests: defaults that are valid, overrides for what a test is about."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from streams.codec import click_body, dumps, legacy_order_body, order_body
from streams.eventtime import parse_timestamp
from streams.records import ClickEvent, ClickType, Device, OrderCreated, OrderItem, Payment

T0 = parse_timestamp("2026-01-05T10:00:00Z")
DEVICE = Device(id="d-1", kind="mobile", user_agent="Mozilla/5.0", ip="203.0.113.7")


def make_click(**overrides: Any) -> ClickEvent:
    click = ClickEvent(
        event_id="e-1",
        type=ClickType.PAGE_VIEW,
        user_id="u-1",
        session_id="s-1",
        url="/p/42",
        referrer="https://search.example/?q=shoes",
        device=DEVICE,
        occurred_at_ms=T0,
    )
    return replace(click, **overrides)


def make_order(**overrides: Any) -> OrderCreated:
    order = OrderCreated(
        event_id="o-e-1",
        order_id=1001,
        user_id="u-1",
        session_id="s-1",
        amount_cents=4990,
        currency="EUR",
        items=(OrderItem(sku="sku-1", quantity=2, unit_price_cents=2495),),
        payment=Payment(method="card", card_fingerprint="fp-1", card_country="DE"),
        device=DEVICE,
        occurred_at_ms=T0,
    )
    return replace(order, **overrides)


def click_bytes(**overrides: Any) -> bytes:
    return dumps(click_body(make_click(**overrides)))


def click_json(**overrides: Any) -> dict[str, Any]:
    return click_body(make_click(**overrides))


def order_json(**overrides: Any) -> dict[str, Any]:
    return order_body(make_order(**overrides))


def legacy_order_json(**overrides: Any) -> dict[str, Any]:
    return legacy_order_body(make_order(**overrides))
