"""Dedup by event_id, bounded by event time.

Stored shape: S|p|<first offset of batch> -> [[event_id, source offset, event time], ...], the
ids first seen in one batch (split into records of at most RESULT_BYTES; S|p|f<offset>: order
facts' ids, by their own topic's offsets). In memory, per source
partition: event_id -> offset, and each bucket's newest event time. A bucket is dropped
(tombstoned) once the partition's watermark is more than the horizon past its newest event: a
duplicate later than that counts again.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from tables.bounded import RESULT_BYTES

Entry = tuple[str, int, int]  # event_id, source offset, event time (ms)
NO_BUCKET = 1 << 62  # later than any event time


def seen_chunks(entries: list[Entry]) -> list[tuple[list[Entry], bytes]]:
    """A batch's new ids as (entries, encoded) records of at most about RESULT_BYTES each: one
    record, unless the ids are long (up to 2 KB each)."""
    if not entries:
        return []
    encoded = orjson.dumps(entries)
    if len(encoded) <= RESULT_BYTES:
        return [(entries, encoded)]
    chunks: list[list[Entry]] = [[]]
    size = 0
    for entry in entries:
        cost = len(orjson.dumps(entry)) + 1
        if size + cost > RESULT_BYTES and chunks[-1]:
            chunks.append([])
            size = 0
        chunks[-1].append(entry)
        size += cost
    return [(chunk, orjson.dumps(chunk)) for chunk in chunks]


def seen_prefix(partition: int) -> bytes:
    return f"S|{partition}|".encode()


def seen_bucket_key(partition: int, first_offset: int, log: str = "") -> bytes:
    """`log`: "" for source events, "f" for order facts (offsets in another topic)."""
    return seen_prefix(partition) + log.encode() + b"%020d" % first_offset


class SeenIndex:
    def __init__(self) -> None:
        self.offsets: dict[str, int] = {}
        self.buckets: dict[bytes, tuple[int, list[str]]] = {}  # key -> (newest time, ids)
        self._no_newest_before = NO_BUCKET  # no bucket's newest time is earlier than this

    @classmethod
    def load(cls, stored: Iterable[tuple[bytes, bytes]]) -> SeenIndex:
        """From the stored bucket records of one partition."""
        index = cls()
        for key, value in stored:
            index.add(key, [(e, o, t) for e, o, t in orjson.loads(value)])
        return index

    def offset_of(self, event_id: str) -> int | None:
        return self.offsets.get(event_id)

    def add(self, key: bytes, entries: list[Entry]) -> None:
        event_ids, offsets, times = zip(*entries, strict=True)
        newest = max(times)
        self.buckets[key] = (newest, list(event_ids))
        self._no_newest_before = min(self._no_newest_before, newest)
        self.offsets.update(zip(event_ids, offsets, strict=True))

    def expired(self, before_ms: int) -> list[bytes]:
        """Keys of the buckets whose newest event is older than `before_ms`."""
        if before_ms <= self._no_newest_before:  # most batches: no scan
            return []
        self._no_newest_before = min(
            (newest for newest, _ in self.buckets.values()), default=NO_BUCKET
        )
        return [key for key, (newest, _) in self.buckets.items() if newest < before_ms]

    def drop(self, keys: Iterable[bytes]) -> None:
        for key in keys:
            _, ids = self.buckets.pop(key, (0, []))
            for event_id in ids:
                self.offsets.pop(event_id, None)
