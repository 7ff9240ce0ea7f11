"""One source partition's windowed counts, advanced a batch at a time (pure; state passed in).

Shape of the state, one key space per source partition p (all in changelog partition p):
  C|p|<window start>|<dimension> -> {"v": [counts...], "o": last source offset applied}
  S|p|<first offset of batch>    -> [[event_id, source offset, event time], ...]  (dedup: the
                                    ids first seen in one batch, one record per batch)
  P|p                            -> Progress                                       (written last)

Rules, per event in offset order:
  offset <= progress.offset        already applied by an earlier flush: skip (redelivery)
  invalid                          dead letter, counted once
  event_id seen at another offset  duplicate, counted once, no effect
  window closed (watermark >= window end + grace)   late: recorded, never merged
  otherwise                        add to each cell whose own offset is older (a cell may
                                   already hold it if a flush was cut short), watermark = max.
Because the progress key is written after every other key of a flush, into the same changelog
partition, a recovered progress implies every earlier write of its flush is recovered too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import orjson

from tables.dedup import Entry, SeenIndex, seen_bucket_key
from tables.windows import WindowSpec

NO_WATERMARK = -1
EMPTY_CELL = {"v": [], "o": -1}


@dataclass(slots=True)  # not frozen: built once per event, and frozen init costs 4x
class Observation:
    """A valid event as the window logic sees it: which cells it adds what to."""

    offset: int
    event_id: str
    time_ms: int
    increments: tuple[tuple[str, tuple[int, ...]], ...]  # (dimension, amounts)


@dataclass(slots=True)
class Rejected:
    """An invalid event: it goes to the dead-letter topic with `reason`."""

    offset: int
    reason: str
    detail: str


@dataclass(slots=True)
class Progress:
    watermark_ms: int = NO_WATERMARK
    offset: int = -1  # last source offset fully applied
    accepted: int = 0
    duplicates: int = 0
    late: int = 0
    dead_letters: int = 0

    def encode(self) -> bytes:
        return orjson.dumps(
            [
                self.watermark_ms,
                self.offset,
                self.accepted,
                self.duplicates,
                self.late,
                self.dead_letters,
            ]
        )

    @classmethod
    def decode(cls, raw: bytes | None) -> Progress:
        return cls() if raw is None else cls(*orjson.loads(raw))


@dataclass(frozen=True, slots=True)
class LateEvent:
    offset: int
    event_id: str
    time_ms: int
    window_start_ms: int
    watermark_ms: int


@dataclass(slots=True)
class BatchOutcome:
    """What one batch changed: table writes (progress last), and what to emit or project."""

    partition: int
    writes: dict[bytes, bytes | None] = field(default_factory=dict)  # None deletes
    cells: dict[tuple[int, str], list[int]] = field(default_factory=dict)
    progress: Progress = field(default_factory=Progress)
    late: list[LateEvent] = field(default_factory=list)
    dead_letters: list[Rejected] = field(default_factory=list)
    new_bucket: tuple[bytes, list[Entry]] | None = None  # the dedup record written now
    expired_buckets: list[bytes] = field(default_factory=list)  # dedup records deleted now


def progress_key(partition: int) -> bytes:
    return f"P|{partition}".encode()


def cell_key(partition: int, window_start_ms: int, dimension: str) -> bytes:
    return f"C|{partition}|{window_start_ms}|{dimension}".encode()


def apply_batch(
    partition: int,
    items: Sequence[Observation | Rejected],
    spec: WindowSpec,
    read: Callable[[bytes], bytes | None],
    seen: SeenIndex,
) -> BatchOutcome:
    """Advance partition `partition` by `items` (in offset order); `read` gets stored values,
    `seen` holds every event_id already stored for the partition (not changed here)."""
    out = BatchOutcome(partition)
    progress = out.progress = Progress.decode(read(progress_key(partition)))
    cells: dict[bytes, list] = {}  # key -> [counts, offset], read once per batch
    new_seen: dict[str, int] = {}  # event_id -> offset, for ids first seen in this batch
    bucket: list[Entry] = []

    for item in items:
        if item.offset <= progress.offset:
            continue
        progress.offset = item.offset
        if isinstance(item, Rejected):
            progress.dead_letters += 1
            out.dead_letters.append(item)
            continue
        first_seen_at = seen.offset_of(item.event_id)
        if first_seen_at is None:
            first_seen_at = new_seen.get(item.event_id)
        if first_seen_at is not None and first_seen_at != item.offset:
            progress.duplicates += 1
            continue
        if first_seen_at is None:
            new_seen[item.event_id] = item.offset
            bucket.append((item.event_id, item.offset, item.time_ms))
        start = spec.start_of(item.time_ms)
        if spec.is_closed(start, progress.watermark_ms):
            progress.late += 1
            out.late.append(
                LateEvent(item.offset, item.event_id, item.time_ms, start, progress.watermark_ms)
            )
            continue
        for dimension, amounts in item.increments:
            ckey = cell_key(partition, start, dimension)
            cell = cells.get(ckey)
            if cell is None:
                raw = read(ckey)
                stored = orjson.loads(raw) if raw is not None else EMPTY_CELL
                cell = cells[ckey] = [stored["v"] or [0] * len(amounts), stored["o"]]
            if cell[1] < item.offset:  # not yet in this cell
                cell[0] = [a + b for a, b in zip(cell[0], amounts, strict=True)]
                cell[1] = item.offset
            out.cells[(start, dimension)] = cell[0]
        progress.accepted += 1
        progress.watermark_ms = max(progress.watermark_ms, item.time_ms)

    for ckey, (counts, offset) in cells.items():
        out.writes[ckey] = orjson.dumps({"v": counts, "o": offset})
    if bucket:
        key = seen_bucket_key(partition, bucket[0][1])
        out.new_bucket = (key, bucket)
        out.writes[key] = orjson.dumps(bucket)
    out.expired_buckets = seen.expired(progress.watermark_ms - spec.dedup_horizon_ms)
    for key in out.expired_buckets:
        out.writes[key] = None  # a tombstone
    if items:
        out.writes[progress_key(partition)] = progress.encode()
    return out
