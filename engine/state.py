"""The Faust table behind a processor, and its state as the processor reads it.

Batches stage their writes in memory (StagedState reads through them); engine.commit writes
each staged key once per commit.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, cast

import faust
from faust.tables.table import Table

from engine.processor import Store


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
    an engine.processor.Store."""

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
    (None = deleted); an engine.processor.Store."""

    def __init__(self, stored: Store, staged: Mapping[bytes, bytes | None]) -> None:
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
