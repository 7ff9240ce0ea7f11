"""Panes: one source partition's window contents, as one batch changes them (pure; state passed
in).

Shape, in partition p's key space:
  C|p|<pane start>|<dimension> -> {"v": [counts...], "o": the position of the last record
                                  applied (tables.positions: a source offset, or [source
                                  offset, time-log offset] for a re-injected event or, in the
                                  sessions|ended cell, a tick: tables.user_sessions)}
  H|p|<pane start>|<dimension> -> HyperLogLog registers (tables.sketch; max is idempotent)
  W|p                          -> starts of the panes stored, ascending

Rules: a record adds to a cell only if the cell's position is older (a cell may already hold it
when a commit was cut short), and to a sketch by register-wise max. A window closes when the
watermark passes its end + grace; every tumbling and hopping window with data whose close time
is in (W0, W1] is read whole, once. A pane is deleted once its last hopping window closed by the
committed (settled) watermark: the batches of a commit cut short are redone over whatever part
of it landed, so nothing they read may be gone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from engine.processor import Store
from tables import sketch
from tables.positions import Position, as_json, decoded
from tables.windows import MAX_COUNT, WindowSpec

EMPTY_CELL = {"v": [], "o": -1}

Increments = tuple[tuple[str, tuple[int, ...]], ...]  # (dimension, amounts added)
Uniques = tuple[tuple[str, int, int], ...]  # (dimension, sketch register, rank)


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    """A window's final content in one source partition: [start, end), a pane or a hop."""

    start_ms: int
    end_ms: int
    counts: dict[str, list[int]]
    sketches: dict[str, bytes]


class Writes(Protocol):
    """Where a batch's pane changes go (tables.window_state.BatchOutcome)."""

    writes: dict[bytes, bytes | None]
    cells: dict[tuple[int, str], list[int]]
    sketches: dict[tuple[int, str], bytes]


def panes_key(partition: int) -> bytes:
    return f"W|{partition}".encode()


def pane_prefix(kind: str, partition: int, start_ms: int) -> bytes:
    return f"{kind}|{partition}|{start_ms}|".encode()


def cell_key(partition: int, start_ms: int, dimension: str) -> bytes:
    return pane_prefix("C", partition, start_ms) + dimension.encode()


def sketch_key(partition: int, start_ms: int, dimension: str) -> bytes:
    return pane_prefix("H", partition, start_ms) + dimension.encode()


def stored_panes(
    partition: int, store: Store
) -> tuple[dict[tuple[int, str], list[int]], dict[tuple[int, str], bytes]]:
    """Every stored pane's cells and sketches, by (pane start, dimension)."""

    def stored(kind: str) -> Iterable[tuple[tuple[int, str], bytes]]:
        prefix = f"{kind}|{partition}|".encode()
        for key, value in store.items(prefix):
            start, dimension = key[len(prefix) :].decode().split("|", 1)
            yield (int(start), dimension), value

    cells = {at: orjson.loads(value)["v"] for at, value in stored("C")}
    sketches = {at: bytes(value) for at, value in stored("H")}
    return cells, sketches


class PaneBatch:
    """The panes of one partition as one batch changes them."""

    def __init__(self, partition: int, spec: WindowSpec, store: Store) -> None:
        self.partition, self.spec, self.store = partition, spec, store
        self.stored = orjson.loads(store.get(panes_key(partition)) or b"[]")
        self.starts = set(self.stored)
        self.cells: dict[tuple[int, str], list] = {}  # (start, dimension) -> [counts, position]
        self.sketches: dict[tuple[int, str], bytearray] = {}

    def add(self, events: Iterable[tuple[int, Any]]) -> None:
        """Accepted events, as (pane start, event with offset, increments, uniques): their
        increments and sketch positions (one loop per batch: the hot path)."""
        cells, sketches, starts = self.cells, self.sketches, self.starts
        get, partition, empty = self.store.get, self.partition, sketch.empty
        for start, event in events:
            offset = event.offset
            for dimension, amounts in event.increments:
                cell = cells.get((start, dimension))
                if cell is None:
                    raw = get(cell_key(partition, start, dimension))
                    stored = orjson.loads(raw) if raw is not None else EMPTY_CELL
                    cell = cells[start, dimension] = [
                        stored["v"] or [0] * len(amounts),
                        decoded(stored["o"]),
                    ]
                if cell[1] < offset:  # not yet in this cell
                    counts = cell[0]
                    if len(amounts) == 1:  # most cells count one thing
                        counts[0] += amounts[0]
                    else:  # sums of amounts (bounded per event): saturate, never overflow
                        for i, amount in enumerate(amounts):
                            counts[i] = min(counts[i] + amount, MAX_COUNT)
                    cell[1] = offset
            for dimension, register, rank in event.uniques:
                registers = sketches.get((start, dimension))
                if registers is None:
                    raw = get(sketch_key(partition, start, dimension))
                    registers = sketches[start, dimension] = bytearray(raw or empty())
                if registers[register] < rank:
                    registers[register] = rank
            starts.add(start)

    def add_at(self, start: int, dimension: str, at: Position, amounts: list[int]) -> None:
        """Amounts added to a cell at position `at` (sessions closed by a record's watermark)."""
        cell = self.cells.get((start, dimension))
        if cell is None:
            raw = self.store.get(cell_key(self.partition, start, dimension))
            stored = orjson.loads(raw) if raw is not None else EMPTY_CELL
            position = decoded(stored["o"])
            cell = self.cells[start, dimension] = [stored["v"] or [0] * len(amounts), position]
        if cell[1] < at:
            cell[0] = [min(a + b, MAX_COUNT) for a, b in zip(cell[0], amounts, strict=True)]
            cell[1] = at
        self.starts.add(start)

    def finish(
        self,
        out: Writes,
        before: int,
        after: int,
        settled_ms: int,
        final_panes: dict[int, ClosedWindow] | None,
    ) -> list[ClosedWindow]:
        """Write the batch's cells and sketches, the deletions its settled watermark allows
        and the pane registry; return the windows closed in (before, after]."""
        partition = self.partition
        for (start, dimension), (counts, position) in self.cells.items():
            value = orjson.dumps({"v": counts, "o": position}, default=as_json)
            out.writes[cell_key(partition, start, dimension)] = value
            out.cells[start, dimension] = counts
        for (start, dimension), registers in self.sketches.items():
            out.writes[sketch_key(partition, start, dimension)] = out.sketches[start, dimension] = (
                bytes(registers)
            )
        closed = self._closing(out, before, after, final_panes)
        for start in [s for s in self.starts if self.spec.hop_closes_at(s) <= settled_ms]:
            self.starts.discard(start)  # its last window's result is committed
            for kind in ("C", "H"):
                for key, _ in self.store.items(pane_prefix(kind, partition, start)):
                    out.writes[key] = None
        if sorted(self.starts) != self.stored:
            out.writes[panes_key(partition)] = orjson.dumps(sorted(self.starts))
        return closed

    def _closing(
        self,
        out: Writes,
        before: int,
        after: int,
        final_panes: dict[int, ClosedWindow] | None,
    ) -> list[ClosedWindow]:
        """Every window with a stored pane whose close time is in (before, after], read whole.
        Windows without data are not emitted: a reader knows this partition passed them by its
        progress (agents.window_results).

        Each pane read here has closed, so its content is final: kept in `final_panes` (when
        given) for the hopping windows that close later, until the pane is deleted."""
        spec, panes, size = self.spec, self.starts, self.spec.size_ms
        if after <= before:
            return []
        contents: dict[int, ClosedWindow] = {} if final_panes is None else final_panes
        for start in [s for s in contents if s not in panes]:
            del contents[start]  # deleted after its last window closed

        def pane(start: int) -> ClosedWindow:
            if start not in contents:
                contents[start] = self._read(start, out)
            return contents[start]

        def closing(starts: Iterable[int], close_offset: int) -> list[int]:
            return sorted(s for s in starts if before < s + close_offset <= after)

        closed = [pane(s) for s in closing(panes, size + spec.grace_ms)]
        if spec.hop_ms > size:
            hops = {h for s in panes for h in spec.hops_holding(s)}
            for hop in closing(hops, spec.hop_ms + spec.grace_ms):
                members = [pane(s) for s in range(hop, hop + spec.hop_ms, size) if s in panes]
                closed.append(merge(hop, hop + spec.hop_ms, members))
        return closed

    def _read(self, start: int, out: Writes) -> ClosedWindow:
        """A pane as stored, overlaid with this batch's changes to it."""
        partition, store = self.partition, self.store
        cells, hlls = pane_prefix("C", partition, start), pane_prefix("H", partition, start)
        counts = {k[len(cells) :].decode(): orjson.loads(v)["v"] for k, v in store.items(cells)}
        sketches = {k[len(hlls) :].decode(): bytes(v) for k, v in store.items(hlls)}
        counts.update((d, c) for (s, d), c in out.cells.items() if s == start)
        sketches.update((d, r) for (s, d), r in out.sketches.items() if s == start)
        return ClosedWindow(start, start + self.spec.size_ms, counts, sketches)


def merge(start: int, end: int, panes: Sequence[ClosedWindow]) -> ClosedWindow:
    """Panes summed into the window [start, end) (sketches: register-wise max)."""
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
