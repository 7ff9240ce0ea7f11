"""One source partition's windowed metrics, advanced a batch at a time (pure; state passed in).
This module is the fold over a batch; each concern keeps its own state and rules:

  tables.panes          C|p|.., H|p|.., W|p   pane cells, sketches, the pane registry; closing
  tables.user_sessions  U|p|..                users' open sessions; closing them
  tables.dedup          S|p|..                event ids seen, one record per batch
  tables.attribution    O|p|.., A|p|.., R|p|.. orders attributed to sessions (clicks)
  this module           P|p                   Progress: watermark, last offsets, counters
                                              (written last)

Inputs: the source partition's events, its time log's ticks and re-injected events (each placed
right after the source offset it names, engine.time_log; streams.retries) and order facts
(clicks, from the app's own topic). Each input has its own offsets; a record at or below its
input's progress offset was applied by an earlier commit: skipped (redelivery). Rules, per
item in the order given:
  tick                             watermark = max(watermark, tick time); nothing else
  re-injected event                as an event (below), at its position At(N, t)
                                   (tables.positions), between source offsets N and N + 1
  order facts                      taken by the attribution join (clicks, with sessions)
  invalid                          dead letter, counted once
  duplicate (tables.dedup)         counted once, no effect
  pane closed (watermark >= pane end + grace)   late: recorded, never merged
  otherwise                        added to its pane (tables.panes), watermark = max(watermark,
                                   event time)
  click with a visit                 also joins its user's sessions (tables.user_sessions)
  order                              also kept as a fact to forward (out.facts)
Per batch, with W0/W1 the watermark before/after it: the attribution join closes the panes
its joined watermark passed; sessions that became final by W1 are closed, each counted in its
expiry pane once; then every tumbling and hopping window with data whose close time is in
(W0, W1] is returned once as a ClosedWindow, and `passed_a_close` says whether (W0, W1] held any
window's close time, with data or not.
Deletions wait for the commit: the worker stages several batches and commits them at once, and
a crash can cut that commit short; the batches are then redone from the committed progress
(`settled`), so nothing they read may be gone. Writes are committed in KEYSPACE's order: a
recovered state is a prefix of the writes, so a recovered progress implies all of its commit,
and a recovered user record implies the cells its closed sessions counted in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import orjson

from engine.processor import Keyspace, Prefix, Store
from tables.attribution import Attribution, LateOrder, OrderFact, OrderFacts, OrderJoin
from tables.dedup import BatchIds, Entry, SeenIndex
from tables.panes import ClosedWindow, Increments, PaneBatch, Uniques, stored_panes
from tables.positions import At, Position
from tables.sessions import SessionIndex, Visit
from tables.user_sessions import SessionSummary, UserBatch
from tables.windows import WindowSpec

NO_WATERMARK = -1
# Every key of a partition's state, by its first letter, with its place in the write order: a
# closed session is kept for orders (R), and its expiry pane is registered (W), before it
# leaves its user record (U), so a redo will not close it again; progress (P) comes last.
KEYSPACE = Keyspace(
    Prefix("C", "pane cells (tables.panes)", 0),
    Prefix("H", "pane HyperLogLog sketches (tables.panes)", 0),
    Prefix("A", "attributed panes (tables.attribution)", 0),
    Prefix("S", "seen event ids, one record per batch (tables.dedup)", 1),
    Prefix("O", "order facts awaiting their pane's attribution (tables.attribution)", 2),
    Prefix("R", "closed sessions kept for orders still to come (tables.attribution)", 2),
    Prefix("W", "the registry of stored panes (tables.panes)", 2),
    Prefix("U", "users' open sessions (tables.user_sessions)", 3),
    Prefix("P", "progress: watermark, offsets, counters (this module)", 4),
)


@dataclass(slots=True)  # not frozen: built once per event, and frozen init costs 4x
class Observation:
    """A valid event as the window logic sees it: which cells and sketches it adds to.
    `offset`: its position (a source offset; a re-injected event's: At(N, t))."""

    offset: Position
    event_id: str
    time_ms: int
    increments: Increments
    uniques: Uniques = ()
    visit: Visit | None = None  # clicks, when sessions are measured
    order: OrderFact | None = None  # orders: what the clicks side's attribution needs


@dataclass(slots=True)
class Tick:
    """Not an event: the source partition's event time has reached `time_ms` (idle partitions);
    `offset` is the tick's own, in the time log."""

    offset: int
    time_ms: int


@dataclass(slots=True)
class Retried:
    """A re-injected event (streams.retries) at time-log offset `offset`, request `request`;
    `event`: the event at position At(the source offset it follows, `offset`), or why it is
    still rejected."""

    offset: int
    request: int
    event: Observation | Rejected


SOURCE, TICKS, FACTS = "source", "ticks", "facts"  # a record's input


@dataclass(slots=True)
class Rejected:
    """An invalid record of input `log`: it goes to the dead-letter topic with `reason`."""

    offset: int
    reason: str
    detail: str
    log: str = SOURCE


@dataclass(slots=True)
class Progress:
    watermark_ms: int = NO_WATERMARK
    offset: int = -1  # last source offset fully applied
    ticks_offset: int = -1  # last time-log offset applied
    facts_offset: int = -1  # clicks: last order facts offset applied
    retry_request: int = -1  # the last re-injection request applied (streams.retries)
    accepted: int = 0
    duplicates: int = 0
    late: int = 0
    dead_letters: int = 0
    ticks: int = 0
    retried: int = 0  # re-injected events applied, whatever their verdict
    open_sessions: int = 0
    orders_watermark_ms: int = NO_WATERMARK  # clicks: the forwarded orders watermark
    order_panes: list[int] = field(default_factory=list)  # clicks: orders await attribution
    attributed: list[int] = field(default_factory=list)  # clicks: attributed, not yet deleted
    order_facts: int = 0  # clicks: order facts records (not events)
    late_orders: int = 0  # clicks: orders whose pane's attribution had closed
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)  # of dead_letters

    COUNTERS = (
        "accepted",
        "duplicates",
        "late",
        "dead_letters",
        "ticks",
        "retried",
        "open_sessions",
        "order_facts",
        "late_orders",
    )

    def encode(self) -> bytes:
        return orjson.dumps(self)  # {"field": value}

    @classmethod
    def decode(cls, raw: bytes | None) -> Progress:
        if raw is None:
            return cls()
        fields = orjson.loads(raw)
        fields.pop("first_pane_ms", None)  # written before results were non-empty only
        return cls(**fields)


@dataclass(frozen=True, slots=True)
class LateEvent:
    offset: Position
    event_id: str
    time_ms: int
    window_start_ms: int
    watermark_ms: int


@dataclass(slots=True)
class BatchOutcome:
    """What one batch changed: table writes (progress last), and what to emit or project."""

    partition: int
    writes: dict[bytes, bytes | None] = field(default_factory=dict)  # None deletes
    cells: dict[tuple[int, str], list[int]] = field(default_factory=dict)  # changed counts
    sketches: dict[tuple[int, str], bytes] = field(default_factory=dict)  # changed sketches
    progress: Progress = field(default_factory=Progress)
    closed: list[ClosedWindow] = field(default_factory=list)  # tumbling first, then hopping
    passed_a_close: bool = False  # the watermark passed a window's close time (spec)
    late: list[LateEvent] = field(default_factory=list)
    dead_letters: list[Rejected] = field(default_factory=list)
    sessions: list[SessionSummary] = field(default_factory=list)  # closed now
    facts: list[tuple[str, str, int, str, int, int]] = field(default_factory=list)  # accepted
    attributions: list[Attribution] = field(default_factory=list)  # panes attributed now
    late_orders: list[LateOrder] = field(default_factory=list)
    new_buckets: list[tuple[bytes, list[Entry]]] = field(default_factory=list)  # dedup, written
    expired_buckets: list[bytes] = field(default_factory=list)  # dedup records deleted now


def progress_key(partition: int) -> bytes:
    return f"P|{partition}".encode()


def served(partition: int, store: Store) -> BatchOutcome:
    """What the projection shows of a partition, read whole from its state (a restate,
    serving.epoch): its stored panes' cells and sketches, and its progress."""
    cells, sketches = stored_panes(partition, store)
    progress = Progress.decode(store.get(progress_key(partition)))
    return BatchOutcome(partition, cells=cells, sketches=sketches, progress=progress)


def apply_batch(
    partition: int,
    items: Sequence[Observation | Tick | Retried | OrderFacts | Rejected],
    spec: WindowSpec,
    store: Store,
    seen: SeenIndex,
    sessions: SessionIndex | None = None,
    settled: Progress | None = None,
    final_panes: dict[int, ClosedWindow] | None = None,
) -> BatchOutcome:
    """Advance partition `partition` by `items` (in offset order); `store` has its stored
    state, `seen` every event_id stored for it (not changed here), `sessions` its open
    sessions (advanced here; None: sessions are not measured), `settled` its committed
    progress (None: the stored one, i.e. nothing is staged), `final_panes` the contents of
    closed panes read by earlier batches, by start (kept and pruned here; None: none kept)."""
    out = BatchOutcome(partition)
    progress = out.progress = Progress.decode(store.get(progress_key(partition)))
    applied = {SOURCE: progress.offset, TICKS: progress.ticks_offset, FACTS: progress.facts_offset}
    before = progress.watermark_ms
    committed = settled or progress
    panes = PaneBatch(partition, spec, store)
    ids = BatchIds(partition, seen, store, spec.dedup_horizon_ms)
    users = UserBatch(partition, store, sessions) if sessions is not None else None
    join = None
    if sessions is not None:
        join = OrderJoin(partition, spec, sessions.gap_ms, store, progress, sessions.retained)
    # the per-event loop: locals, and the window rules inlined (spec.start_of, spec.is_closed)
    size, open_for = spec.size_ms, spec.size_ms + spec.grace_ms
    known, new_ids, duplicate = ids.known, ids.new, ids.duplicate
    # (pane start, event) of the accepted events: panes and sessions take them after this loop,
    # in one loop each (a call per event and concern cost ~10% of the fold)
    taken: list[tuple[int, Observation]] = []
    event: Observation
    offset: Position
    take, watermark = taken.append, progress.watermark_ms
    rises: list[tuple[int, Position]] = []  # (watermark, position of the record raising it)
    for item in items:
        if type(item) is Observation:
            event, offset = item, item.offset
            if offset <= applied[SOURCE]:
                continue
            applied[SOURCE] = offset  # type: ignore[assignment]  # a source event's: an int
        else:
            log = FACTS if type(item) is OrderFacts else TICKS
            if type(item) is Rejected:
                log = item.log
            at = cast(int, item.offset)  # not an event: its own input's offset
            if at <= applied[log]:
                continue
            applied[log] = at
            if type(item) is Tick:
                progress.ticks += 1
                if item.time_ms > watermark:
                    watermark = item.time_ms
                    rises.append((watermark, At(applied[SOURCE], at)))
                continue
            if type(item) is OrderFacts:
                progress.order_facts += 1
                if join is not None:
                    join.take(item, watermark, ids.fact_is_new)
                continue
            if type(item) is Retried:  # judged as an event, at its position (or rejected)
                progress.retried += 1
                progress.retry_request = max(progress.retry_request, item.request)
                item = item.event
            if type(item) is Rejected:
                progress.dead_letters += 1
                reasons = progress.dead_letter_reasons
                reasons[item.reason] = reasons.get(item.reason, 0) + 1
                out.dead_letters.append(item)
                continue
            event = cast(Observation, item)
            offset = event.offset
        time_ms, event_id = event.time_ms, event.event_id
        if event_id in known or event_id in new_ids:  # seen before: a duplicate, or forgotten
            if duplicate(event_id, offset, time_ms, watermark):
                progress.duplicates += 1
                continue
        else:
            new_ids[event_id] = (offset, time_ms)  # first seen (tables.dedup.BatchIds)
        start = time_ms - time_ms % size
        if watermark >= start + open_for:
            progress.late += 1
            out.late.append(LateEvent(offset, event_id, time_ms, start, watermark))
            continue
        take((start, event))
        if event.order is not None:
            order = event.order
            source_offset = offset if type(offset) is int else -1  # re-injected: its facts'
            fact = (event_id, order.user, time_ms, order.currency, order.cents, source_offset)
            out.facts.append(fact)
        if time_ms > watermark:
            watermark = time_ms
            rises.append((watermark, offset))
    panes.add(taken)
    if users is not None:
        users.visit(taken)
    progress.offset, progress.ticks_offset = applied[SOURCE], applied[TICKS]
    progress.facts_offset = applied[FACTS]
    progress.accepted += len(taken)
    progress.watermark_ms = watermark
    if users is not None and join is not None and sessions is not None:
        settled_joined = min(committed.watermark_ms, committed.orders_watermark_ms)
        join.close(watermark, users.sessions_of, settled_joined)
        last = At(progress.offset, progress.ticks_offset)  # later than any record here
        out.sessions = users.close(spec, watermark, rises, last, panes, join.retain)
        join.release()
        progress.open_sessions = sessions.open_sessions
        out.writes.update(join.out.writes)
        out.attributions, out.late_orders = join.out.panes, join.out.late
        users.write(At(committed.offset, committed.ticks_offset), out.writes)
    out.closed = panes.finish(out, before, watermark, committed.watermark_ms, final_panes)
    out.passed_a_close = spec.passes_a_close(before, watermark)
    out.new_buckets, out.expired_buckets = ids.finish(committed.watermark_ms, out.writes)
    if items:
        out.writes[progress_key(partition)] = progress.encode()
    return out
