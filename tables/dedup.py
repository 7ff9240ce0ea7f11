"""Dedup by event_id, bounded by event time.

Stored shape: S|p|<first offset of batch> -> [[event_id, source offset, event time], ...], the
ids first seen in one batch (split into records of at most RESULT_BYTES; S|p|f<offset>: order
facts' ids, by their own topic's offsets; S|p|r<time-log offset>: re-injected events' ids, at
their positions [N, t], tables.positions). In memory, per source partition: event_id ->
position, and each bucket's positions and newest event time.

Rule, at each event's place in the log (so the verdict depends on neither batching nor
crashes): an event is a duplicate when its event_id was first seen at another offset, with an
event time no more than the horizon before the watermark at this event. An id older than that
is forgotten: seen again, it counts as new. A bucket is deleted (tombstoned) once the committed
watermark is more than the horizon past its newest event: no event still to be applied, nor
redone after a commit cut short, can need it.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

import orjson

from engine.processor import Store
from tables.bounded import RESULT_BYTES
from tables.positions import At, Position, as_json, decoded

Entry = tuple[str, Position, int]  # event_id, position (a source offset, mostly), event time ms
SOURCE_LOG, FACTS_LOG, RETRIED_LOG = "", "f", "r"  # a bucket key's letter after S|p|
NO_BUCKET = 1 << 62  # later than any event time


def seen_chunks(entries: list[Entry]) -> list[tuple[list[Entry], bytes]]:
    """A batch's new ids as (entries, encoded) records of at most about RESULT_BYTES each: one
    record, unless the ids are long (up to 2 KB each)."""
    if not entries:
        return []
    encoded = orjson.dumps(entries, default=as_json)
    if len(encoded) <= RESULT_BYTES:
        return [(entries, encoded)]
    chunks: list[list[Entry]] = [[]]
    size = 0
    for entry in entries:
        cost = len(orjson.dumps(entry, default=as_json)) + 1
        if size + cost > RESULT_BYTES and chunks[-1]:
            chunks.append([])
            size = 0
        chunks[-1].append(entry)
        size += cost
    return [(chunk, orjson.dumps(chunk, default=as_json)) for chunk in chunks]


def seen_prefix(partition: int) -> bytes:
    return f"S|{partition}|".encode()


def seen_bucket_key(partition: int, first_offset: int, log: str = SOURCE_LOG) -> bytes:
    """`log`: SOURCE_LOG for source events, FACTS_LOG for order facts (offsets in another
    topic), RETRIED_LOG for re-injected events (`first_offset`: the first one's time-log
    offset)."""
    return seen_prefix(partition) + log.encode() + b"%020d" % first_offset


class SeenIndex:
    """One partition's stored ids, in memory (see the module docstring)."""

    def __init__(self) -> None:
        self.offsets: dict[str, Position] = {}
        # key -> (newest time, first position, last position, ids)
        self.buckets: dict[bytes, tuple[int, Position, Position, list[str]]] = {}
        # source and re-injected buckets: (first position, key), sorted
        self._firsts: dict[str, list[tuple[Position, bytes]]] = {SOURCE_LOG: [], RETRIED_LOG: []}
        self._no_newest_before = NO_BUCKET  # no bucket's newest time is earlier than this

    @classmethod
    def load(cls, stored: Iterable[tuple[bytes, bytes]]) -> SeenIndex:
        """From the stored bucket records of one partition."""
        index = cls()
        for key, value in stored:
            index.add(key, [(e, decoded(o), t) for e, o, t in orjson.loads(value)])
        return index

    def offset_of(self, event_id: str) -> Position | None:
        return self.offsets.get(event_id)

    def add(self, key: bytes, entries: list[Entry]) -> None:
        event_ids, offsets, times = zip(*entries, strict=True)
        newest = max(times)
        self.buckets[key] = (newest, min(offsets), max(offsets), list(event_ids))
        self._no_newest_before = min(self._no_newest_before, newest)
        self.offsets.update(zip(event_ids, offsets, strict=True))
        firsts = self._firsts.get(_log(key))
        if firsts is not None:
            bisect.insort(firsts, (min(offsets), key))

    def time_of(self, offset: Position, store: Store) -> int:
        """The event time of the event first seen at `offset` (read from its bucket: asked
        only for a duplicate, rarely)."""
        firsts = self._firsts[RETRIED_LOG if type(offset) is At else SOURCE_LOG]
        at = bisect.bisect_right(firsts, (offset, b"\xff")) - 1
        if at >= 0:
            raw = store.get(firsts[at][1])
            for _, entry_offset, time_ms in orjson.loads(raw or b"[]"):
                if decoded(entry_offset) == offset:
                    return int(time_ms)
        return NO_BUCKET  # unknown here: taken for recent (a duplicate)

    def expired(self, before_ms: int) -> list[bytes]:
        """Keys of the buckets whose newest event is older than `before_ms`."""
        if before_ms <= self._no_newest_before:  # most batches: no scan
            return []
        self._no_newest_before = min(
            (newest for newest, *_ in self.buckets.values()), default=NO_BUCKET
        )
        return [key for key, (newest, *_) in self.buckets.items() if newest < before_ms]

    def drop(self, keys: Iterable[bytes]) -> None:
        dropped = set()
        for key in keys:
            if key not in self.buckets:
                continue
            _, first, last, ids = self.buckets.pop(key)
            dropped.add(key)
            for event_id in ids:  # unless seen anew since, in a later bucket
                if first <= self.offsets.get(event_id, -1) <= last:
                    del self.offsets[event_id]
        if dropped:
            for log, firsts in self._firsts.items():
                self._firsts[log] = [(o, k) for o, k in firsts if k not in dropped]


class BatchIds:
    """The dedup of one batch of one partition: a verdict per event, then the batch's new ids
    as bucket records and the buckets the committed watermark lets go.

    Per event, the fold looks the id up itself (the hot path): an id in neither `known` (the
    stored ids) nor `new` (this batch's) is new, and the fold records it in `new`; only a
    known one is judged by `duplicate`."""

    def __init__(self, partition: int, seen: SeenIndex, store: Store, horizon_ms: int) -> None:
        self.partition, self.seen, self.store, self.horizon_ms = partition, seen, store, horizon_ms
        self.known = seen.offsets
        self.new: dict[str, tuple[Position, int]] = {}  # event_id -> (position, time), first here
        self.facts: dict[str, tuple[int, int]] = {}  # order facts' ids (offsets: their topic's)

    def duplicate(self, event_id: str, offset: Position, time_ms: int, watermark_ms: int) -> bool:
        """Whether the event at `offset`, whose id is known, is a duplicate (the rule above);
        if it is not, it is remembered as first seen here."""
        first = self.known.get(event_id)
        forget_before = watermark_ms - self.horizon_ms
        if first is not None:
            if first == offset:
                return False  # its own record, redone after a commit cut short
            if self.seen.time_of(first, self.store) >= forget_before:
                return True
        again = self.new.get(event_id)
        if again is not None and again[1] >= forget_before:
            return True
        self.new[event_id] = (offset, time_ms)
        return False

    def fact_is_new(self, event_id: str, offset: int, time_ms: int) -> bool:
        """For order facts: True unless `event_id` was seen at another offset."""
        first = self.known.get(event_id)
        if first is None and event_id in self.facts:
            first = self.facts[event_id][0]
        if first is None:
            self.facts[event_id] = (offset, time_ms)
        return first is None or first == offset

    def finish(
        self, settled_ms: int, writes: dict[bytes, bytes | None]
    ) -> tuple[list[tuple[bytes, list[Entry]]], list[bytes]]:
        """Write the new buckets and the tombstones of the expired ones; (new, expired)."""
        new = []
        source: list[Entry] = [(i, o, t) for i, (o, t) in self.new.items()]
        retried = [entry for entry in source if type(entry[1]) is At]
        if retried:
            source = [entry for entry in source if type(entry[1]) is not At]
        facts: list[Entry] = [(i, o, t) for i, (o, t) in self.facts.items()]
        for entries, log in ((source, SOURCE_LOG), (facts, FACTS_LOG), (retried, RETRIED_LOG)):
            entries.sort(key=_offset)
            for chunk, encoded in seen_chunks(entries):  # one record, unless ids are long
                first = chunk[0][1]
                at = first.tick if type(first) is At else first
                key = seen_bucket_key(self.partition, at, log)  # type: ignore[arg-type]
                new.append((key, chunk))
                writes[key] = encoded
        expired = self.seen.expired(settled_ms - self.horizon_ms)
        for key in expired:
            writes[key] = None
        return new, expired


def _offset(entry: Entry) -> Position:
    return entry[1]


def _log(key: bytes) -> str:
    """A bucket key's log letter (SOURCE_LOG: none)."""
    letter = key[key.rindex(b"|") + 1 :][:1]
    return "" if letter.isdigit() else letter.decode()
