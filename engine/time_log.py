"""Where ticks go among a partition's input records (the rule of streams.ticks).

Rule: a tick "after N" is applied right after source offset N, wherever it was fetched. A
partition's source records wait until its time log has been read up to the end it had when
the partition was assigned: every tick written before then is known, and after that only this
worker writes ticks there, applying each as it writes it. Ticks of one time log partition are
applied in their log order (their `after`s never decrease while one worker owns it). So a
restart, a rebalance or a replay that follows this time log applies each tick at the same
place, whatever the order in which the two logs come.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from engine.processor import Record
from streams.ticks import read_tick


@dataclass
class TimeLogMerge:
    """One partition's source records and ticks, merged; `end`: the time log partition's end
    offset when the partition was assigned (None: not known, so nothing waits)."""

    end: int | None
    read_to: int = -1  # the highest time-log offset seen
    ticks: list[tuple[int, Record]] = field(default_factory=list)  # (after, tick), waiting
    held: list[Record] = field(default_factory=list)  # source records, waiting

    def take(
        self,
        source: Sequence[Record],
        ticks: Sequence[Record],
        applied: int,
        applied_ticks: int,
    ) -> list[Record]:
        """The records to apply now, in order (`applied`, `applied_ticks`: the last source and
        time-log offsets applied); the rest wait for a later call."""
        for tick in ticks:
            self.read_to = max(self.read_to, tick.offset)
            read = read_tick(tick.value)
            # applied already (skipped), or unreadable (a dead letter): due at once, in order
            after = -1 if tick.offset <= applied_ticks or read is None else read.after
            self.ticks.append((after, tick))
        self.held.extend(source)
        if not self.complete(applied_ticks):
            return self._due(applied)
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
        return bool(self.held or self.ticks)

    def _due(self, position: int) -> list[Record]:
        """The waiting ticks placed at or before source offset `position`, in log order."""
        due = 0
        while due < len(self.ticks) and self.ticks[due][0] <= position:
            due += 1
        taken, self.ticks = self.ticks[:due], self.ticks[due:]
        return [tick for _, tick in taken]
