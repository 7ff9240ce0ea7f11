"""The Faust table behind a windowed aggregation, and how staged writes are committed to it.

Batches stage their writes in memory (StagedState reads through them); a commit sends each
staged key once. Commit order (the durability rule): send every write to the changelog, wait
for the broker's acks, then apply exactly those acked records to the local store through
`Table.apply_changelog_batch`, the path recovery itself takes. So the local store (RocksDB or
memory) never holds a value the changelog lacks, and a restarted worker recovers what it had.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from typing import Any, cast

import faust
from faust.tables.table import Table
from faust.types import TP, EventT


def declare_state_table(app: faust.App, name: str, help: str, partitions: int) -> Table:
    """A table of raw bytes -> raw bytes (keys and values are encoded by tables.window_state)."""
    table = cast(
        Table, app.Table(name, key_type=bytes, value_type=bytes, partitions=partitions, help=help)
    )
    # Faust derives serializers only from model types (else json); set them before the
    # changelog topic is first built, so changelog records and recovery carry our bytes as-is.
    table.key_serializer = table.value_serializer = "raw"
    return table


class PartitionState:
    """One partition's stored state, whatever the current event is (keys are raw bytes);
    a tables.window_state.PartitionStore."""

    def __init__(self, table: Table, partition: int) -> None:
        store: Any = table.data
        if hasattr(store, "_db_for_partition"):  # RocksDB: one database per partition
            self._db: Any = store._db_for_partition(partition)
            self._sorted = True
        else:  # memory: every partition in one dict, unsorted
            self._db = store.data
            self._sorted = False

    def get(self, key: bytes) -> bytes | None:
        return cast(bytes | None, self._db.get(key))

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Stored (key, value) pairs whose key starts with `prefix`."""
        if not self._sorted:  # sorted here too, as readers may stop early
            yield from sorted((k, v) for k, v in self._db.items() if k.startswith(prefix))
            return
        for key, value in self._db.items(from_key=prefix):  # sorted: seek to the prefix
            if not key.startswith(prefix):
                return
            yield key, value


class StagedState:
    """A partition's stored state overlaid with writes staged since the last commit
    (None = deleted); a tables.window_state.PartitionStore."""

    def __init__(self, stored: PartitionState, staged: Mapping[bytes, bytes | None]) -> None:
        self.stored = stored
        self.staged = staged

    def get(self, key: bytes) -> bytes | None:
        if key in self.staged:
            return self.staged[key]
        return self.stored.get(key)

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        merged: dict[bytes, bytes | None] = dict(self.stored.items(prefix))
        merged.update((k, v) for k, v in self.staged.items() if k.startswith(prefix))
        return ((k, v) for k, v in sorted(merged.items()) if v is not None)


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


async def commit_writes(
    app: faust.App, table: faust.Table, staged: Mapping[int, Mapping[bytes, bytes | None]]
) -> None:
    """Write each partition's staged keys (in order) to changelog partition = source partition,
    then locally.

    Records go out as whole producer batches (one future per batch, not per record); a batch's
    records get consecutive offsets from the base offset its ack reports.
    """
    topic = table.changelog_topic.get_topic_name()
    producer = app.producer._ensure_producer()  # type: ignore[attr-defined]  # aiokafka's own
    sent: list[tuple[int, list[tuple[bytes, bytes | None]], Any]] = []
    for partition, partition_writes in staged.items():
        writes = list(partition_writes.items())
        while writes:
            batch = producer.create_batch()
            taken = 0
            for key, value in writes:
                if batch.append(timestamp=None, key=key, value=value) is None:
                    break  # full: the rest goes in the next batch
                taken += 1
            if taken == 0:
                raise ValueError(f"a {table.name} record does not fit a producer batch")
            ack = await producer.send_batch(batch, topic, partition=partition)
            sent.append((partition, writes[:taken], ack))
            writes = writes[taken:]
    metas = await asyncio.gather(*(ack for *_, ack in sent))
    acked = [
        _Acked(TP(topic, partition), meta.offset + i, key, value)
        for (partition, records, _), meta in zip(sent, metas, strict=True)
        for i, (key, value) in enumerate(records)
    ]
    table.apply_changelog_batch(cast(list[EventT], acked))  # duck-typed: key, value, message
