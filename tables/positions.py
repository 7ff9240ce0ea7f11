"""Positions in one source partition's log: where a record was applied, so that a redone
batch knows what a cell or a user record holds already.

A source record's position is its offset N (an int). A time-log record (a tick, a re-injected
event: streams.retries) is applied right after source offset N: its position is At(N, t), t
its own time-log offset, ordered as the pair (N, t), with an int N as (N, -1). So
N < At(N, t) < At(N, t') < N + 1 for t < t', and ints compare with At as they are: the hot path
keeps comparing plain offsets.

Stored as N, or [N, t] for an At.
"""

from __future__ import annotations

from typing import Any


class At:
    """The position of a time-log record: after source offset `source`, at `tick`."""

    __slots__ = ("source", "tick")

    def __init__(self, source: int, tick: int) -> None:
        self.source, self.tick = source, tick

    def pair(self) -> tuple[int, int]:
        return self.source, self.tick

    def __repr__(self) -> str:
        return f"At({self.source}, {self.tick})"

    def __eq__(self, other: object) -> bool:
        return type(other) in (At, int) and self.pair() == _pair(other)

    def __hash__(self) -> int:
        return hash(self.source) if self.tick < 0 else hash(self.pair())

    def __lt__(self, other: Any) -> bool:
        return self.pair() < _pair(other)

    def __le__(self, other: Any) -> bool:
        return self.pair() <= _pair(other)

    def __gt__(self, other: Any) -> bool:
        return self.pair() > _pair(other)

    def __ge__(self, other: Any) -> bool:
        return self.pair() >= _pair(other)


Position = int | At


def _pair(position: Any) -> tuple[int, int]:
    if type(position) is At:
        return position.pair()
    if type(position) is int:
        return position, -1
    raise TypeError(f"not a position: {position!r}")


def as_json(value: Any) -> list[int]:
    """orjson's `default`: an At as stored, [N, t] (ints need none)."""
    if type(value) is At:
        return [value.source, value.tick]
    raise TypeError(f"{type(value).__name__} is not JSON")


def decoded(stored: Any) -> Position:
    """An int as it is; [N, t] as At(N, t)."""
    return At(stored[0], stored[1]) if type(stored) is list else stored
