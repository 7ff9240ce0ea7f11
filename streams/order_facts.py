"""Order facts records: what an orders partition tells the clicks partition of the same number,
for attribution (tables/attribution.py). Written into the clicks log itself, like ticks, so a
replay sees the same facts at the same offsets. Not click events: never counted as clicks.

  headers: ("clickstream-order-facts", b"1")
  value:   {"orders": [[event_id, user_id, occurred_at ms, currency, amount cents], ...],
            "watermark_ms": the orders partition's watermark after them, "by": "<app id>"}

Each app version joins only its own facts ("by"), within the future skew of their record's
timestamp (streams.control): a shadow version beside the live one appends its own, and each
takes the other's for dead letters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from tables.bounded import RESULT_BYTES

ORDER_FACTS_HEADER = "clickstream-order-facts"

Fact = tuple[str, str, int, str, int]  # event_id, user, time ms, currency, cents


def order_facts_record(
    facts: Iterable[Fact], watermark_ms: int, app_id: str
) -> tuple[bytes, list[tuple[str, bytes]]]:
    """(value, headers) of an order facts record."""
    value = {"orders": list(facts), "watermark_ms": watermark_ms, "by": app_id}
    return orjson.dumps(value), [(ORDER_FACTS_HEADER, b"1")]


def order_facts_records(
    facts: list[Fact], watermark_ms: int, app_id: str, max_bytes: int = RESULT_BYTES
) -> list[tuple[bytes, list[tuple[str, bytes]]]]:
    """One batch's facts as records of at most about `max_bytes` each: one record, unless the
    facts are many or long. All but the last carry watermark -1, so the orders watermark moves
    only once every fact before it is in."""
    record = order_facts_record(facts, watermark_ms, app_id)
    if len(record[0]) <= max_bytes or len(facts) < 2:
        return [record]
    half = len(facts) // 2
    first = order_facts_records(facts[:half], -1, app_id, max_bytes)
    return [*first, *order_facts_records(facts[half:], watermark_ms, app_id, max_bytes)]


def is_order_facts(headers: Iterable[tuple[str, Any]] | Mapping[str, Any] | None) -> bool:
    if not headers:
        return False
    if isinstance(headers, Mapping):
        return ORDER_FACTS_HEADER in headers
    return any(name == ORDER_FACTS_HEADER for name, _ in headers)


def read_order_facts(value: bytes | None) -> tuple[list[Fact], int, str] | None:
    """(facts, watermark, app id), or None when the value is not an order facts record's."""
    try:
        body = orjson.loads(value or b"")
        facts = [_fact(f) for f in body["orders"]]
        watermark, by = body["watermark_ms"], body["by"]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    return (facts, watermark, by) if _is_int(watermark) and isinstance(by, str) else None


def _fact(raw: Any) -> Fact:
    event_id, user, time_ms, currency, cents = raw
    if not (isinstance(event_id, str) and isinstance(user, str) and isinstance(currency, str)):
        raise TypeError("not an order fact")
    if not (_is_int(time_ms) and _is_int(cents)):
        raise TypeError("not an order fact")
    return event_id, user, time_ms, currency, cents


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
