"""Repartitioning: a stream re-keyed through `<app>-<name>-repartition` (streams.repartition),
each entry counted once and read in one order, whatever the crashes and the interleaving.

    Repartition(name, topic, inputs, rekey, ...)   the processor that forwards (upstream)
    Alignment({source topic: partitions, ...})      the fold of a processor reading the topic

Forwarding, over source partition p and its time log:
  - `rekey(record)` gives the record's entries (new key, value, event time): none for a record
    it does not take (invalid input is the validating processor's to report); a dead letter for
    one it raises on; a re-injected event's copy in the time log (streams.retries) is rekeyed
    as its original, its entries' ids naming the copy;
  - each entry goes to the partition of its new key (or the one it names) with its id and
    release time = max(event time, p's watermark before it); the watermark = max of entries'
    times and trusted ticks (an untrusted tick is skipped: the stream's own processor
    dead-letters it);
  - after a batch that raised the watermark, a mark of it goes to every partition.
  Several forwarders (one per source topic) may write one repartition topic.
  State, F|p -> [source offset, tick offset, watermark, the ticks' watermark]. A crash after
  the sends and before the state redoes the batch from the committed offsets: the same
  entries, ids, release times and marks (the watermark before each comes from the same
  committed state).

Reading (Alignment, for partition d of the topic):
  - a mark raises M|d|s|q, partition q of source s's watermark (max: a repeated mark changes
    nothing);
  - an entry waits in Q|d|<release key> (release key = release ms, s's rank among the sources'
    sorted names, q, offset, index: a repeated entry lands on the same key), unless the cursor
    N|d has passed its key (released already);
  - entries leave in key order while release ms < F = min over s, q of M|d|s|q; each gets the
    next sequence number, and N|d keeps the last key and number.
  Invariant: an entry arriving after F reached f has release ms >= f (its source partition's
  mark >= f came before it), so the released entries are a prefix of all entries in key order,
  in every run.
  Write order (a recovered changelog holds a prefix of a commit's writes): Q puts, then the
  reading processor's effects (ranks EFFECTS), then N and M, then Q deletes. An effect keeps
  the sequence number of the entry it last applied, and skips entries not newer: a commit cut
  short is redone with the same entries under the same numbers.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import orjson
from aiokafka.partitioner import murmur2

from engine.processor import (
    InputRecord,
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
from streams.control import control_verdict
from streams.dead_letters import dead_letter, processing_error_detail
from streams.repartition import (
    MARK,
    EntryHeader,
    entry_headers,
    is_mark,
    mark_value,
    read_entry,
    read_mark,
)
from streams.retries import is_retry, read_copy
from streams.ticks import read_tick

NO_WATERMARK = -1
NO_POSITION = b"[-1, -1, -1, -1]"  # F|p: source offset, tick offset, watermark, ticks' watermark
EFFECTS = range(1, 10)  # write ranks left for a reading processor's own prefixes
ALIGNMENT_PREFIXES = (
    Prefix("Q", "repartitioned entries waiting for every source partition's mark", 0, 11),
    Prefix("N", "the release cursor: last key released and its sequence number", 10),
    Prefix("M", "each source partition's watermark, from its marks", 10),
)


def partition_of(key: bytes, partitions: int) -> int:
    """The partition of a key, as Kafka's default partitioner (Java's and aiokafka's) picks it."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True, slots=True)
class Entry:
    key: bytes  # the new key
    value: bytes
    time_ms: int  # event time
    partition: int | None = None  # None: the partition of the key


Rekey = Callable[[Record], Sequence[Entry]]


class Repartition:
    """The forwarding processor (engine.processor), over a source and its time log."""

    keyspace = Keyspace(Prefix("F", "forwarding position: offsets and watermark", 0))
    sink = None

    def __init__(
        self,
        name: str,
        topic: str,
        inputs: Inputs,
        rekey: Rekey,
        partitions: int,
        dead_letters: str,
        clock_app_id: str,
        max_skew_ms: int,
        entries_move_clock: bool = True,
    ) -> None:
        """`name`: the agent's (a verb, e.g. rekey_orders_by_card); `topic`: the repartition
        topic; ticks are taken from `clock_app_id` only (streams.control). `entries_move_clock`
        False: the position's watermark (what the worker's ticks follow) is this source's
        ticks' only, not its entries' times: a control log, whose entries are stamped with
        when they take effect, not with when something happened."""
        self.name, self.table, self.inputs, self.rekey = name, f"{name}_position", inputs, rekey
        self.partitions, self.clock_app_id, self.max_skew_ms = partitions, clock_app_id, max_skew_ms
        self.entries_move_clock = entries_move_clock
        self.outputs = {"repartition": topic, "dead_letters": dead_letters}

    def apply(
        self, partition: int, records: Sequence[Record | Poisoned], state: Store, settled: Store
    ) -> Outcome:
        key = _forward_key(partition)
        offset, ticks_offset, watermark, *ticked = orjson.loads(state.get(key) or NO_POSITION)
        ticked_ms = ticked[0] if ticked else watermark  # the ticks' alone
        before, sends = watermark, []
        for record in records:
            source = record.record if isinstance(record, Poisoned) else record
            tick = source.topic == self.inputs.time_log
            if source.offset <= (ticks_offset if tick else offset):
                continue  # redelivered: forwarded by an earlier commit
            if tick:
                ticks_offset = source.offset
            else:
                offset = source.offset
            if isinstance(record, Poisoned):
                letter = dead_letter(
                    source, "processing_error", processing_error_detail(record.error)
                )
                sends.append(Send("dead_letters", letter[0], letter[1], headers=letter[2]))
            elif tick and is_retry(source.headers):
                original = self._retried(source)
                if original is not None:
                    watermark = self._forward(partition, original, watermark, sends)
            elif tick:
                tick_ms = self._tick(source)
                watermark, ticked_ms = max(watermark, tick_ms), max(ticked_ms, tick_ms)
            else:
                watermark = self._forward(partition, source, watermark, sends)
        if watermark > before:
            mark = mark_value(self.inputs.source, partition, watermark)
            sends += [
                Send("repartition", None, mark, to, list(MARK)) for to in range(self.partitions)
            ]
        value = orjson.dumps([offset, ticks_offset, watermark, ticked_ms])
        return Outcome(partition, {key: value}, sends)

    def _forward(self, partition: int, source: Record, watermark: int, sends: list[Send]) -> int:
        """Send the record's entries; the watermark after them."""
        high = watermark
        for index, entry in enumerate(self.rekey(source)):
            if entry.time_ms < 0:
                raise ValueError(f"entry {index} has event time {entry.time_ms} ms, before 1970")
            release_ms = max(entry.time_ms, watermark)
            head = EntryHeader(
                source.topic, partition, source.offset, index, entry.time_ms, release_ms
            )
            to = (
                partition_of(entry.key, self.partitions)
                if entry.partition is None
                else entry.partition
            )
            sends.append(Send("repartition", entry.key, entry.value, to, entry_headers(head)))
            high = max(high, entry.time_ms)
        return high

    def _tick(self, record: Record) -> int:
        """The tick's time, or NO_WATERMARK when it is not to be taken (streams.control; the
        stream's windowed processor reads the same time log and dead-letters it)."""
        tick = read_tick(record.value)
        if tick is None or control_verdict(
            "tick", tick.by, tick.time_ms, self.clock_app_id, record.timestamp, self.max_skew_ms
        ):
            return NO_WATERMARK
        return tick.time_ms

    def _retried(self, record: Record) -> Record | None:
        """A re-injected event's copy in the time log (streams.retries) as the record to
        forward: its original's value at the original record timestamp, from the copy's place
        (its entries' ids name the copy). None when the clock's app did not write it (the
        stream's own processor dead-letters it)."""
        copy = read_copy(record.headers)
        if copy is None or copy.by != self.clock_app_id:
            return None
        timestamp = copy.request.timestamp_ms
        return InputRecord(
            record.topic, record.partition, record.offset, timestamp, record.key, record.value
        )

    def position(self, partition: int, state: Store) -> Position:
        offset, ticks_offset, watermark, *ticked = orjson.loads(
            state.get(_forward_key(partition)) or NO_POSITION
        )
        if not self.entries_move_clock:
            watermark = ticked[0] if ticked else NO_WATERMARK
        return Position(offset, ticks_offset, watermark)

    def forget(self, partition: int) -> None:
        pass  # no in-memory indexes


@dataclass(frozen=True, slots=True)
class Released:
    """An entry released to the reading processor, with its place in the release order."""

    seq: int  # 1, 2, ... per partition of the repartition topic
    key: bytes
    value: bytes
    head: EntryHeader  # its id and times


@dataclass(slots=True)
class Aligned:
    released: list[Released] = field(default_factory=list)
    writes: dict[bytes, bytes | None] = field(default_factory=dict)
    watermark_ms: int = NO_WATERMARK  # F: every source partition has passed it
    foreign: list[Record] = field(default_factory=list)  # neither entry nor mark: dead letters


class Alignment:
    """The reading side's fold over partition d of a repartition topic (see the docstring)."""

    def __init__(self, sources: Mapping[str, int], logs: Sequence[str] = ()) -> None:
        """`sources`: source topic -> its partition count (the marks to wait for); `logs`:
        their time logs, whose re-injected events' entries name them (ranked after the
        sources, so that no source's rank moves)."""
        self.sources = dict(sources)
        ranked = [*sorted(sources), *sorted(logs)]
        self.rank = {topic: rank for rank, topic in enumerate(ranked)}

    def take(self, partition: int, records: Sequence[Record | Poisoned], state: Store) -> Aligned:
        out = Aligned()
        writes = out.writes
        cursor = orjson.loads(state.get(_cursor_key(partition)) or b"[null, 0]")
        last, seq = (tuple(cursor[0]) if cursor[0] else None), cursor[1]
        marks: dict[tuple[str, int], int] = {}  # (source, partition) -> watermark
        for record in records:
            if isinstance(record, Poisoned):
                out.foreign.append(record.record)
                continue
            source = record
            if is_mark(source.headers):
                mark = read_mark(source.value)
                if mark is None or mark.partition >= self.sources.get(mark.source, 0):
                    out.foreign.append(source)
                else:
                    at = (mark.source, mark.partition)
                    marks[at] = max(marks.get(at, NO_WATERMARK), mark.watermark_ms)
            else:
                head = read_entry(source.headers)
                if head is None or source.key is None or head.topic not in self.rank:
                    out.foreign.append(source)
                    continue
                order = self._release_order(head)
                if last is None or order > last:  # else released already: a repeat
                    writes[_queued_key(partition, order)] = _encode(head, source.key, source.value)
        for (topic, q), watermark in marks.items():
            key = _mark_key(partition, topic, q)
            if watermark > _int(state.get(key)):
                writes[key] = str(watermark).encode()
        fronts = []
        for topic, q in self._marks():
            key = _mark_key(partition, topic, q)
            fronts.append(_int(writes[key] if key in writes else state.get(key)))
        out.watermark_ms = front = min(fronts)
        queued = dict(state.items(_queued_prefix(partition)))
        queued.update((k, v) for k, v in writes.items() if v is not None and k[:1] == b"Q")
        for key in sorted(queued):
            head, entry_key, value = _decode(queued[key])
            order = self._release_order(head)
            if last is not None and order <= last:
                writes[key] = None  # released by a commit whose deletes did not all land
                continue
            if head.release_ms >= front:
                break
            seq += 1
            last = order
            out.released.append(Released(seq, entry_key, value, head))
            writes[key] = None
        if out.released:
            writes[_cursor_key(partition)] = orjson.dumps([last, seq])
        return out

    def watermark(self, partition: int, state: Store) -> int:
        return min(_int(state.get(_mark_key(partition, *at))) for at in self._marks())

    def _marks(self) -> list[tuple[str, int]]:
        return [(topic, q) for topic, n in self.sources.items() for q in range(n)]

    def _release_order(self, head: EntryHeader) -> ReleaseOrder:
        return (head.release_ms, self.rank[head.topic], head.partition, head.offset, head.index)


ReleaseOrder = tuple[int, int, int, int, int]  # release ms, source rank, partition, offset, index


def _forward_key(partition: int) -> bytes:
    return b"F|%d" % partition


def _cursor_key(partition: int) -> bytes:
    return b"N|%d" % partition


def _mark_key(partition: int, topic: str, source: int) -> bytes:
    return b"M|%d|%s|%d" % (partition, topic.encode(), source)


def _queued_prefix(partition: int) -> bytes:
    return b"Q|%d|" % partition


def _queued_key(partition: int, order: ReleaseOrder) -> bytes:
    """Sorted as the release order (fixed widths; event times are epoch ms, never negative)."""
    return b"Q|%d|%016d|%03d|%06d|%020d|%06d" % (partition, *order)


_HEAD = struct.Struct(">qqqiiI")  # offset, time, release, partition, index, key length


def _encode(head: EntryHeader, key: bytes, value: bytes | None) -> bytes:
    fixed = _HEAD.pack(
        head.offset, head.time_ms, head.release_ms, head.partition, head.index, len(key)
    )
    topic = head.topic.encode()
    return fixed + struct.pack(">H", len(topic)) + topic + key + (value or b"")


def _decode(raw: bytes) -> tuple[EntryHeader, bytes, bytes]:
    offset, time_ms, release_ms, partition, index, key_len = _HEAD.unpack_from(raw)
    at = _HEAD.size
    (topic_len,) = struct.unpack_from(">H", raw, at)
    at += 2
    topic = raw[at : at + topic_len].decode()
    at += topic_len
    head = EntryHeader(topic, partition, offset, index, time_ms, release_ms)
    return head, raw[at : at + key_len], raw[at + key_len :]


def _int(raw: bytes | None) -> int:
    return NO_WATERMARK if raw is None else int(raw)
