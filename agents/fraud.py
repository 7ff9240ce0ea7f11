"""Fraud scoring as engine processors: every accepted OrderCreated scored once, from the state
of its user, card, IP and device, under a versioned policy (fraud.policy).

  clicks (+ ticks) ─► rekey_clicks_for_fraud ─┐
                                              ├─► <app>-fraud-repartition ─► profile_orders
  orders (+ ticks) ─► rekey_orders_for_fraud ─┘        ─► <app>-fraud-parts ─► score_orders
                                                   ─► <app>-scored-orders, <app>-fraud-alerts

Why the re-keying: the inputs are keyed by user, but card, IP and device velocity is state
per card, IP and device, so each order is forwarded once per key it has; and the user's own
clicks and orders go through the same topic so that one release order (engine.repartition:
by event time, once every clicks and orders partition has passed it) puts an order after
the clicks that came before it, even when the clicks partition lags the orders partition.
That is the rule of when to score: once both streams' watermarks (ticks count) pass the
order's time, so a quiet partition delays a score by the idle tick's bound at most.

profile_orders folds each released entry into its key's state (fraud.features) and sends the
order's part of the features per key: user, card, IP, device. score_orders collects an
order's parts (one collector per order id, keyed by it) and scores it once all are in.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from engine.processor import (
    Inputs,
    Keyspace,
    Outcome,
    Poisoned,
    Position,
    Prefix,
    Record,
    Send,
    Store,
)
from engine.repartition import (
    ALIGNMENT_PREFIXES,
    EFFECTS,
    Alignment,
    Entry,
    Rekey,
    Repartition,
    partition_of,
)
from fraud import features as rules
from fraud.features import Features, Order
from fraud.geoip import country_of_ip
from fraud.policy import Policy, score_order
from streams.dead_letters import dead_letter
from streams.fraud import (
    KIND_OF_PREFIX,
    USER,
    alert_value,
    click_entry,
    order_entries,
    order_of,
    part_value,
    read_fraud_entry,
    read_part,
    scored_order_value,
)
from streams.topics import Topology
from streams.validation import InvalidEvent, Limits, parse_click, parse_order

PROFILE_TABLE, SCORE_TABLE = "fraud_profiles", "fraud_scores"
HOUR_MS = 3_600_000
ABANDON_MS = 24 * HOUR_MS  # a collector still incomplete this long after newer orders


def click_forwarder(topics: Topology, limits: Limits, clock_app_id: str) -> Repartition:
    """Each valid click to its user's entry (an invalid one is aggregate_clicks' dead letter)."""

    def rekey(record: Record) -> list[Entry]:
        try:
            click = parse_click(record.value or b"", record.timestamp, limits)
        except InvalidEvent:
            return []
        key, value = click_entry(click)
        return [Entry(key, value, click.occurred_at_ms)]

    return _forwarder("rekey_clicks_for_fraud", topics, True, rekey, limits, clock_app_id)


def order_forwarder(topics: Topology, limits: Limits, clock_app_id: str) -> Repartition:
    """Each valid order to its user's, card's, IP's and device's entries."""

    def rekey(record: Record) -> list[Entry]:
        try:
            order = order_of(parse_order(record.value or b"", record.timestamp, limits))
        except InvalidEvent:
            return []
        return [Entry(key, value, order.time_ms) for key, value in order_entries(order)]

    return _forwarder("rekey_orders_for_fraud", topics, False, rekey, limits, clock_app_id)


def _forwarder(
    name: str, topics: Topology, clicks: bool, rekey: Rekey, limits: Limits, clock_app_id: str
) -> Repartition:
    source, time_log = (
        (topics.clicks, topics.clicks_ticks) if clicks else (topics.orders, topics.orders_ticks)
    )
    return Repartition(
        name,
        topics.fraud_repartition.name,
        Inputs(source.name, time_log=time_log.name),
        rekey,
        topics.fraud_repartition.partitions,
        topics.dead_letters.name,
        clock_app_id,
        limits.max_future_skew_ms,
    )


class ProfileOrders:
    """The feature state of users, cards, IPs and devices, folded in the release order; each
    released order's parts to the scorer."""

    name, table, sink = "profile_orders", PROFILE_TABLE, None
    keyspace = Keyspace(
        *ALIGNMENT_PREFIXES,
        Prefix("P", "profiles: <u|c|i|d>|<user, card, IP, device> -> feature state", EFFECTS[0]),
    )

    def __init__(self, topics: Topology) -> None:
        self.inputs = Inputs(topics.fraud_repartition.name)
        self.outputs = {"parts": topics.fraud_parts.name, "dead_letters": topics.dead_letters.name}
        self.partitions = topics.fraud_parts.partitions
        sources = (topics.clicks, topics.orders)
        self.alignment = Alignment({topic.name: topic.partitions for topic in sources})

    def apply(
        self, partition: int, records: Sequence[Record | Poisoned], state: Store, settled: Store
    ) -> Outcome:
        aligned = self.alignment.take(partition, records, state)
        writes, sends = aligned.writes, []
        for record in aligned.foreign:
            sends.append(_letter(record, "foreign_record", "not an entry or mark of the engine"))
        for entry in aligned.released:
            key = b"P|%d|%s" % (partition, entry.key)
            raw = writes[key] if key in writes else state.get(key)
            profile = orjson.loads(raw) if raw else None
            if profile is not None and entry.seq <= profile["q"]:
                continue  # applied by a commit cut short: its part went out before its state
            event = read_fraud_entry(entry.value)
            prefix = entry.key[:2].decode()
            if profile is None:
                profile = rules.new_user() if prefix == USER else rules.new_key()
            features: Features | None = None
            if isinstance(event, Order):
                kind = KIND_OF_PREFIX[prefix]
                if prefix == USER:
                    features = rules.add_user_order(profile, event)
                else:
                    features = rules.add_key_order(kind, profile, event)
                if features is not None:
                    value = part_value(kind, event, features)
                    sends.append(Send("parts", event.event_id.encode(), value, self._to(event)))
            else:
                rules.add_click(profile, event)
            profile["q"] = entry.seq
            writes[key] = orjson.dumps(profile)
        return Outcome(partition, writes, sends)

    def _to(self, order: Order) -> int:
        return partition_of(order.event_id.encode(), self.partitions)

    def position(self, partition: int, state: Store) -> Position:
        return Position(-1, watermark_ms=self.alignment.watermark(partition, state))

    def forget(self, partition: int) -> None:
        pass  # no in-memory indexes


class ScoreOrders:
    """Collects each order's parts and scores it once all have come (one collector per order
    id): S|p|<event id> -> {"t": order time, "parts": {kind: features}} until then.

    A part sent again after its order was scored (the profile's commit cut short) starts a
    collector that may never fill: collectors of orders more than ABANDON_MS older than the
    newest order seen here (W|p) are dropped, once per hour of event time. A part set sent
    again in full scores the order again: the same record, under the same id."""

    name, table, sink = "score_orders", SCORE_TABLE, None
    keyspace = Keyspace(
        Prefix("S", "orders awaiting parts: event id -> order time, parts so far", 0),
        Prefix("W", "the newest order time seen, for dropping abandoned collectors", 0),
    )

    def __init__(self, topics: Topology, policy: Policy) -> None:
        self.inputs = Inputs(topics.fraud_parts.name)
        self.outputs = {
            "scored": topics.scored_orders.name,
            "alerts": topics.fraud_alerts.name,
            "dead_letters": topics.dead_letters.name,
        }
        self.policy = policy

    def apply(
        self, partition: int, records: Sequence[Record | Poisoned], state: Store, settled: Store
    ) -> Outcome:
        writes: dict[bytes, bytes | None] = {}
        sends: list[Send] = []
        newest_key = b"W|%d" % partition
        before = newest = int(state.get(newest_key) or -1)
        for record in records:
            source = record.record if isinstance(record, Poisoned) else record
            part = None if isinstance(record, Poisoned) else read_part(source.value)
            if part is None:
                sends.append(_letter(source, "foreign_record", "not a fraud part"))
                continue
            kind, of, order, features = part
            newest = max(newest, order.time_ms)
            key = b"S|%d|%s" % (partition, order.event_id.encode())
            raw = writes[key] if key in writes else state.get(key)
            parts = orjson.loads(raw)["parts"] if raw else {}
            parts[kind] = features
            if len(parts) < of:
                writes[key] = orjson.dumps({"t": order.time_ms, "parts": parts})
                continue
            writes[key] = None
            merged = order_features(order, parts, self.policy)
            score = score_order(merged, self.policy)
            event_key = order.event_id.encode()
            sends.append(Send("scored", event_key, scored_order_value(order, merged, score)))
            if score.alert:
                sends.append(Send("alerts", event_key, alert_value(order, score)))
        if newest > before:
            writes[newest_key] = str(newest).encode()
            if newest // HOUR_MS > before // HOUR_MS:
                self._drop_abandoned(partition, newest - ABANDON_MS, state, writes)
        return Outcome(partition, writes, sends)

    def _drop_abandoned(
        self, partition: int, cutoff_ms: int, state: Store, writes: dict[bytes, bytes | None]
    ) -> None:
        for key, raw in state.items(b"S|%d|" % partition):
            if key not in writes and orjson.loads(raw)["t"] < cutoff_ms:
                writes[key] = None

    def position(self, partition: int, state: Store) -> Position:
        return Position(-1)

    def forget(self, partition: int) -> None:
        pass


def order_features(order: Order, parts: dict[str, Features], policy: Policy) -> Features:
    """Every part's features, and the order's own (fraud.features: small_order, the country
    mismatch, amounts in EUR cents through the policy's rates; -1 where the currency has none)."""
    merged: Features = {}
    for kind in ("user", "card", "ip", "device"):
        merged.update(parts.get(kind, {}))

    def eur(amount: float) -> float:
        value = policy.eur_cents(int(amount), order.currency)
        return -1.0 if value is None else round(value, 2)

    amount_eur = eur(order.amount)
    ip_country = country_of_ip(order.ip) if order.ip else None
    merged["amount_eur"] = amount_eur
    merged["small_order"] = int(0 <= amount_eur <= policy.small_order_eur_cents)
    merged["ip_card_country_mismatch"] = int(
        ip_country is not None
        and order.card_country is not None
        and ip_country != order.card_country
    )
    merged["user_amount_1h_eur"] = eur(merged.get("user_amount_1h", 0))
    merged["card_amount_1h_eur"] = eur(merged.get("card_amount_1h", 0))
    return merged


def _letter(record: Record, reason: str, detail: str) -> Send:
    key, value, headers = dead_letter(record, reason, detail)
    return Send("dead_letters", key, value, headers=headers)
