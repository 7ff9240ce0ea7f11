"""Old event shapes -> the current ones, on read: upcasters registered per schema and version.

An upcaster takes a body of (schema, version) to version + 1; `upcast` applies them in turn,
so a body of any registered version reaches the schema's current one. A version with no
upcaster is left as it is, and validation rejects it as unknown_schema_version (a dead letter)
until a release registers the step. Validation upcasts on its field-by-field path only, which
every body of another version takes: the usual current shape pays nothing.

  OrderCreated v1 (legacy, camelCase, no `schema` nor `version`): {"orderId", "eventId",
  "userId", "sessionId", "total", "currency", "createdAt"}; it has no items, payment or device
  facts, so those are empty.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streams.records import ORDER_SCHEMA

Body = dict[str, Any]
UPCASTERS: dict[tuple[str, int], Callable[[Body], Body]] = {}


def upcaster(
    schema: str, version: int
) -> Callable[[Callable[[Body], Body]], Callable[[Body], Body]]:
    """Register the function that takes `schema` bodies of `version` to `version` + 1."""

    def register(step: Callable[[Body], Body]) -> Callable[[Body], Body]:
        UPCASTERS[schema, version] = step
        return step

    return register


def version_of(schema: str, body: Body) -> int | None:
    """The version a body of `schema` is in, as its upcasters read it. OrderCreated v1 is the
    legacy shape alone (no `schema`, no `version`): a body that says version 1 is none we know."""
    if schema == ORDER_SCHEMA:
        if is_legacy_order(body):
            return 1
        if body.get("version") == 1:
            return None
    version = body.get("version")
    return version if type(version) is int and body.get("schema") == schema else None


def upcast(schema: str, body: Body) -> tuple[Body, int | None]:
    """The body in the newest version its upcasters reach, and the version it came in (None
    when no upcaster applied)."""
    came_in = version = version_of(schema, body)
    if version is None or (schema, version) not in UPCASTERS:
        return body, None
    while (schema, version) in UPCASTERS:
        body = UPCASTERS[schema, version](body)
        version += 1
    return body, came_in


V1_TO_V2 = {
    "orderId": "id",
    "eventId": "event_id",
    "userId": "user_id",
    "sessionId": "session_id",
    "total": "amount",
    "currency": "currency",
    "createdAt": "occurred_at",
}


def is_legacy_order(body: Body) -> bool:
    return "orderId" in body and "version" not in body


@upcaster(ORDER_SCHEMA, 1)
def _order_v1_to_v2(body: Body) -> Body:
    current: Body = {new: body.get(old) for old, new in V1_TO_V2.items()}
    current.update(schema=ORDER_SCHEMA, version=2, items=[], payment=None, device=None)
    return current


def upcast_order(body: Body) -> tuple[Body, int | None]:
    """The body in the current shape and the version it was upcast from (None if current)."""
    return upcast(ORDER_SCHEMA, body)
