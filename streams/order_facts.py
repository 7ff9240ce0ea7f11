"""Order facts records: what an orders partition tells the clicks partition of the same number,
for attribution (tables/attribution.py). Kept in the app's own topic `<app>-order-facts`
(partition p from orders partition p, read by clicks partition p): never in the input topics,
which belong to their producers.

  key: none
  value: {"orders": [[event_id, user_id, occurred_at ms, currency, amount cents, offset], ...],
          "watermark_ms": the orders partition's watermark after them, "by": "<app id>"}

The join reads facts in their own order, as they come beside the clicks: its result depends
only on event times and watermarks, never on how the two logs interleave (tables/attribution).
A fact forwarded twice (the orders side redid a batch) counts once, by its order's event id.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from tables.bounded import RESULT_BYTES

# event_id, user, time ms, currency, cents, and the order's offset in its orders partition (-1 in
# facts written before it was forwarded)
Fact = tuple[str, str, int, str, int, int]


def order_facts_value(facts: Iterable[Fact], watermark_ms: int, app_id: str) -> bytes:
    return orjson.dumps({"orders": list(facts), "watermark_ms": watermark_ms, "by": app_id})


def order_facts_values(
    facts: list[Fact], watermark_ms: int, app_id: str, max_bytes: int = RESULT_BYTES
) -> list[bytes]:
    """One batch's facts as records of at most about `max_bytes` each: one record, unless the
    facts are many or long. All but the last carry watermark -1, so the orders watermark moves
    only once every fact before it is in."""
    value = order_facts_value(facts, watermark_ms, app_id)
    if len(value) <= max_bytes or len(facts) < 2:
        return [value]
    half = len(facts) // 2
    first = order_facts_values(facts[:half], -1, app_id, max_bytes)
    return [*first, *order_facts_values(facts[half:], watermark_ms, app_id, max_bytes)]


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
    event_id, user, time_ms, currency, cents, *rest = raw
    if len(rest) > 1:
        raise TypeError("not an order fact")
    offset = rest[0] if rest else -1
    if not (isinstance(event_id, str) and isinstance(user, str) and isinstance(currency, str)):
        raise TypeError("not an order fact")
    if not (_is_int(time_ms) and _is_int(cents) and _is_int(offset)):
        raise TypeError("not an order fact")
    return event_id, user, time_ms, currency, cents, offset


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
