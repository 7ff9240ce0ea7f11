"""The fraud oracle: every order's expected features and score, recomputed in plain Python from
the input logs (clicks, orders and their ticks, by partition) and the policy.

It follows the definitions in fraud.features' docstring, written out directly over lists of
what was released before each order, not the feature folds: the release order is
engine.repartition's (release ms = max(event time, the source partition's watermark before
it), then the source's rank by name, partition, offset); a duplicate event id counts once
(its first release); a session is a run of the user's clicks, in time order, less than
30 minutes apart on one device. The score is fraud.policy.score_order of those features.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from engine.processor import InputRecord, Record
from engine.repartition import partition_of
from fraud.features import PROFILE_TTL_MS
from fraud.geoip import country_of_ip
from fraud.policy import Policy, score_order
from streams.fraud_policy import read_policy_record
from streams.records import ClickType
from streams.retries import read_copy
from streams.ticks import read_tick
from streams.validation import InvalidEvent, Limits, parse_click, parse_order

MIN = 60_000
GAP = 30 * MIN
Log = tuple[Sequence[Sequence[Record]], Sequence[Sequence[Record]]]  # records, ticks by partition


@dataclass(frozen=True)
class Event:
    event_id: str
    user: str
    time_ms: int
    device: str | None
    ip: str | None
    click: Any = None  # ClickEvent
    order: Any = None  # OrderCreated
    policy: Any = None  # Policy: a version, in force from here on in `partition`
    partition: int = -1
    release_ms: int = -1  # set by released()


def released(logs: Mapping[str, Log], limits: Limits) -> list[Event]:
    """The valid events of every source, in the release order."""
    keyed = []
    time_logs = sorted({r.topic for _, ticks in logs.values() for part in ticks for r in part})
    for rank, topic in enumerate(sorted(logs)):
        records, ticks = logs[topic]
        for p, (partition, tick_records) in enumerate(zip(records, ticks, strict=True)):
            placed = _placed(tick_records)  # source offset -> its ticks and copies, in log order
            watermark = -1
            for record in [None, *partition]:
                if record is not None:
                    event = _event(record, limits)
                    if event is not None:
                        release = max(event.time_ms, watermark)
                        event = replace(event, release_ms=release)
                        keyed.append(((release, rank, p, record.offset), event))
                        watermark = max(watermark, event.time_ms)
                for tick, copy in placed.get(-1 if record is None else record.offset, ()):
                    if copy is None:
                        watermark = max(watermark, tick.time_ms)
                        continue
                    event = _event(copy, limits)  # a re-injected event: ranked by its time log
                    if event is not None:
                        release = max(event.time_ms, watermark)
                        at = (release, len(logs) + time_logs.index(tick.topic), p, tick.offset)
                        keyed.append((at, replace(event, release_ms=release)))
                        watermark = max(watermark, event.time_ms)
    return [event for _, event in sorted(keyed, key=lambda pair: pair[0])]


def _placed(records: Sequence[Record]) -> dict[int, list[tuple[Any, Record | None]]]:
    """Source offset -> the ticks (with their time) and re-injected events' copies (as their
    originals) placed right after it, in log order."""
    placed: dict[int, list[tuple[Any, Record | None]]] = defaultdict(list)
    for record in records:
        copy = read_copy(record.headers)
        if copy is not None:
            original = InputRecord(copy.request.topic, record.partition, record.offset,
                                   copy.request.timestamp_ms, record.key, record.value)  # fmt: skip
            placed[copy.after].append((record, original))
        elif (tick := read_tick(record.value)) is not None:
            placed[tick.after].append((_Tick(record.topic, record.offset, tick.time_ms), None))
    return placed


@dataclass(frozen=True)
class _Tick:
    topic: str
    offset: int
    time_ms: int


def _event(record: Record, limits: Limits) -> Event | None:
    raw, stamp = record.value or b"", record.timestamp
    if "fraud-policy" in record.topic:
        read = read_policy_record(raw)
        if read is None:
            return None
        version = read.policy.version
        return Event(f"policy/{version}", "", read.effective_ms, None, None,
                     policy=read.policy, partition=record.partition)  # fmt: skip
    try:
        if "click" in record.topic:
            c = parse_click(raw, stamp, limits)
            return Event(c.event_id, c.user_id, c.occurred_at_ms, c.device.id, c.device.ip, click=c)
        o = parse_order(raw, stamp, limits)
    except InvalidEvent:
        return None
    device = o.device.id if o.device else None
    ip = o.device.ip if o.device else None
    return Event(o.event_id, o.user_id, o.occurred_at_ms, device, ip, order=o)


def expected_scores(
    events: Sequence[Event], policy: Policy, partitions: int
) -> dict[str, dict[str, Any]]:
    """Order event id -> {"features", "score", "alert", "version", "time_ms"}, for each order's
    first release: scored under the version last released in its user's partition, else
    `policy`."""
    in_force: dict[int, Policy] = {}
    seen: set[str] = set()
    before: dict[str, list[Event]] = defaultdict(list)  # user -> their events released before
    on: dict[tuple[str, str], list[Event]] = defaultdict(list)  # (kind, key) -> orders on it
    last_seen: dict[tuple[str, str], int] = {}  # ("user", user) or (kind, key) -> release ms
    out = {}
    for event in events:
        if event.policy is not None:
            in_force[event.partition] = event.policy
            continue
        if event.event_id in seen:
            continue
        seen.add(event.event_id)
        touched = [("user", event.user)] + (_keys(event) if event.order is not None else [])
        for at in touched:  # a key unseen for the TTL is forgotten
            if event.release_ms - last_seen.get(at, event.release_ms) > PROFILE_TTL_MS:
                (before[event.user] if at[0] == "user" else on[at]).clear()
            last_seen[at] = event.release_ms
        if event.order is not None:
            home = partition_of(f"u|{event.user}".encode(), partitions)
            scoring = in_force.get(home, policy)
            features = _user(event, before[event.user])
            for kind, key in _keys(event):
                on[kind, key].append(event)
                features.update(_key(kind, event, on[kind, key]))
            features.update(_order(event, features, scoring))
            score = score_order(features, scoring)
            out[event.event_id] = {
                "features": features, "score": score.score, "alert": score.alert,
                "version": scoring.version, "time_ms": event.time_ms,
            }  # fmt: skip
        before[event.user].append(event)
    return out


def _keys(event: Event) -> list[tuple[str, str]]:
    payment = event.order.payment
    card = payment.card_fingerprint if payment else None
    return [(kind, key) for kind, key in (("card", card), ("ip", event.ip), ("device",
            event.device)) if key is not None]  # fmt: skip


def _within(orders: list[Event], t: int, span: int) -> list[Event]:
    return [o for o in orders if t - span < o.time_ms <= t]


def _user(order: Event, history: list[Event]) -> dict[str, float]:
    t, o = order.time_ms, order.order
    orders = [e for e in history if e.order is not None] + [order]
    short, hour = _within(orders, t, 10 * MIN), _within(orders, t, 60 * MIN)
    same = [e.order.amount_cents for e in orders[:-1] if e.order.currency == o.currency]
    mean = var = 0.0
    for i, amount in enumerate(same):
        if i == 0:
            mean, var = float(amount), 0.0
        else:
            delta = amount - mean
            mean, var = mean + 0.3 * delta, 0.7 * (var + 0.3 * delta * delta)
            mean, var = round(mean, 4), round(var, 4)
    z = (o.amount_cents - mean) / max(var**0.5, mean / 4, 1.0) if same else 0.0
    clicked = [e for e in history if e.click is not None]
    device = order.device
    if device is None:  # a v1 order: the user's latest session, and its device
        last = max(clicked, key=lambda e: e.time_ms, default=None)
        device = last.device if last else None
    on_device = [e for e in clicked if device is not None and e.device == device]
    session = _session(sorted(e.time_ms for e in on_device), t)
    clicks = [e for e in on_device if session and session[0] <= e.time_ms <= session[1]]
    first_seen: dict[tuple[str, str | None], int] = {}
    for e in history:
        for field in (("d", e.device), ("i", e.ip)):
            first_seen[field] = min(first_seen.get(field, e.time_ms), e.time_ms)
    history_start = min((e.time_ms for e in history), default=None)

    def new(field: tuple[str, str | None]) -> int:
        """Seen after the user was, at most an hour before t (never: now)."""
        if field[1] is None or history_start is None:
            return 0
        first = first_seen.get(field, t)
        return int(history_start < first and t - first <= 60 * MIN)

    times = sorted(e.time_ms for e in clicks)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    return {
        "user_orders_10m": len(short),
        "user_orders_1h": len(hour),
        "user_amount_1h": sum(e.order.amount_cents for e in hour if e.order.currency == o.currency),
        "user_cards_10m": len({c for e in short if (c := _card(e)) is not None}),
        "amount_z": round(z, 4) if same else 0.0,
        "first_order": 0 if same else 1,
        "no_recent_session": 0 if session else 1,
        "session_pages": sum(e.click.type is ClickType.PAGE_VIEW for e in clicks),
        "session_age_s": round((t - session[0]) / 1000, 3) if session else 0.0,
        "no_cart": 0 if any(e.click.type is ClickType.ADD_TO_CART for e in clicks) else 1,
        "fast_click_share": round(sum(g < 1000 for g in gaps) / len(gaps), 4)
        if len(gaps) >= 4
        else 0.0,
        "new_device": new(("d", device)),
        "new_ip": new(("i", order.ip)),
    }


def _session(click_times: list[int], t: int) -> tuple[int, int] | None:
    """(first, last) of the latest run of clicks less than 30 min apart, if its last click is
    no more than 30 min before t."""
    if not click_times:
        return None
    first = last = click_times[0]
    for time_ms in click_times[1:]:
        if time_ms - last >= GAP:
            first = time_ms
        last = time_ms
    return (first, last) if t - last <= GAP else None


def _card(event: Event) -> str | None:
    payment = event.order.payment
    return payment.card_fingerprint if payment else None


def _key(kind: str, order: Event, orders: list[Event]) -> dict[str, float]:
    t = order.time_ms
    hour, short = _within(orders, t, 60 * MIN), _within(orders, t, 10 * MIN)
    everyone = list(dict.fromkeys(e.user for e in orders))[:16]
    if kind == "card":
        currency = order.order.currency
        amount = sum(e.order.amount_cents for e in hour if e.order.currency == currency)
        return {
            "card_orders_10m": len(short), "card_orders_1h": len(hour), "card_amount_1h": amount,
            "card_users": len(everyone),
        }  # fmt: skip
    if kind == "ip":
        return {
            "ip_orders_10m": len(short), "ip_orders_1h": len(hour),
            "ip_users_1h": len({e.user for e in hour}),
        }  # fmt: skip
    return {
        "device_orders_10m": len(short), "device_orders_1h": len(hour),
        "device_users": len(everyone),
    }  # fmt: skip


def _order(order: Event, features: dict[str, float], policy: Policy) -> dict[str, float]:
    o = order.order
    rate = policy.rates.get(o.currency)

    def eur(amount: float) -> float:
        return -1.0 if rate is None else round(amount * rate, 2)

    card_country = o.payment.card_country if o.payment else None
    ip_country = country_of_ip(order.ip) if order.ip else None
    amount_eur = eur(o.amount_cents)
    return {
        "amount_eur": amount_eur,
        "small_order": int(0 <= amount_eur <= policy.small_order_eur_cents),
        "ip_card_country_mismatch": int(
            ip_country is not None and card_country is not None and ip_country != card_country
        ),
        "user_amount_1h_eur": eur(features.get("user_amount_1h", 0)),
        "card_amount_1h_eur": eur(features.get("card_amount_1h", 0)),
    }
