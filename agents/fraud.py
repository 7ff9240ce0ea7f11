"""Fraud scoring as engine processors: every accepted OrderCreated scored once, from the state
of its user, card, IP and device, under a versioned policy (fraud.policy).

  clicks (+ ticks) ─► rekey_clicks_for_fraud ─┐
  orders (+ ticks) ─► rekey_orders_for_fraud ─┼─► <app>-fraud-repartition ─► profile_orders
  policy (+ ticks) ─► rekey_policy_for_fraud ─┘        ─► <app>-fraud-parts ─► score_orders
                                                   ─► <app>-scored-orders, <app>-fraud-alerts

Why the re-keying: the inputs are keyed by user, but card, IP and device velocity is state
per card, IP and device, so each order is forwarded once per key it has; and the user's own
clicks and orders go through the same topic so that one release order (engine.repartition:
by event time, once every clicks and orders partition has passed it) puts an order after
the clicks that came before it, even when the clicks partition lags the orders partition.
That is the rule of when to score: once both streams' watermarks (ticks count) pass the
order's time, so a quiet partition delays a score by the idle tick's bound at most. Policy
versions come through the same topic, so each order is scored under the version released
before it (policy_forwarder).

profile_orders folds each released entry into its key's state (fraud.features) and sends the
order's part of the features per key: user, card, IP, device. score_orders collects an
order's parts (one collector per order id, keyed by it) and scores it once all are in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

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
    Sink,
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
    FraudOutcome,
    add_count,
    alert_value,
    click_entry,
    marks_prefix,
    order_entries,
    order_fields,
    order_of,
    pane_counts,
    part_value,
    policy_entry,
    progress_value,
    read_fraud_entry,
    read_part,
    read_progress,
    score_bucket,
    scored_order_value,
)
from streams.fraud_policy import read_policy_record
from streams.topics import Topology
from streams.validation import InvalidEvent, Limits, parse_click, parse_order
from tables.windows import PANE_MS

PROFILE_TABLE, SCORE_TABLE = "fraud_profiles", "fraud_scores"
POLICY_LEAD_MS = 20_000  # a published version takes effect this long after it is written
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
ABANDON_MS = 24 * HOUR_MS  # scored orders' marks are kept this long before the profiles' front


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


def policy_forwarder(topics: Topology, limits: Limits, clock_app_id: str) -> Repartition:
    """Each usable policy version to the fraud topic's partition of the same number (every
    policy partition holds every version), released by when it takes effect. The policy log
    is a control log: its ticks are the wall clock plus half of POLICY_LEAD_MS, every 5 s
    (engine.processor.Inputs), so they never hold orders back, and a version is stamped
    POLICY_LEAD_MS after it is written (clickstream.fraud_policy): later than every tick
    before it."""

    def rekey(record: Record) -> list[Entry]:
        read = read_policy_record(record.value)
        if read is None:
            return []  # score_orders, reading the same log, dead-letters it
        key, value = policy_entry(read.policy.version)
        return [Entry(key, value, read.effective_ms, partition=record.partition)]

    return Repartition(
        "rekey_policy_for_fraud",
        topics.fraud_repartition.name,
        Inputs(
            topics.fraud_policy.name,
            time_log=topics.fraud_policy_ticks.name,
            wall_ticks_lead_ms=POLICY_LEAD_MS // 2,
        ),
        rekey,
        topics.fraud_repartition.partitions,
        topics.dead_letters.name,
        clock_app_id,
        limits.max_future_skew_ms,
        entries_move_clock=False,
    )


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
    released order's parts to the scorer, the user part with the policy version in force."""

    name, table, sink = "profile_orders", PROFILE_TABLE, None
    keyspace = Keyspace(
        *ALIGNMENT_PREFIXES,
        # an index entry lands before the profile it indexes, and goes after it moved on
        Prefix("X", "expiry index: day last seen|<profile key> -> ''", EFFECTS[0], EFFECTS[2]),
        Prefix("P", "profiles: <u|c|i|d>|<user, card, IP, device> -> feature state", EFFECTS[1]),
        Prefix("V", "the policy version in force, and the entry that set it", EFFECTS[1]),
    )

    def __init__(self, topics: Topology) -> None:
        self.inputs = Inputs(topics.fraud_repartition.name)
        self.outputs = {"parts": topics.fraud_parts.name, "dead_letters": topics.dead_letters.name}
        self.partitions = topics.fraud_parts.partitions
        sources = (topics.clicks, topics.orders, topics.fraud_policy)
        self.alignment = Alignment(
            {topic.name: topic.partitions for topic in sources},
            logs=(topics.clicks_ticks.name, topics.orders_ticks.name),  # re-injected events'
        )

    def apply(
        self, partition: int, records: Sequence[Record | Poisoned], state: Store, settled: Store
    ) -> Outcome:
        watermark_before = self.alignment.watermark(partition, state)
        aligned = self.alignment.take(partition, records, state)
        writes, sends = aligned.writes, []
        for record in aligned.foreign:
            sends.append(_letter(record, "foreign_record", "not an entry or mark of the engine"))
        in_force_key = b"V|%d" % partition
        raw = state.get(in_force_key)
        policy, policy_seq = orjson.loads(raw) if raw else (0, 0)
        profiles: dict[bytes, dict[str, Any] | None] = {}  # this batch's, decoded once
        stored_days: dict[bytes, int | None] = {}  # their index day as stored
        changed: dict[bytes, None] = {}  # in order: the writes must not depend on hashing
        for entry in aligned.released:
            event = read_fraud_entry(entry.value)
            if isinstance(event, int):  # a policy version: in force from here on
                if entry.seq > policy_seq:
                    policy, policy_seq = event, entry.seq
                    writes[in_force_key] = orjson.dumps([policy, policy_seq])
                continue
            key = b"P|%d|%s" % (partition, entry.key)
            if key in profiles:
                profile = profiles[key]
            else:
                raw = state.get(key)
                profile = profiles[key] = orjson.loads(raw) if raw else None
                stored_days[key] = _day(profile.get("r", -1)) if profile else None
            if profile is not None and entry.seq <= profile["q"]:
                continue  # applied by a commit cut short: its part went out before its state
            release_ms = entry.head.release_ms
            if (
                profile is not None
                and release_ms - profile.get("r", release_ms) > rules.PROFILE_TTL_MS
            ):
                profile = None  # unseen too long: forgotten
            prefix = entry.key[:2].decode()
            if profile is None:
                profile = rules.new_user() if prefix == USER else rules.new_key()
            if isinstance(event, Order):
                kind = KIND_OF_PREFIX[prefix]
                if prefix == USER:
                    features = rules.add_user_order(profile, event)
                    version = policy
                else:
                    features, version = rules.add_key_order(kind, profile, event), None
                if features is not None:
                    value = part_value(kind, event, features, version, release_ms)
                    sends.append(Send("parts", event.event_id.encode(), value, self._to(event)))
            else:
                rules.add_click(profile, event)
            profile["q"], profile["r"] = entry.seq, release_ms
            profiles[key] = profile
            changed[key] = None
        for key in changed:
            profile = profiles[key]
            assert profile is not None
            writes[key] = orjson.dumps(profile)
            day, before = _day(profile["r"]), stored_days[key]
            if day != before:
                writes[_expiry_key(partition, day, key)] = b""
                if before is not None:
                    writes[_expiry_key(partition, before, key)] = None
        if aligned.watermark_ms > watermark_before:  # after the parts: see ScoreOrders
            value = progress_value(partition, aligned.watermark_ms)
            sends += [Send("parts", None, value, to) for to in range(self.partitions)]
        if _day(aligned.watermark_ms) > _day(watermark_before) >= 0:
            self._forget_stale(partition, aligned.watermark_ms, state, writes)
        return Outcome(partition, writes, sends)

    def _forget_stale(
        self, partition: int, watermark_ms: int, state: Store, writes: dict[bytes, bytes | None]
    ) -> None:
        """Once a day of the watermark: delete the profiles last seen more than the TTL before
        it, and their index entries. Invisible to the features: every entry released from here
        on is at or past the watermark, so it would find them stale (and start afresh) anyway."""
        first_kept = _day(watermark_ms - rules.PROFILE_TTL_MS)  # an earlier day is all stale
        prefix = b"X|%d|" % partition
        for index_key, _ in state.items(prefix):
            day, profile_key = (
                int(index_key[len(prefix) : len(prefix) + 6]),
                index_key[len(prefix) + 7 :],
            )
            if day >= first_kept:
                break  # sorted by day
            if index_key in writes:
                continue  # moved on in this batch
            writes[index_key] = None
            if profile_key not in writes:
                raw = state.get(profile_key)
                if raw is not None and _day(orjson.loads(raw).get("r", -1)) <= day:
                    writes[profile_key] = None

    def _to(self, order: Order) -> int:
        return partition_of(order.event_id.encode(), self.partitions)

    def position(self, partition: int, state: Store) -> Position:
        return Position(-1, watermark_ms=self.alignment.watermark(partition, state))

    def forget(self, partition: int) -> None:
        pass  # no in-memory indexes


class ScoreOrders:
    """Collects each order's parts and scores it once all have come (one collector per order
    id), under the policy version its user part names: S|p|<event id> -> {"t": order time,
    "parts": {kind: features}, "v": version} until then; a version not read yet (it comes
    beside, from the policy log) keeps the collector waiting for it.

    A scored order is marked (D|p|<event id> -> [its time, score bucket, alert 0/1], written
    before its collector's delete): a part sent again later (the profile's commit cut short)
    is then dropped. A commit cut short before the mark landed scores the order again: the
    same record, under the same id.

    What is dropped, once per hour of the profiles' front (F|p|<profile partition>: each
    profile partition's progress marks; the front is their minimum): collectors of orders
    released before it, which can never complete (every part of theirs would have come
    before the mark: a duplicate's, whose other keys knew it), and marks of orders in panes
    before the one ABANDON_MS before it. The front, not the orders seen, so that a profile
    partition racing ahead (a backfill) cannot make a slower one's parts look abandoned.

    The sink gets each batch's scored orders and alerts, and the counts of the panes (by order
    time) they fell in: orders, alerts and orders per score bucket, as absolute values counted
    from the marks (an index rebuilt from them when forgotten), so they are exact whatever
    was redone, for every pane the marks still cover."""

    name, table = "score_orders", SCORE_TABLE
    keyspace = Keyspace(
        Prefix("L", "the policy versions read: version -> its record", 0),
        Prefix("D", "scored orders: event id -> order time, score bucket, alert", 0),
        Prefix("S", "orders awaiting parts: event id -> order time, parts so far", 1),
        Prefix("F", "each profile partition's front: every entry before it released", 1),
    )

    def __init__(
        self, topics: Topology, policy: Policy, pane_ms: int = PANE_MS, sink: Sink | None = None
    ) -> None:
        self.inputs = Inputs(topics.fraud_parts.name, sides=(topics.fraud_policy.name,))
        self.outputs = {
            "scored": topics.scored_orders.name,
            "alerts": topics.fraud_alerts.name,
            "dead_letters": topics.dead_letters.name,
        }
        self.policy = policy  # before any version is published (version 0 in the parts)
        self._policies: dict[int, Policy] = {}  # versions read, parsed (they never change)
        self.pane_ms, self.sink = pane_ms, sink
        self.profile_partitions = topics.fraud_repartition.partitions
        self._panes: dict[int, dict[int, list[int]]] = {}  # partition -> pane start -> counts

    def apply(
        self, partition: int, records: Sequence[Record | Poisoned], state: Store, settled: Store
    ) -> Outcome:
        batch = _Batch(partition, state, self._counted(partition, state))
        before = self._front(batch)
        arrived = set()
        for record in records:
            source = record.record if isinstance(record, Poisoned) else record
            if source.topic != self.inputs.source:
                version = self._read_policy(batch, source)
                if version is not None:
                    arrived.add(version)
                continue
            value = None if isinstance(record, Poisoned) else source.value
            progress = read_progress(value, self.profile_partitions)
            if progress is not None:
                of, front = progress
                if front > int(batch.get(_front_key(partition, of)) or -1):
                    batch.writes[_front_key(partition, of)] = str(front).encode()
                continue
            part = read_part(value)
            if part is None:
                batch.sends.append(_letter(source, "foreign_record", "not a fraud part"))
                continue
            if batch.get(_scored_key(partition, part.order.event_id)) is not None:
                continue  # scored already: a part sent again
            key = b"S|%d|%s" % (partition, part.order.event_id.encode())
            raw = batch.get(key)
            collector: dict[str, Any] = (
                orjson.loads(raw)
                if raw
                else {"t": part.order.time_ms, "r": part.release_ms, "parts": {}}
            )
            collector["parts"][part.kind] = part.features
            collector["order"], collector["of"] = order_fields(part.order), part.of
            if part.policy is not None:
                collector["v"] = part.policy
            self._score_or_keep(batch, key, collector)
        if arrived:
            self._score_waiting(batch, arrived)
        front = self._front(batch)
        if front // HOUR_MS > before // HOUR_MS:
            self._drop_abandoned(batch, front, self._pane_of(front - ABANDON_MS))
        touched = {start: list(batch.panes[start]) for start in batch.touched}
        staged = FraudOutcome(partition, touched, batch.scored, batch.alerts)
        return Outcome(partition, batch.writes, batch.sends, staged)

    def _score_or_keep(self, batch: _Batch, key: bytes, collector: dict[str, Any]) -> None:
        policy = self._version(batch, collector.get("v"))
        if len(collector["parts"]) < collector["of"] or policy is None:
            batch.writes[key] = orjson.dumps(collector)
            return
        order = Order(*collector["order"])
        merged = order_features(order, collector["parts"], policy)
        score = score_order(merged, policy)
        bucket, alert = score_bucket(score.score), int(score.alert)
        mark = orjson.dumps([order.time_ms, bucket, alert])
        batch.writes[_scored_key(batch.partition, order.event_id)] = mark
        batch.writes[key] = None
        batch.count(self._pane_of(order.time_ms), bucket, alert)
        event_key, scored = order.event_id.encode(), scored_order_value(order, merged, score)
        batch.sends.append(Send("scored", event_key, scored))
        batch.scored.append((str(order.order_id), order.time_ms, scored))
        if score.alert:
            value = alert_value(order, score)
            batch.sends.append(Send("alerts", event_key, value))
            batch.alerts.append((str(order.order_id), order.time_ms, value))

    def _score_waiting(self, batch: _Batch, versions: set[int]) -> None:
        """Score the complete collectors that waited for one of `versions` (rare: a version is
        read beside well before the orders released after it come)."""
        prefix = b"S|%d|" % batch.partition
        waiting = {k: v for k, v in batch.state.items(prefix) if k not in batch.writes}
        waiting.update((k, v) for k, v in batch.writes.items() if k.startswith(prefix) and v)
        for key, raw in sorted(waiting.items()):
            collector = orjson.loads(raw)
            if collector.get("v") in versions:
                self._score_or_keep(batch, key, collector)

    def _read_policy(self, batch: _Batch, record: Record) -> int | None:
        """A version read beside: kept (L|p|<version>); its number, if new here."""
        read = read_policy_record(record.value)
        if read is None:
            batch.sends.append(_letter(record, "bad_policy", "not a usable fraud policy record"))
            return None
        version = read.policy.version
        key = b"L|%d|%d" % (batch.partition, version)
        if batch.get(key) is not None:
            return None  # read before (a redelivery)
        batch.writes[key] = record.value
        self._policies[version] = read.policy
        return version

    def _version(self, batch: _Batch, version: int | None) -> Policy | None:
        """The policy of a version (0 or none yet: the configured one); None: not read yet."""
        if not version:
            return self.policy
        policy = self._policies.get(version)
        if policy is None:
            raw = batch.get(b"L|%d|%d" % (batch.partition, version))
            read = read_policy_record(raw) if raw else None
            if read is None:
                return None
            policy = self._policies[version] = read.policy
        return policy

    def _front(self, batch: _Batch) -> int:
        fronts = (batch.get(_front_key(batch.partition, q)) for q in range(self.profile_partitions))
        return min(int(front or -1) for front in fronts)

    def _drop_abandoned(self, batch: _Batch, front_ms: int, cutoff_ms: int) -> None:
        """Collectors released before the front; marks of orders before `cutoff_ms` (a pane
        start), and the counts of the panes before it: the index stays what the marks count."""
        for key, raw in batch.state.items(b"S|%d|" % batch.partition):
            collector = orjson.loads(raw)
            if key not in batch.writes and collector.get("r", collector["t"]) < front_ms:
                batch.writes[key] = None
        marks = marks_prefix(batch.partition)
        for key, raw in batch.state.items(marks):
            if key not in batch.writes and orjson.loads(raw)[0] < cutoff_ms:
                batch.writes[key] = None
        for key, value in list(batch.writes.items()):  # an old order scored in this batch
            if key.startswith(marks) and value is not None and orjson.loads(value)[0] < cutoff_ms:
                batch.writes[key] = None
        for start in [s for s in batch.panes if s < cutoff_ms]:
            del batch.panes[start]
            batch.touched.pop(start, None)

    def _counted(self, partition: int, state: Store) -> dict[int, list[int]]:
        """The pane counts of a partition's marks (rebuilt from them when forgotten)."""
        panes = self._panes.get(partition)
        if panes is None:
            marks = (raw for _key, raw in state.items(marks_prefix(partition)))
            panes = self._panes[partition] = pane_counts(marks, self.pane_ms)
        return panes

    def _pane_of(self, time_ms: int) -> int:
        return time_ms - time_ms % self.pane_ms

    def position(self, partition: int, state: Store) -> Position:
        return Position(-1)

    def forget(self, partition: int) -> None:
        self._panes.pop(partition, None)  # the parsed policies are the same for every one


@dataclass(slots=True)
class _Batch:
    """One partition's batch in the scorer: its state, and what it writes and sends."""

    partition: int
    state: Store
    panes: dict[int, list[int]]  # the partition's pane counts (ScoreOrders._counted)
    writes: dict[bytes, bytes | None] = field(default_factory=dict)
    sends: list[Send] = field(default_factory=list)
    scored: list[tuple[str, int, bytes]] = field(default_factory=list)
    alerts: list[tuple[str, int, bytes]] = field(default_factory=list)
    touched: dict[int, None] = field(default_factory=dict)  # pane starts counted, in order

    def get(self, key: bytes) -> bytes | None:
        return self.writes[key] if key in self.writes else self.state.get(key)

    def count(self, pane: int, bucket: int, alert: int) -> None:
        add_count(self.panes, pane, bucket, alert)
        self.touched[pane] = None


def _day(time_ms: int) -> int:
    return time_ms // DAY_MS if time_ms >= 0 else -1


def _expiry_key(partition: int, day: int, profile_key: bytes) -> bytes:
    return b"X|%d|%06d|%s" % (partition, day, profile_key)


def _front_key(partition: int, profile_partition: int) -> bytes:
    return b"F|%d|%d" % (partition, profile_partition)


def _scored_key(partition: int, event_id: str) -> bytes:
    return marks_prefix(partition) + event_id.encode()


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
