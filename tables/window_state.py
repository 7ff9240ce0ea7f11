"""One source partition's windowed metrics, advanced a batch at a time (pure; state passed in).

Shape of the state, one key space per source partition p (all in changelog partition p):
  C|p|<pane start>|<dimension> -> {"v": [counts...], "o": last source offset applied; the
                                  sessions|ended cell: the position [source offset, tick
                                  offset] of the record whose watermark closed its sessions}
  H|p|<pane start>|<dimension> -> HyperLogLog registers (tables.sketch; max is idempotent)
  S|p|<first offset of batch>  -> [[event_id, source offset, event time], ...]  (dedup: the
                                  ids first seen in one batch, one record per batch, or per
                                  chunk of RESULT_BYTES; S|p|f<offset>: order facts' ids)
  U|p|<user>                   -> {"s": open sessions (tables.sessions), "o": last offset}
  O|p|.., A|p|.., R|p|..       -> orders attributed to sessions (tables.attribution)
  W|p                          -> starts of the panes stored, ascending
  P|p                          -> Progress: watermark, last offsets, counters  (written last)

Inputs: the source partition's events, its time log's ticks (each placed right after the source
offset it names, engine.time_log) and order facts (clicks, from the app's own topic). Each
input has its own offsets; a record at or below its input's progress offset was applied by an
earlier commit: skipped (redelivery). Rules, per item in the order given:
  tick                             watermark = max(watermark, tick time); nothing else
  order facts                      taken by the attribution join (clicks, with sessions)
  invalid                          dead letter, counted once
  event_id seen at another offset  duplicate, counted once, no effect
  pane closed (watermark >= pane end + grace)   late: recorded, never merged
  otherwise                        add to each cell whose own offset is older (a cell may
                                   already hold it if a flush was cut short), add to each
                                   sketch, watermark = max(watermark, event time).
  click with a visit                 also joins its user's sessions (user record's own offset
                                   older, as for cells)
  order                              also kept as a fact to forward (out.facts)
Per batch, with W0/W1 the watermark before/after it: the attribution join closes the panes
its joined watermark passed (tables.attribution); sessions that became final by W1 are closed
(each counted in its expiry pane's `sessions|ended` cell, exactly once: the cell keeps the
offset of the record whose watermark closed it); then every tumbling and hopping window with
data whose close time is in (W0, W1] is read whole and returned once as a ClosedWindow, and
`passed_a_close` says whether (W0, W1] held any window's close time, with data or not.
Deletions wait for the commit: the worker stages several batches and commits them at once,
and a crash can cut that commit short; the batches are then redone from the committed progress
(`settled`), so nothing they read may be gone. A pane is deleted once its last hopping window
closed by the settled watermark; a user record whose sessions all closed stays (empty, with
its offset, so a redone click is not absorbed twice) until the settled offset covers it.
Writes are committed in KEYSPACE's order: a recovered state is a prefix of the writes, so a
recovered progress implies all of its flush, and a recovered user record implies the cells its
closed sessions counted in.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import orjson

from engine.processor import Keyspace, Prefix, Store
from tables import sessions as session_rules
from tables import sketch
from tables.attribution import (
    Attribution,
    LateOrder,
    OrderFact,
    OrderFacts,
    OrderJoin,
    retained_prefix,
)
from tables.dedup import Entry, SeenIndex, seen_bucket_key, seen_chunks
from tables.sessions import Session, SessionIndex, Visit
from tables.windows import MAX_COUNT, WindowSpec

NO_WATERMARK = -1
EMPTY_CELL = {"v": [], "o": -1}
EMPTY_USER = {"s": [], "o": -1}
SESSIONS_ENDED = "sessions|ended"  # (sessions, bounces, total duration ms) by expiry pane
# Every key of a partition's state, by its first letter, with its place in the write order: a
# closed session is kept for orders (R), and its expiry pane is registered (W), before it
# leaves its user record (U), so a redo will not close it again; progress (P) comes last.
KEYSPACE = Keyspace(
    Prefix("C", "pane cells (this module)", 0),
    Prefix("H", "pane HyperLogLog sketches (this module)", 0),
    Prefix("A", "attributed panes (tables.attribution)", 0),
    Prefix("S", "seen event ids, one record per batch (tables.dedup)", 1),
    Prefix("O", "order facts awaiting their pane's attribution (tables.attribution)", 2),
    Prefix("R", "closed sessions kept for orders still to come (tables.attribution)", 2),
    Prefix("W", "the registry of stored panes (this module)", 2),
    Prefix("U", "users' open sessions (tables.sessions, this module)", 3),
    Prefix("P", "progress: watermark, offsets, counters (this module)", 4),
)

Increments = tuple[tuple[str, tuple[int, ...]], ...]  # (dimension, amounts added)
Position = tuple[int, int]  # (source offset, time-log offset): where a record applies
Uniques = tuple[tuple[str, int, int], ...]  # (dimension, sketch register, rank)


@dataclass(slots=True)  # not frozen: built once per event, and frozen init costs 4x
class Observation:
    """A valid event as the window logic sees it: which cells and sketches it adds to."""

    offset: int
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
    accepted: int = 0
    duplicates: int = 0
    late: int = 0
    dead_letters: int = 0
    ticks: int = 0
    open_sessions: int = 0
    orders_watermark_ms: int = NO_WATERMARK  # clicks: the forwarded orders watermark
    order_panes: list[int] = field(default_factory=list)  # clicks: orders await attribution
    attributed: list[int] = field(default_factory=list)  # clicks: attributed, not yet deleted
    order_facts: int = 0  # clicks: order facts records (not events)
    late_orders: int = 0  # clicks: orders whose pane's attribution had closed

    COUNTERS = (
        "accepted",
        "duplicates",
        "late",
        "dead_letters",
        "ticks",
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
    offset: int
    event_id: str
    time_ms: int
    window_start_ms: int
    watermark_ms: int


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """A closed session of one user (tables.sessions)."""

    user: str
    start_ms: int
    end_ms: int
    clicks: int
    page_views: int
    entry_host: str
    ended_in_ms: int  # the pane it counts in


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    """A window's final content in one source partition: [start, end), a pane or a hop."""

    start_ms: int
    end_ms: int
    counts: dict[str, list[int]]
    sketches: dict[str, bytes]


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
    facts: list[tuple[str, str, int, str, int]] = field(default_factory=list)  # orders accepted
    attributions: list[Attribution] = field(default_factory=list)  # panes attributed now
    late_orders: list[LateOrder] = field(default_factory=list)
    new_buckets: list[tuple[bytes, list[Entry]]] = field(default_factory=list)  # dedup, written
    expired_buckets: list[bytes] = field(default_factory=list)  # dedup records deleted now


def progress_key(partition: int) -> bytes:
    return f"P|{partition}".encode()


def panes_key(partition: int) -> bytes:
    return f"W|{partition}".encode()


def pane_prefix(kind: str, partition: int, start_ms: int) -> bytes:
    return f"{kind}|{partition}|{start_ms}|".encode()


def cell_key(partition: int, start_ms: int, dimension: str) -> bytes:
    return pane_prefix("C", partition, start_ms) + dimension.encode()


def sketch_key(partition: int, start_ms: int, dimension: str) -> bytes:
    return pane_prefix("H", partition, start_ms) + dimension.encode()


def user_prefix(partition: int) -> bytes:
    return f"U|{partition}|".encode()


def user_key(partition: int, user: str) -> bytes:
    return user_prefix(partition) + user.encode()


def apply_batch(
    partition: int,
    items: Sequence[Observation | Tick | OrderFacts | Rejected],
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
    settled_ms, settled_offset = (settled or progress).watermark_ms, (settled or progress).offset
    settled_orders_ms = (settled or progress).orders_watermark_ms
    stored_panes = orjson.loads(store.get(panes_key(partition)) or b"[]")
    panes = set(stored_panes)
    cells: dict[tuple[int, str], list] = {}  # (start, dimension) -> [counts, offset]
    sketches: dict[tuple[int, str], bytearray] = {}
    new_seen: dict[str, int] = {}  # event_id -> offset, for ids first seen in this batch
    bucket: list[Entry] = []
    facts_bucket: list[Entry] = []  # order facts' ids (offsets in their own topic)
    # the per-event loop: locals and inlined window rules (spec.start_of, spec.is_closed)
    size, open_for = spec.size_ms, spec.size_ms + spec.grace_ms
    stored_offset_of, new_offset_of = seen.offsets.get, new_seen.get
    watermark, accepted = progress.watermark_ms, 0
    users: dict[str, dict] = {}  # user -> stored record, as changed by this batch
    rises: list[tuple[int, Position]] = []  # (watermark, position of the record raising it)
    join = None
    if sessions is not None:
        join = OrderJoin(partition, spec, sessions.gap_ms, store, progress, sessions.retained)

    def first_seen(event_id: str, offset: int, time_ms: int) -> bool:
        """For order facts: True unless `event_id` was seen at another offset."""
        first = stored_offset_of(event_id)
        if first is None:
            first = new_offset_of(event_id)
        if first is None:
            new_seen[event_id] = offset
            facts_bucket.append((event_id, offset, time_ms))
        return first is None or first == offset

    for item in items:
        offset = item.offset
        if type(item) is not Observation:
            log = TICKS if type(item) is Tick else FACTS if type(item) is OrderFacts else item.log  # type: ignore[union-attr]
            if offset <= applied[log]:
                continue
            applied[log] = offset
            if type(item) is Tick:
                progress.ticks += 1
                if item.time_ms > watermark:
                    watermark = item.time_ms
                    rises.append((watermark, (applied[SOURCE], offset)))
            elif type(item) is OrderFacts:
                progress.order_facts += 1
                if join is not None:
                    join.take(item, watermark, first_seen)
            else:
                progress.dead_letters += 1
                out.dead_letters.append(item)  # type: ignore[arg-type]
            continue
        if offset <= applied[SOURCE]:
            continue
        applied[SOURCE] = offset
        event_id = item.event_id
        first_seen_at = stored_offset_of(event_id)
        if first_seen_at is None:
            first_seen_at = new_offset_of(event_id)
        if first_seen_at is not None and first_seen_at != offset:
            progress.duplicates += 1
            continue
        time_ms = item.time_ms
        if first_seen_at is None:
            new_seen[event_id] = offset
            bucket.append((event_id, offset, time_ms))
        start = time_ms - time_ms % size
        if watermark >= start + open_for:
            progress.late += 1
            out.late.append(LateEvent(offset, event_id, time_ms, start, watermark))
            continue
        for dimension, amounts in item.increments:
            cell = cells.get((start, dimension))
            if cell is None:
                raw = store.get(cell_key(partition, start, dimension))
                stored = orjson.loads(raw) if raw is not None else EMPTY_CELL
                cell = cells[start, dimension] = [stored["v"] or [0] * len(amounts), stored["o"]]
            if cell[1] < offset:  # not yet in this cell
                counts = cell[0]
                if len(amounts) == 1:  # most cells count one thing
                    counts[0] += amounts[0]
                else:  # sums of amounts (bounded per event): saturate, never overflow
                    for i, amount in enumerate(amounts):
                        counts[i] = min(counts[i] + amount, MAX_COUNT)
                cell[1] = offset
        for dimension, register, rank in item.uniques:
            registers = sketches.get((start, dimension))
            if registers is None:
                raw = store.get(sketch_key(partition, start, dimension))
                registers = sketches[start, dimension] = bytearray(raw or sketch.empty())
            if registers[register] < rank:
                registers[register] = rank
        visit = item.visit
        if visit is not None and sessions is not None:
            user = users.get(visit.user)
            if user is None:
                user = users[visit.user] = _user(store, partition, visit.user)
            if user["o"] < offset:
                user["s"] = session_rules.absorb(user["s"], time_ms, visit, sessions.gap_ms)
                user["o"] = offset
        if item.order is not None:
            order = item.order
            out.facts.append((event_id, order.user, time_ms, order.currency, order.cents))
        panes.add(start)
        accepted += 1
        if time_ms > watermark:
            watermark = time_ms
            rises.append((watermark, (offset, -1)))
    progress.offset, progress.ticks_offset = applied[SOURCE], applied[TICKS]
    progress.facts_offset = applied[FACTS]
    progress.accepted += accepted
    progress.watermark_ms = watermark
    if sessions is not None and join is not None:

        def sessions_of(user: str) -> list[Session]:
            return (users[user] if user in users else _user(store, partition, user))["s"]

        settled_joined = min(settled_ms, settled_orders_ms)
        join.close(watermark, sessions_of, settled_joined)
        _close_sessions(partition, spec, store, sessions, users, rises, cells, panes, out, join)
        join.release()
        progress.open_sessions = sessions.open_sessions
        out.writes.update(join.out.writes)
        out.attributions, out.late_orders = join.out.panes, join.out.late

    for (start, dimension), (counts, offset) in cells.items():
        out.writes[cell_key(partition, start, dimension)] = orjson.dumps({"v": counts, "o": offset})
        out.cells[start, dimension] = counts
    if sessions is not None:
        _write_users(partition, users, sessions, settled_offset, out)
    for (start, dimension), registers in sketches.items():
        out.writes[sketch_key(partition, start, dimension)] = out.sketches[start, dimension] = (
            bytes(registers)
        )
    out.closed = _closing(partition, spec, store, panes, out, before, progress, final_panes)
    out.passed_a_close = spec.passes_a_close(before, progress.watermark_ms)
    for start in [s for s in panes if spec.hop_closes_at(s) <= settled_ms]:
        panes.discard(start)  # its last window's result is committed
        for kind in ("C", "H"):
            for key, _ in store.items(pane_prefix(kind, partition, start)):
                out.writes[key] = None
    if sorted(panes) != stored_panes:
        out.writes[panes_key(partition)] = orjson.dumps(sorted(panes))
    for entries, log in ((bucket, ""), (facts_bucket, "f")):
        for chunk, encoded in seen_chunks(entries):  # one record per batch, unless ids are long
            key = seen_bucket_key(partition, chunk[0][1], log)
            out.new_buckets.append((key, chunk))
            out.writes[key] = encoded
    out.expired_buckets = seen.expired(progress.watermark_ms - spec.dedup_horizon_ms)
    for key in out.expired_buckets:
        out.writes[key] = None  # a tombstone
    if items:
        out.writes[progress_key(partition)] = progress.encode()
    return out


def _close_sessions(
    partition: int,
    spec: WindowSpec,
    store: Store,
    index: SessionIndex,
    users: dict[str, dict],
    rises: list[tuple[int, Position]],
    cells: dict[tuple[int, str], list],
    panes: set[int],
    out: BatchOutcome,
    join: OrderJoin,
) -> None:
    """Close the sessions final by the batch's last watermark; count each in its expiry pane
    (and keep it for attribution while orders it covers may still come)."""
    for name, user in users.items():
        index.set(name, user["s"])
    watermark = out.progress.watermark_ms
    ended: dict[tuple[Position, int], list[int]] = {}  # (closing position, pane) -> counts
    last = (out.progress.offset, out.progress.ticks_offset)  # later than any record here
    for name in index.due(watermark):
        if name not in users:
            users[name] = _user(store, partition, name)
        user = users[name]
        still_open: list[Session] = []
        for session in user["s"]:
            closes = session_rules.closes_at(session[1], spec, index.gap_ms)
            if closes > watermark:
                still_open.append(session)
                continue
            start, end, clicks, page_views, entry = session
            pane = session_rules.ended_in(end, spec, index.gap_ms)
            # the record whose watermark closed it (a stored session closes after W0)
            rise = bisect.bisect_left(rises, (closes,))
            at = rises[rise][1] if rise < len(rises) else last
            counts = ended.setdefault((at, pane), [0, 0, 0])
            counts[0] += 1
            counts[1] += session_rules.is_bounce(clicks)
            counts[2] += end - start
            out.sessions.append(SessionSummary(name, start, end, clicks, page_views, entry, pane))
            join.retain(name, start, end, entry)
        user["s"] = still_open
        index.set(name, still_open)
    for (at, pane), amounts in sorted(ended.items()):  # positions ascending, as for events
        cell = cells.get((pane, SESSIONS_ENDED))
        if cell is None:
            raw = store.get(cell_key(partition, pane, SESSIONS_ENDED))
            stored = orjson.loads(raw) if raw is not None else EMPTY_CELL
            o = stored["o"]
            cell = cells[pane, SESSIONS_ENDED] = [
                stored["v"] or [0, 0, 0],
                tuple(o) if isinstance(o, list) else (o, -1),
            ]
        if cell[1] < at:
            cell[0] = [min(a + b, MAX_COUNT) for a, b in zip(cell[0], amounts, strict=True)]
            cell[1] = at
        panes.add(pane)


def load_sessions(partition: int, spec: WindowSpec, gap_ms: int, store: Store) -> SessionIndex:
    """A partition's session index rebuilt from its stored user records and the closed
    sessions kept for attribution (once per assignment, and after a restart)."""
    index = SessionIndex(spec, gap_ms)
    users, kept = user_prefix(partition), retained_prefix(partition)
    for key, raw in store.items(users):
        index.load(key[len(users) :].decode(), orjson.loads(raw))
    for key, raw in store.items(kept):
        index.retained[key[len(kept) :].decode()] = orjson.loads(raw)
    return index


def _write_users(
    partition: int,
    users: dict[str, dict],
    index: SessionIndex,
    settled_offset: int,
    out: BatchOutcome,
) -> None:
    """The batch's user records; an emptied one is deleted once its offset is committed."""
    emptied = index.emptied
    for name, user in users.items():
        key = user_key(partition, name)
        if user["s"]:
            emptied.pop(name, None)
            out.writes[key] = orjson.dumps(user)
        elif user["o"] <= settled_offset:
            emptied.pop(name, None)
            out.writes[key] = None
        else:
            emptied[name] = user["o"]
            out.writes[key] = orjson.dumps(user)
    for name in [n for n, offset in emptied.items() if offset <= settled_offset]:
        del emptied[name]
        out.writes[user_key(partition, name)] = None


def _user(store: Store, partition: int, name: str) -> dict:
    raw = store.get(user_key(partition, name))
    return orjson.loads(raw) if raw is not None else dict(EMPTY_USER)


def _closing(
    partition: int,
    spec: WindowSpec,
    store: Store,
    panes: set[int],
    out: BatchOutcome,
    before: int,
    progress: Progress,
    final_panes: dict[int, ClosedWindow] | None,
) -> list[ClosedWindow]:
    """Every window with a stored pane whose close time is in (before, after], read whole.
    Windows without data are not emitted: a reader knows this partition passed them by its
    progress (agents.window_results).

    Each pane read here has closed, so its content is final: kept in `final_panes` (when
    given) for the hopping windows that close later, until the pane is deleted."""
    after, size = progress.watermark_ms, spec.size_ms
    if after <= before:
        return []
    contents: dict[int, ClosedWindow] = {} if final_panes is None else final_panes
    for start in [s for s in contents if s not in panes]:
        del contents[start]  # deleted after its last window closed

    def pane(start: int) -> ClosedWindow:
        if start not in contents:
            contents[start] = _read_pane(partition, start, size, store, out)
        return contents[start]

    def closing(starts: Iterable[int], close_offset: int) -> list[int]:
        return sorted(s for s in starts if before < s + close_offset <= after)

    closed = [pane(s) for s in closing(panes, size + spec.grace_ms)]
    if spec.hop_ms > size:
        hops = {h for s in panes for h in spec.hops_holding(s)}
        for hop in closing(hops, spec.hop_ms + spec.grace_ms):
            members = [pane(s) for s in range(hop, hop + spec.hop_ms, size) if s in panes]
            closed.append(_merge(hop, hop + spec.hop_ms, members))
    return closed


def _read_pane(
    partition: int, start: int, size_ms: int, store: Store, out: BatchOutcome
) -> ClosedWindow:
    """A pane as stored, overlaid with this batch's changes to it."""
    cells, hlls = pane_prefix("C", partition, start), pane_prefix("H", partition, start)
    counts = {k[len(cells) :].decode(): orjson.loads(v)["v"] for k, v in store.items(cells)}
    sketches = {k[len(hlls) :].decode(): bytes(v) for k, v in store.items(hlls)}
    counts.update((d, c) for (s, d), c in out.cells.items() if s == start)
    sketches.update((d, r) for (s, d), r in out.sketches.items() if s == start)
    return ClosedWindow(start, start + size_ms, counts, sketches)


def _merge(start: int, end: int, panes: Sequence[ClosedWindow]) -> ClosedWindow:
    counts: dict[str, list[int]] = {}
    for p in panes:
        for dimension, values in p.counts.items():
            total = counts.get(dimension)
            if total is None:
                counts[dimension] = values
            elif len(total) == len(values) == 1:  # most cells count one thing
                counts[dimension] = [min(total[0] + values[0], MAX_COUNT)]
            else:
                counts[dimension] = [
                    min(a + b, MAX_COUNT) for a, b in zip(total, values, strict=True)
                ]
    names = {d for p in panes for d in p.sketches}
    sketches = {d: sketch.union(p.sketches[d] for p in panes if d in p.sketches) for d in names}
    return ClosedWindow(start, end, counts, sketches)
