"""Where ticks go among a partition's input records (the rule of streams.ticks).

Rule: a tick "after N" is applied right after source offset N, wherever it was fetched. A
partition's source records wait until its time log has been read up to the end it had when
the partition was assigned: every tick written before then is known, and after that only this
worker writes ticks there, applying each as it writes it. Ticks of one time log partition are
applied in their log order (their `after`s never decrease while one worker owns it), so one
written now waits for those before it still to be read (a reader of a time log that another
runner of this worker writes can lag behind it after a restart). So a restart, a rebalance or
a replay that follows this time log applies each tick at the same place, whatever the order
in which the two logs come.

A re-injected event's copy (streams.retries) is a time-log record like a tick, placed by its
`after`. Requests to copy wait like source records, until the time log is read to that end:
then every copy written before is known, and a request that one of them, or the state,
covers is not copied again.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

from engine.processor import Record
from streams.retries import is_retry, read_copy
from streams.ticks import read_tick


@dataclass
class TimeLogMerge:
    """One partition's source records and ticks, merged; `end`: the time log partition's end
    offset when the partition was assigned (None: not known, so nothing waits)."""

    end: int | None
    read_to: int = -1  # the highest time-log offset read, with every one before it
    # (after, tick), waiting, by time-log offset
    ticks: list[tuple[int, Record]] = field(default_factory=list)
    held: list[Record] = field(default_factory=list)  # source records, waiting
    requests: list[Record] = field(default_factory=list)  # re-injection requests, waiting
    copied: int = -1  # the last request whose copy is in the time log (seen or written)

    def take(
        self,
        source: Sequence[Record],
        ticks: Sequence[Record],
        applied: int,
        applied_ticks: int,
        written: bool = False,
    ) -> list[Record]:
        """The records to apply now, in order (`applied`, `applied_ticks`: the last source and
        time-log offsets applied; `written`: the ticks were written now, not fetched); the rest
        wait for a later call."""
        for tick in ticks:
            # one written now counts as read only right after what was read: none before it
            # can still come
            if not written or tick.offset == self.read_to + 1:
                self.read_to = max(self.read_to, tick.offset)
            if is_retry(tick.headers):
                copy = read_copy(tick.headers)
                after = None if copy is None else copy.after
                self.copied = max(self.copied, -1 if copy is None else copy.request_offset)
            else:
                read = read_tick(tick.value)
                after = None if read is None else read.after
            # applied already (skipped), or unreadable (a dead letter): due at once, in order
            place = after if after is not None and tick.offset > applied_ticks else -1
            entry: tuple[int, Record] = (place, tick)
            bisect.insort(self.ticks, entry, key=_log_offset)
        self.held.extend(source)
        if not self.complete(applied_ticks):
            return self._due(applied, self.end)
        now: list[Record] = []
        position = applied
        for record in self.held:
            now += self._due(record.offset - 1)
            now.append(record)
            position = max(position, record.offset)
        self.held = []
        return [*now, *self._due(position)]

    def complete(self, applied_ticks: int) -> bool:
        """Every tick written before the assignment has been read."""
        return self.end is None or max(self.read_to, applied_ticks) >= self.end - 1

    def waiting(self) -> bool:
        return bool(self.held or self.ticks or self.requests)

    def take_requests(self, applied_ticks: int, applied_request: int) -> tuple[list, list]:
        """(requests to copy now, requests covered already), once every copy written before
        the assignment is known; both empty until then."""
        if not self.complete(applied_ticks):
            return [], []
        covered = max(self.copied, applied_request)
        due = [r for r in self.requests if r.offset > covered]
        done = [r for r in self.requests if r.offset <= covered]
        self.requests = []
        return due, done

    def _due(self, position: int, unread: int | None = None) -> list[Record]:
        """The waiting ticks placed at or before source offset `position`, in log order, up to
        the time-log offset `unread` (None: all), from where some are still to be read."""
        due, ticks = 0, self.ticks
        while due < len(ticks) and ticks[due][0] <= position:
            if unread is not None and ticks[due][1].offset >= unread:
                break
            due += 1
        taken, self.ticks = self.ticks[:due], self.ticks[due:]
        return [tick for _, tick in taken]


def _log_offset(entry: tuple[int, Record]) -> int:
    return entry[1].offset
