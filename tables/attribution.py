"""Orders attributed to the entry referrer of their session: a join of the orders and clicks
streams by user and event time, kept in the clicks partition's state (pure; state passed in).

  an order at t counts as attributed|<entry host>|<currency> [orders, cents] in the pane
  holding t, for the user's session with start <= t < end + gap (at most one: a user's
  sessions lie a gap apart); host "(direct)" if that session had no referrer, "(no session)"
  if there is none.

The orders reach the clicks partition as order facts records (streams/order_facts.py): after
each batch, an orders partition forwards the orders it accepted and its watermark to partition
p of the app's order facts topic, which clicks partition p reads beside its clicks (both input
topics are keyed by user). How the two logs interleave changes nothing: a pane is attributed
by watermarks alone. A pane's attribution is
final once the joined watermark, min(clicks watermark, forwarded orders watermark), passes
its close (end + grace): every on-time order of the pane has arrived, since the orders side
forwards an order before any watermark that closes its pane; and every session that can
cover its time is final in start and entry, since a click that would move its start or bridge
into it is older than the pane, hence late. Sessions that close while orders lag stay (R
records) until the orders watermark passes them too. Result per pane and clicks partition:
one WindowResult of stream "attribution" (tumbling only).

State in the clicks partition's key space (written in window_state.KEYSPACE's order):
  O|p|<pane>|<order id>        -> [user, time, currency, cents]   awaits its pane's close
  A|p|<pane>                   -> {"v": {dimension: [orders, cents]}}  (one key, so a
                                   redone close finds all of it or nothing; deleted once the
                                   close is committed)
  R|p|<user>                   -> [[start, end, entry host], ...]  closed sessions kept for
                                   orders still to come
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import orjson

from tables.bounded import bounded
from tables.windows import MAX_COUNT, WindowSpec

ATTRIBUTED = "attributed"  # serving.keys.ATTRIBUTED (tables never import serving)
DIRECT = "(direct)"
NO_SESSION = "(no session)"
FACT_ID_PREFIX = "order:"  # an order's id in the clicks partition's dedup index


class OrderFact(NamedTuple):
    """What an accepted order tells the clicks side."""

    user: str
    currency: str
    cents: int


@dataclass(slots=True)
class OrderFacts:
    """Not an event: an orders partition's accepted orders and its watermark after them."""

    offset: int
    # event_id, user, time, currency, cents, offset in the orders partition (-1: unknown)
    orders: list[tuple[str, str, int, str, int, int]]
    watermark_ms: int


@dataclass(frozen=True, slots=True)
class LateOrder:
    """Facts of an order whose pane's attribution had already closed (not expected: the orders
    side forwards every order before the watermark that closes its pane)."""

    offset: int  # of its facts record
    event_id: str
    time_ms: int
    pane_ms: int
    joined_watermark_ms: int
    source_offset: int = -1  # of the order in its orders partition (-1: unknown)


class Store(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def items(self, prefix: bytes) -> Iterable[tuple[bytes, bytes]]: ...


class JoinProgress(Protocol):
    """The fields of window_state.Progress this join keeps."""

    orders_watermark_ms: int
    order_panes: list[int]  # panes with orders awaiting attribution
    attributed: list[int]  # panes attributed whose A cells are not yet deleted
    late_orders: int


@dataclass
class Attribution:
    """One pane's attribution in one clicks partition: dimension -> [orders, cents]."""

    start_ms: int
    counts: dict[str, list[int]]


@dataclass
class JoinOutcome:
    writes: dict[bytes, bytes | None] = field(default_factory=dict)
    panes: list[Attribution] = field(default_factory=list)  # closed now
    late: list[LateOrder] = field(default_factory=list)


def fact_key(partition: int, pane: int, event_id: str) -> bytes:
    return f"O|{partition}|{pane}|{event_id}".encode()


def attributed_key(partition: int, pane: int) -> bytes:
    return f"A|{partition}|{pane}".encode()


def retained_prefix(partition: int) -> bytes:
    return f"R|{partition}|".encode()


def retained_key(partition: int, user: str) -> bytes:
    return retained_prefix(partition) + user.encode()


def host_of_session(sessions: Iterable[list[Any]], time_ms: int, gap_ms: int) -> str:
    """The entry host of the session covering `time_ms` (sessions as [start, end, ..., host])."""
    for session in sessions:
        if session[0] <= time_ms < session[1] + gap_ms:
            return session[-1] or DIRECT
    return NO_SESSION


class OrderJoin:
    """One batch of one clicks partition's join: facts taken in offset order, then `close`."""

    def __init__(
        self,
        partition: int,
        spec: WindowSpec,
        gap_ms: int,
        store: Store,
        progress: JoinProgress,
        retained: dict[str, list[list[Any]]],
    ) -> None:
        self.partition, self.spec, self.gap_ms = partition, spec, gap_ms
        self.store, self.progress = store, progress
        self.retained = retained  # user -> closed sessions kept (the in-memory index)
        self.orders_before = progress.orders_watermark_ms
        self.new: dict[int, dict[str, list[Any]]] = {}  # pane -> order id -> fact
        self.changed_users: set[str] = set()
        self.out = JoinOutcome()

    def take(
        self,
        item: OrderFacts,
        clicks_watermark: int,
        first_seen: Callable[[str, int, int], bool],
    ) -> None:
        """Facts at their place in the log; `clicks_watermark` is the clicks watermark there."""
        progress = self.progress
        joined = min(clicks_watermark, progress.orders_watermark_ms)
        for event_id, user, time_ms, currency, cents, source_offset in item.orders:
            if not first_seen(FACT_ID_PREFIX + event_id, item.offset, time_ms):
                continue  # forwarded again (the orders side redid a batch)
            pane = self.spec.start_of(time_ms)
            if joined >= self.spec.closes_at(pane):
                progress.late_orders += 1
                late = LateOrder(item.offset, event_id, time_ms, pane, joined, source_offset)
                self.out.late.append(late)
                continue
            self.new.setdefault(pane, {})[event_id] = [user, time_ms, currency, cents]
            self.out.writes[fact_key(self.partition, pane, event_id)] = orjson.dumps(
                [user, time_ms, currency, cents]
            )
        if item.watermark_ms > progress.orders_watermark_ms:
            progress.orders_watermark_ms = item.watermark_ms

    def close(
        self,
        clicks_after: int,
        sessions_of: Callable[[str], list[list[Any]]],
        settled_joined: int,
    ) -> None:
        """Attribute the panes the joined watermark closed (before sessions close in the
        batch); delete the A cells of panes whose close is committed."""
        progress, spec = self.progress, self.spec
        progress.order_panes = sorted(set(progress.order_panes) | self.new.keys())
        joined = min(clicks_after, progress.orders_watermark_ms)
        for pane in [p for p in progress.order_panes if spec.closes_at(p) <= joined]:
            self._attribute(pane, sessions_of)
            progress.order_panes.remove(pane)
            progress.attributed.append(pane)
        for pane in [p for p in progress.attributed if spec.closes_at(p) <= settled_joined]:
            progress.attributed.remove(pane)
            self.out.writes[attributed_key(self.partition, pane)] = None

    def retain(self, user: str, start: int, end: int, entry_host: str) -> None:
        """A session closing now, kept while orders that it covers may still come."""
        if self.progress.orders_watermark_ms < self._needed_until(end):
            kept = self.retained.setdefault(user, [])
            if [start, end, entry_host] not in kept:  # a redone close keeps it once
                kept.append([start, end, entry_host])
                self.changed_users.add(user)

    def release(self) -> None:
        """Drop kept sessions no order can reach any more; write the changed R records."""
        watermark = self.progress.orders_watermark_ms
        if watermark > self.orders_before or self.changed_users:
            for user, kept in list(self.retained.items()):
                still = [s for s in kept if self._needed_until(s[1]) > watermark]
                if len(still) != len(kept):
                    self.changed_users.add(user)
                    self.retained[user] = still
        for user in self.changed_users:
            kept = self.retained.get(user) or []
            if not kept:
                self.retained.pop(user, None)
            key = retained_key(self.partition, user)
            self.out.writes[key] = orjson.dumps(kept) if kept else None

    def _needed_until(self, end_ms: int) -> int:
        """The orders watermark from which no on-time order can fall in [.., end + gap)."""
        return self.spec.closes_at(self.spec.start_of(end_ms + self.gap_ms - 1))

    def _attribute(self, pane: int, sessions_of: Callable[[str], list[list[Any]]]) -> None:
        partition = self.partition
        key = attributed_key(partition, pane)
        raw = self.store.get(key)
        if raw is not None:  # a redone close (a pane closes once): as first closed
            self.out.panes.append(Attribution(pane, orjson.loads(raw)["v"]))
            return
        waiting = fact_key(partition, pane, "")
        facts = {k[len(waiting) :].decode(): orjson.loads(v) for k, v in self.store.items(waiting)}
        facts.update(self.new.get(pane, {}))
        counts: dict[str, list[int]] = {}
        for event_id, (user, time_ms, currency, cents) in sorted(facts.items()):
            sessions = [*sessions_of(user), *self.retained.get(user, [])]
            host = host_of_session(sessions, time_ms, self.gap_ms)
            total = counts.setdefault(f"{ATTRIBUTED}|{host}|{currency}", [0, 0])
            total[0] += 1
            total[1] = min(total[1] + cents, MAX_COUNT)
            self.out.writes[fact_key(partition, pane, event_id)] = None
        counts, _ = bounded(counts)  # hostile referrers: many long hosts (tables.bounded)
        self.out.writes[key] = orjson.dumps({"v": counts})
        self.out.panes.append(Attribution(pane, counts))
