"""Old OrderCreated shapes -> the current one, on read.

v1 (legacy, camelCase, no `version`): {"orderId", "eventId", "userId", "sessionId", "total",
"currency", "createdAt"}; it has no items, payment or device facts, so those are empty.
"""

from __future__ import annotations

from typing import Any

from streams.records import ORDER_SCHEMA

V1_TO_V2 = {
    "orderId": "id",
    "eventId": "event_id",
    "userId": "user_id",
    "sessionId": "session_id",
    "total": "amount",
    "currency": "currency",
    "createdAt": "occurred_at",
}


def is_legacy_order(body: dict[str, Any]) -> bool:
    return "orderId" in body and "version" not in body


def upcast_order(body: dict[str, Any]) -> tuple[dict[str, Any], int | None]:
    """Return the body in the current shape and the version it was upcast from (None if current)."""
    if not is_legacy_order(body):
        return body, None
    current: dict[str, Any] = {new: body.get(old) for old, new in V1_TO_V2.items()}
    current.update(schema=ORDER_SCHEMA, version=2, items=[], payment=None, device=None)
    return current, 1
