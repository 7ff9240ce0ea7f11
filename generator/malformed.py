"""Broken payloads, one kind per `InvalidEvent.reason` that streams.validation gives for it.

Each starts from a valid current-shape body and breaks exactly one thing, so validation's first
complaint is the intended reason. Every payload is valid UTF-8 text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from random import Random
from typing import Any

import orjson

from streams.codec import dumps
from streams.records import CLICK_SCHEMA

Body = dict[str, Any]

# 1970 (an unset clock), Go's zero time, a 2999 "never expires" sentinel: outside 2000..2100
ABSURD_TIMES = ("1970-01-01T00:00:00.000Z", "0001-01-01T00:00:00Z", "2999-12-31T23:59:59.999Z")
# fields whose absence validation reports as missing_field (checked before any later field)
REQUIRED_CLICK_FIELDS = (
    "event_id",
    "type",
    "user_id",
    "session_id",
    "url",
    "device",
    "occurred_at",
)
REQUIRED_ORDER_FIELDS = ("event_id", "user_id", "currency", "items", "occurred_at")


@dataclass(frozen=True, slots=True)
class BrokenPayload:
    value: bytes
    event_id: str | None  # the event_id a reader could still find in it


def _is_click(body: Body) -> bool:
    return body.get("schema") == CLICK_SCHEMA


def _as_object(body: Body) -> BrokenPayload:
    return BrokenPayload(dumps(body), body.get("event_id"))


def malformed_json(body: Body, rng: Random, max_bytes: int) -> BrokenPayload:
    """Cut off mid-write, or written with Python's repr() instead of JSON."""
    text = dumps(body).decode()
    broken = text[: rng.randrange(1, len(text))] if rng.random() < 0.5 else repr(body)
    return BrokenPayload(broken.encode(), None)


def not_an_object(body: Body, rng: Random, max_bytes: int) -> BrokenPayload:
    """A batch wrapped in an array, or JSON encoded twice (a JSON string)."""
    wrapped: list[Body] | str = [body] if rng.random() < 0.5 else dumps(body).decode()
    return BrokenPayload(orjson.dumps(wrapped), None)


def wrong_type(body: Body, rng: Random, max_bytes: int) -> BrokenPayload:
    """A number where text belongs, text where an object belongs, and so on."""
    if _is_click(body):
        swaps: tuple[tuple[str, Any], ...] = (
            ("user_id", 40213),
            ("session_id", 7),
            ("url", [body["url"]]),
            ("device", body["device"]["user_agent"]),
        )
    else:
        swaps = (
            ("amount", {"value": body["amount"]}),
            ("items", {"count": len(body["items"])}),
            ("id", str(body["id"])),
            ("user_id", 40213),
        )
    name, value = rng.choice(swaps)
    return _as_object({**body, name: value})


def missing_field(body: Body, rng: Random, max_bytes: int) -> BrokenPayload:
    broken = dict(body)
    del broken[rng.choice(REQUIRED_CLICK_FIELDS if _is_click(body) else REQUIRED_ORDER_FIELDS)]
    return _as_object(broken)


def oversized(body: Body, rng: Random, max_bytes: int) -> BrokenPayload:
    """A click with a runaway query string, or an order whose items were repeated by a bug."""
    broken = dict(body)
    missing = max_bytes - len(dumps(body)) + 1 + rng.randrange(4096)
    if _is_click(body):
        broken["url"] = body["url"] + "?q=" + "spam+" * (missing // 5 + 1)
    else:
        item = body["items"][0]
        broken["items"] = [item] * (missing // (len(dumps(item)) + 1) + 1)
    return _as_object(broken)


def bad_timestamp(body: Body, rng: Random, max_bytes: int) -> BrokenPayload:
    return _as_object({**body, "occurred_at": rng.choice(ABSURD_TIMES)})


def unknown_schema_version(body: Body, rng: Random, max_bytes: int) -> BrokenPayload:
    return _as_object({**body, "version": body["version"] + rng.choice((1, 2, 98))})


BREAKERS: dict[str, Callable[[Body, Random, int], BrokenPayload]] = {
    "malformed_json": malformed_json,
    "not_an_object": not_an_object,
    "wrong_type": wrong_type,
    "missing_field": missing_field,
    "oversized": oversized,
    "bad_timestamp": bad_timestamp,
    "unknown_schema_version": unknown_schema_version,
}
MALFORMED_REASONS = tuple(BREAKERS)
