"""The processor protocol: what a processor tells the engine, and what one batch gives back.

A processor is a fold over partition p of its inputs, pure apart from in-memory indexes it
may rebuild from its state at any time:

    apply(partition, records, state, settled) -> Outcome

- `inputs`: the source topic, whose offsets are the processor's positions; optionally a time
  log (ticks, each applied right after the source offset it names: engine.time_log), side
  inputs (app-owned topics taken as they come, e.g. order facts) and a topic of re-injection
  requests (the runner writing the time log copies each into it: streams.retries). Partition
  p of each.
- `table`: the changelog-backed table of its state, one key space per partition, laid out by
  `keyspace`: its key prefixes, what each holds and its place in the crash-safe write order.
- `outputs`: output name -> topic; the outcome names outputs, never topics.
- `apply(partition, records, state, settled)`: `records` in the order to apply (source records
  in offset order, ticks among them, side records as they came), possibly a `Poisoned` record
  to reject; `state` the stored state overlaid with what earlier batches staged, `settled` the
  committed state alone. It returns the writes, the records to send, what its sink stages
  (projection, metrics), and reads nothing but its arguments and its own indexes.
- `position(partition, state)`: the last source and time-log offsets applied, the watermark
  (idle ticks and the time log need them) and the last re-injection request applied.
- `forget(partition)`: drop the in-memory indexes of a partition (after a rebalance, or a
  batch that raised half-way); they are rebuilt from `state` when next needed.

State keyed by something other than the input's key (a card, an IP) is read from a repartition
topic: engine.repartition forwards and aligns it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

MAX_RECORD_BYTES = 900_000  # any record the app writes (state or derived); Faust's limit 1e6


class Record(Protocol):
    """What a processor reads of an input record (aiokafka's ConsumerRecord has it)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...  # epoch ms, the record's own timestamp
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class InputRecord:
    """A record the engine made itself (a tick it wrote, a Faust event's message)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Any = ()


@dataclass(frozen=True, slots=True)
class Poisoned:
    """An input record whose processing raised: the processor must reject it (a dead letter)."""

    record: Record
    error: BaseException

    @property
    def topic(self) -> str:
        return self.record.topic

    @property
    def offset(self) -> int:
        return self.record.offset


@dataclass(frozen=True, slots=True)
class Send:
    """A derived record, encoded, by output name (partition None: by its key)."""

    output: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None
    headers: list[tuple[str, bytes]] | None = None


@dataclass(slots=True)
class Outcome:
    """What one batch of one partition changed, and what it sends."""

    partition: int
    writes: dict[bytes, bytes | None] = field(default_factory=dict)  # None deletes
    sends: list[Send] = field(default_factory=list)
    staged: Any = None  # what the processor's sink stages (projection updates, progress)


@dataclass(frozen=True, slots=True)
class Position:
    offset: int  # last source offset applied (-1: none)
    ticks_offset: int = -1  # last time-log offset applied
    watermark_ms: int = -1
    retry_request: int = -1  # the last re-injection request applied (Inputs.retries)


@dataclass(frozen=True, slots=True)
class Inputs:
    source: str
    time_log: str | None = None
    sides: tuple[str, ...] = ()
    # a control log (not events): its ticks follow the wall clock plus this lead, every
    # few seconds, whatever the idle setting; its entries are stamped further ahead than that
    wall_ticks_lead_ms: int = 0
    retries: str | None = None  # re-injection requests, for the runner writing the time log

    def topics(self) -> tuple[str, ...]:
        optional = tuple(topic for topic in (self.time_log, self.retries) if topic)
        return (self.source, *optional, *self.sides)


@dataclass(frozen=True, slots=True)
class Prefix:
    """A key prefix of a processor's state: the letter before the first '|'."""

    letter: str
    holds: str
    order: int  # place in the write order of a commit (lower first)
    deletes: int | None = None  # tombstones' place, when later than the puts'


class Keyspace:
    """A processor's key prefixes and their crash-safe write order.

    A changelog partition recovers a prefix of what a commit wrote, so a commit writes its
    keys by the order of their prefix: what a recovered key implies is written before it."""

    def __init__(self, *prefixes: Prefix) -> None:
        self.prefixes = {p.letter.encode(): p for p in prefixes}
        assert all(len(letter) == 1 for letter in self.prefixes), "one-letter prefixes"

    def rank(self, key: bytes, value: bytes | None) -> int:
        prefix = self.prefixes.get(key[:1])
        if prefix is None:
            raise KeyError(f"state key {key[:40]!r} has no registered prefix")
        if value is None and prefix.deletes is not None:
            return prefix.deletes
        return prefix.order

    def ordered(self, writes: Mapping[bytes, bytes | None]) -> list[tuple[bytes, bytes | None]]:
        return sorted(writes.items(), key=lambda kv: self.rank(*kv))


class Store(Protocol):
    """Reads of one partition's state (keys and values raw bytes)."""

    def get(self, key: bytes) -> bytes | None: ...

    def items(self, prefix: bytes) -> Iterable[tuple[bytes, bytes]]: ...


class Sink(Protocol):
    """Where a processor's outcomes go besides Kafka: the Redis projection, metrics."""

    def stage(self, staged: Sequence[Any]) -> None: ...

    async def flush(self) -> bool: ...

    def assigned(self, partitions: set[int]) -> None: ...

    async def lost(self) -> bool:
        """Whether what the sink wrote may be gone since last asked (Redis restarted empty):
        the runner then restates every partition it owns."""
        ...

    def restate(self, partition: int, state: Store) -> None:
        """Stage everything the sink shows of `partition`, read whole from its state."""
        ...


class Processor(Protocol):
    @property
    def name(self) -> str: ...  # the agent's name: a verb
    @property
    def inputs(self) -> Inputs: ...
    @property
    def table(self) -> str: ...
    @property
    def keyspace(self) -> Keyspace: ...
    @property
    def outputs(self) -> Mapping[str, str]: ...  # output name -> topic
    @property
    def sink(self) -> Sink | None: ...

    def apply(
        self, partition: int, records: Sequence[Record | Poisoned], state: Store, settled: Store
    ) -> Outcome: ...

    def position(self, partition: int, state: Store) -> Position: ...

    def forget(self, partition: int) -> None: ...
