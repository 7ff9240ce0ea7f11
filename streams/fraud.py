"""Fraud records: what flows between the fraud processors (agents.fraud), and what they emit.

  <app>-fraud-repartition   (engine.repartition; key: "u|<user>", "c|<card>", "i|<ip>",
                             "d|<device>")
      click entry  ["c", event id, occurred ms, page view 0/1, add_to_cart 0/1, device, ip]
      order entry  ["o", event id, order id, user, occurred ms, amount, currency, card,
                    card country, device, ip]     (one per key the order has)
      policy entry ["p", version]   (key "p|"; partition q from policy partition q: the
                    version in force from there on in the release order)
  <app>-fraud-parts         key: the order's event id (partition: murmur2 of it)
      {"id": "<event id>/<kind>", "kind": user|card|ip|device, "of": parts in all,
       "order": [order fields], "features": {name: value}, "policy": the version in force
       (the user part; 0: none published, the configured one), "release_ms": its entries'}
      progress {"front": ms, "from": profile partition}, no key, to every partition: the
       profile partition has sent every part of the orders released before ms (it comes
       after them)
  <app>-scored-orders       key: the order's event id
      ScoredOrder JSON: {"id": "score/<event id>", "order_id", "event_id", "user",
       "occurred_at", "amount_cents", "currency", "score", "alert", "policy_version",
       "features", "contributions": [{"feature", "value", "weight", "reason"}], "reasons"}
  <app>-fraud-alerts        key: the order's event id
      FraudAlert JSON: {"id": "alert/<event id>", "order_id", "event_id", "user",
       "occurred_at", "amount_cents", "currency", "score", "policy_version", "reasons"}
Every id derives from the order's event id: a record repeated after a crash has the same id
and the same content.

What the scorer stages for its sink (serving.fraud_projection) is a FraudOutcome.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from fraud.features import Click, Features, Order
from fraud.policy import FraudScore
from streams.eventtime import format_timestamp
from streams.records import ClickEvent, ClickType, OrderCreated

USER, CARD, IP, DEVICE, POLICY = "u|", "c|", "i|", "d|", "p|"  # entry keys' prefixes
KIND_OF_PREFIX = {USER: "user", CARD: "card", IP: "ip", DEVICE: "device"}
SCORE_BUCKETS = 10  # the score distribution: [0, 0.1), ..., [0.9, 1.0]
PANE_COUNTS = 2 + SCORE_BUCKETS  # a pane's counts: orders, alerts, orders per score bucket


def marks_prefix(partition: int) -> bytes:
    """Scored orders' marks in the scorer's state: D|p|<event id> -> [time, bucket, alert]."""
    return b"D|%d|" % partition


def add_count(panes: dict[int, list[int]], pane: int, bucket: int, alert: int) -> None:
    """One scored order more in pane `pane`'s counts."""
    counts = panes.get(pane)
    if counts is None:
        counts = panes[pane] = [0] * PANE_COUNTS
    counts[0] += 1
    counts[1] += alert
    counts[2 + bucket] += 1


def pane_counts(marks: Iterable[bytes], pane_ms: int) -> dict[int, list[int]]:
    """Pane start -> counts, of scored orders' marks."""
    panes: dict[int, list[int]] = {}
    for raw in marks:
        time_ms, bucket, alert = orjson.loads(raw)
        add_count(panes, time_ms - time_ms % pane_ms, bucket, alert)
    return panes


@dataclass(frozen=True, slots=True)
class FraudOutcome:
    """One scorer batch of one partition, for the sink."""

    partition: int
    panes: dict[int, list[int]]  # pane start -> its PANE_COUNTS, absolute, for panes it changed
    scored: list[tuple[str, int, bytes]]  # (order id, order time, scored order) in order
    alerts: list[tuple[str, int, bytes]]  # (order id, order time, fraud alert)


def score_bucket(score: float) -> int:
    return min(int(score * SCORE_BUCKETS), SCORE_BUCKETS - 1)


def click_entry(click: ClickEvent) -> tuple[bytes, bytes]:
    """(key, value) of a click's entry."""
    value = [
        "c", click.event_id, click.occurred_at_ms, int(click.type is ClickType.PAGE_VIEW),
        int(click.type is ClickType.ADD_TO_CART), click.device.id, click.device.ip,
    ]  # fmt: skip
    return (USER + click.user_id).encode(), orjson.dumps(value)


def order_of(event: OrderCreated) -> Order:
    payment, device = event.payment, event.device
    return Order(
        event.event_id,
        event.order_id,
        event.user_id,
        event.occurred_at_ms,
        event.amount_cents,
        event.currency,
        payment.card_fingerprint if payment else None,
        payment.card_country if payment else None,
        device.id if device else None,
        device.ip if device else None,
    )


def order_entries(order: Order) -> list[tuple[bytes, bytes]]:
    """(key, value) of an order's entries: by user, then card, IP and device when it has them."""
    value = orjson.dumps(["o", *order_fields(order)])
    keys = [(USER, order.user), (CARD, order.card), (IP, order.ip), (DEVICE, order.device)]
    return [((prefix + of).encode(), value) for prefix, of in keys if of is not None]


def parts_of(order: Order) -> int:
    return 1 + sum(of is not None for of in (order.card, order.ip, order.device))


def policy_entry(version: int) -> tuple[bytes, bytes]:
    return POLICY.encode(), orjson.dumps(["p", version])


def read_fraud_entry(value: bytes) -> Click | Order | int:
    """An entry's click, order or policy version (raises ValueError or TypeError when it is
    none of them)."""
    body = orjson.loads(value)
    if body[0] == "c":
        _, event_id, time_ms, page_view, cart, device, ip = body
        return Click(event_id, time_ms, bool(page_view), bool(cart), device, ip)
    if body[0] == "o":
        return Order(*body[1:])
    if body[0] == "p" and type(body[1]) is int:
        return int(body[1])
    raise ValueError(f"not a fraud entry: {value[:40]!r}")


class Part(NamedTuple):
    kind: str
    of: int  # parts in all
    order: Order
    features: Features
    policy: int | None  # the user part's: the version in force (0: the configured one)
    release_ms: int  # of the order's entries (engine.repartition)


def part_value(
    kind: str, order: Order, features: Features, policy: int | None = None, release_ms: int = -1
) -> bytes:
    body = {
        "id": f"{order.event_id}/{kind}",
        "kind": kind,
        "of": parts_of(order),
        "order": order_fields(order),
        "features": features,
        "policy": policy,
        "release_ms": max(release_ms, order.time_ms),
    }
    return orjson.dumps(body)


def progress_value(partition: int, front_ms: int) -> bytes:
    return orjson.dumps({"front": front_ms, "from": partition})


def read_progress(value: bytes | None, partitions: int) -> tuple[int, int] | None:
    """(profile partition, front) of a progress record, or None when the value is not one."""
    if not value or not value.startswith(b'{"front":'):
        return None
    try:
        body = orjson.loads(value)
        front, of = body["front"], body["from"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    if type(front) is not int or type(of) is not int or not 0 <= of < partitions:
        return None
    return of, front


def read_part(value: bytes | None) -> Part | None:
    """The part, or None when the value is not a part's."""
    try:
        body = orjson.loads(value or b"")
        kind, of, features, policy = body["kind"], body["of"], body["features"], body["policy"]
        order, release_ms = Order(*body["order"]), body.get("release_ms", -1)
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    if kind not in KIND_OF_PREFIX.values() or type(of) is not int:
        return None
    if not isinstance(features, dict) or (kind == "user") != (type(policy) is int):
        return None
    if type(release_ms) is not int:
        return None
    return Part(kind, of, order, features, policy, release_ms)


def scored_order_value(order: Order, features: Features, score: FraudScore) -> bytes:
    body: dict[str, Any] = {
        "id": f"score/{order.event_id}",
        **_described(order),
        "score": score.score,
        "alert": score.alert,
        "policy_version": score.version,
        "features": features,
        "contributions": [
            {"feature": c.feature, "value": c.value, "weight": c.weight, "reason": c.reason}
            for c in score.contributions
        ],
        "reasons": score.reasons(),
    }
    return orjson.dumps(body)


def alert_value(order: Order, score: FraudScore) -> bytes:
    body = {
        "id": f"alert/{order.event_id}",
        **_described(order),
        "score": score.score,
        "policy_version": score.version,
        "reasons": score.reasons(),
    }
    return orjson.dumps(body)


def _described(order: Order) -> dict[str, Any]:
    return {
        "order_id": order.order_id,
        "event_id": order.event_id,
        "user": order.user,
        "occurred_at": format_timestamp(order.time_ms),
        "amount_cents": order.amount,
        "currency": order.currency,
    }


def order_fields(order: Order) -> list[Any]:
    """An order as the entries and parts carry it (Order(*fields) reads it back)."""
    return [
        order.event_id, order.order_id, order.user, order.time_ms, order.amount, order.currency,
        order.card, order.card_country, order.device, order.ip,
    ]  # fmt: skip
