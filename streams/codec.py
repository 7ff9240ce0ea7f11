"""Records -> wire JSON (orjson). The inverse of streams.validation for well-formed events."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

from streams.eventtime import format_timestamp
from streams.records import (
    CLICK_SCHEMA,
    ORDER_SCHEMA,
    ClickEvent,
    Device,
    OrderCreated,
)
from streams.validation import CURRENCY_DIGITS


def money_text(cents: int, currency: str) -> str:
    return str(Decimal(cents).scaleb(-CURRENCY_DIGITS.get(currency, 2)))


def device_body(device: Device) -> dict[str, str]:
    return {"id": device.id, "kind": device.kind, "user_agent": device.user_agent, "ip": device.ip}


def click_body(click: ClickEvent) -> dict[str, Any]:
    return {
        "schema": CLICK_SCHEMA,
        "version": click.version,
        "event_id": click.event_id,
        "type": str(click.type),
        "user_id": click.user_id,
        "session_id": click.session_id,
        "url": click.url,
        "referrer": click.referrer,
        "device": device_body(click.device),
        "occurred_at": format_timestamp(click.occurred_at_ms),
    }


def order_body(order: OrderCreated) -> dict[str, Any]:
    payment = order.payment
    return {
        "schema": ORDER_SCHEMA,
        "version": order.version,
        "event_id": order.event_id,
        "id": order.order_id,
        "user_id": order.user_id,
        "session_id": order.session_id,
        "amount": money_text(order.amount_cents, order.currency),
        "currency": order.currency,
        "items": [
            {
                "sku": item.sku,
                "quantity": item.quantity,
                "unit_price": money_text(item.unit_price_cents, order.currency),
            }
            for item in order.items
        ],
        "payment": None
        if payment is None
        else {
            "method": payment.method,
            "card_fingerprint": payment.card_fingerprint,
            "card_country": payment.card_country,
        },
        "device": None if order.device is None else device_body(order.device),
        "occurred_at": format_timestamp(order.occurred_at_ms),
    }


def legacy_order_body(order: OrderCreated) -> dict[str, Any]:
    """The v1 shape old producers still send (see streams.upcast)."""
    return {
        "orderId": order.order_id,
        "eventId": order.event_id,
        "userId": order.user_id,
        "sessionId": order.session_id,
        "total": float(money_text(order.amount_cents, order.currency)),
        "currency": order.currency,
        "createdAt": format_timestamp(order.occurred_at_ms),
    }


def dumps(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body)
