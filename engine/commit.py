"""The commit step: one interface for everything a commit makes durable, in a crash-safe order.

    1. the derived records of the staged batches, acks awaited; then the sink (Redis), so what
       a reader sees there has its derived records out already;
    2. each staged key once, to changelog partition = source partition, in the keyspace's
       write order, acks awaited; then exactly those acked records applied to the local
       store (`Table.apply_changelog_batch`, the path recovery takes), so the local store
       never holds what the changelog lacks;
    3. only then the batches' input offsets acked, so committed offsets never pass saved state.
A crash between steps repeats what came before (derived records carry deterministic ids; state
writes carry the offsets they cover). A later step can wrap the three in one Kafka transaction
behind this same interface.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import faust
from faust.types import TP, EventT

from engine.processor import Store
from engine.state import PartitionState

Ack = Callable[[TP, Sequence[int]], Awaitable[None]]  # (partition, offsets in order)
Flush = Callable[[], Awaitable[object]]  # the sink's flush (Redis)


@dataclass(frozen=True, slots=True)
class Derived:
    """A derived record resolved to its topic."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None
    headers: list[tuple[str, bytes]] | None = None


@dataclass
class CommitStep:
    sends: list[Derived] = field(default_factory=list)
    writes: dict[int, list[tuple[bytes, bytes | None]]] = field(default_factory=dict)
    offsets: dict[TP, list[int]] = field(default_factory=dict)  # input offsets covered


class Committer(Protocol):
    """Where a runner's state lives and how its commits land (Kafka here; memory in tests)."""

    def stored(self, partition: int) -> Store: ...

    async def append(
        self,
        topic: str,
        partition: int,
        value: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> int:
        """Write one record now (a tick, a re-injected event's copy); its offset."""
        ...

    async def commit(self, step: CommitStep, owner: Callable[[], bool], flush: Flush) -> None:
        """Make `step` durable, calling `flush` once its derived records are out; `owner()`
        False (a rebalance): stop before what is left."""
        ...


class SharedOffsets:
    """Input offsets of topics that several processors read (each its own runner and commits):
    an offset is done once every reader has acked it. Readers get the same records in the same
    order and ack them in that order, so what all have acked is a common prefix; it is passed
    on in order, and forgotten at a new generation (every reader starts again from the
    committed offsets)."""

    def __init__(self) -> None:
        self.bits: dict[str, dict[str, int]] = {}  # topic -> reader -> its bit
        self._pending: dict[TP, dict[int, int]] = {}  # offset -> readers that acked it
        self._done: dict[TP, int] = {}  # the highest offset passed on
        self._generation: int | None = None

    def reads(self, reader: str, topic: str) -> None:
        """Processor `reader` reads `topic` (before anything is delivered)."""
        bits = self.bits.setdefault(topic, {})
        bits.setdefault(reader, 1 << len(bits))

    def acked(
        self, reader: str, tp: TP, offsets: Sequence[int], generation: int | None
    ) -> list[int]:
        """The offsets every reader of `tp` has now acked, `reader`'s `offsets` included."""
        bits = self.bits.get(tp.topic, {})
        if len(bits) < 2:
            return list(offsets)
        if generation != self._generation:
            self._pending.clear()
            self._done.clear()
            self._generation = generation
        pending, bit, full = self._pending.setdefault(tp, {}), bits[reader], sum(bits.values())
        passed = self._done.get(tp, -1)
        for offset in offsets:
            if offset > passed:  # else acked again (a redelivery): done already
                pending[offset] = pending.get(offset, 0) | bit
        done = []
        for offset, mask in pending.items():
            if mask != full:
                break
            done.append(offset)
        for offset in done:
            del pending[offset]
        if done:
            self._done[tp] = done[-1]
        return done


class KafkaCommitter:
    """The commit step on Faust's producer and table."""

    def __init__(self, app: faust.App, table: faust.Table) -> None:
        self.app, self.table = app, table
        self.ack: Ack | None = None  # the delivering consumer's (engine.delivery)

    def stored(self, partition: int) -> Store:
        return PartitionState(self.table, partition)

    async def append(
        self,
        topic: str,
        partition: int,
        value: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> int:
        ack = await self.app.producer.send(topic, key, value, partition, None, headers)
        return cast(int, (await ack).offset)

    async def commit(self, step: CommitStep, owner: Callable[[], bool], flush: Flush) -> None:
        send = self.app.producer.send
        acks = [
            await send(d.topic, d.key, d.value, d.partition, None, d.headers) for d in step.sends
        ]
        for ack in acks:
            await ack
        await flush()
        if not owner():
            return
        await write_changelog(self.app, self.table, step.writes)
        if owner() and self.ack is not None:  # else the partitions' new owners redo them
            for tp, offsets in step.offsets.items():
                await self.ack(tp, offsets)


class _Acked:
    """An acked changelog record in the shape Store.apply_changelog_batch reads: the event's
    key/value and its message's tp/partition/offset/key/value (one object serves as both)."""

    __slots__ = ("key", "offset", "partition", "tp", "value")

    def __init__(self, tp: TP, offset: int, key: bytes, value: bytes | None) -> None:
        self.tp, self.partition, self.offset = tp, tp.partition, offset
        self.key, self.value = key, value

    @property
    def message(self) -> _Acked:
        return self


async def write_changelog(
    app: faust.App, table: faust.Table, writes: Mapping[int, Sequence[tuple[bytes, bytes | None]]]
) -> None:
    """Each partition's writes (in order) to changelog partition = source partition, then
    locally. Records go out as whole producer batches (one future per batch, not per record);
    a batch's records get consecutive offsets from the base offset its ack reports."""
    topic = table.changelog_topic.get_topic_name()
    producer: Any = app.producer._ensure_producer()  # type: ignore[attr-defined]  # aiokafka's
    sent: list[tuple[int, Sequence[tuple[bytes, bytes | None]], Any]] = []
    for partition, partition_writes in writes.items():
        pending = list(partition_writes)
        while pending:
            batch = producer.create_batch()
            taken = 0
            for key, value in pending:
                if batch.append(timestamp=None, key=key, value=value) is None:
                    break  # full: the rest goes in the next batch
                taken += 1
            if taken == 0:
                raise ValueError(f"a {table.name} record does not fit a producer batch")
            ack = await producer.send_batch(batch, topic, partition=partition)
            sent.append((partition, pending[:taken], ack))
            pending = pending[taken:]
    metas = await asyncio.gather(*(ack for *_, ack in sent))
    acked = [
        _Acked(TP(topic, partition), meta.offset + i, key, value)
        for (partition, records, _), meta in zip(sent, metas, strict=True)
        for i, (key, value) in enumerate(records)
    ]
    table.apply_changelog_batch(cast(list[EventT], acked))  # duck-typed: key, value, message
