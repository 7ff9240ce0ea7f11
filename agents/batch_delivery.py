"""Whole fetched batches for our source topics, below Faust's per-message Event/Stream path.

Faust's consumer turns every fetched record into a Message, an Event, a channel put, a stream
step and an ack: about 150 CPU-µs a record. For the topics registered here the fetched record
lists go straight to their handler instead, once per fetch, still inside Faust's consumer:
same consumer group, same assignment (so tables stay co-partitioned and recover as before),
same commit loop. After a handler returns, the batch's offsets are acked in Faust's own
bookkeeping, so committed offsets never pass unsaved state. If a rebalance happened meanwhile,
nothing is acked: the partition's next owner reprocesses, and the per-key offsets in the state
make that exact.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from faust.transport.drivers.aiokafka import Consumer
from faust.types import TP


class SourceRecord(Protocol):
    """What a handler reads of a fetched record (aiokafka's ConsumerRecord has it)."""

    topic: str
    partition: int
    offset: int
    timestamp: int  # epoch ms, the record's own timestamp
    key: bytes | None
    value: bytes | None
    headers: Any


BatchHandler = Callable[[Mapping[TP, list[Any]]], Awaitable[object]]


def batch_delivering_consumer(handlers: Mapping[str, BatchHandler]) -> type[Consumer]:
    """A Faust consumer class that hands fetched records of `handlers`' topics to them."""

    class BatchDeliveringConsumer(Consumer):
        async def _wait_next_records(self, timeout: float) -> tuple[Any, Any]:  # noqa: ASYNC109
            records, active = await super()._wait_next_records(timeout)
            if not records or not self.flow_active or self.should_stop:
                return records, active
            ours = {tp: batch for tp, batch in records.items() if tp.topic in handlers}
            if not ours:
                return records, active
            rest = {tp: batch for tp, batch in records.items() if tp.topic not in handlers}
            mine = {tp: batch for tp, batch in ours.items() if active is None or tp in active}
            await self._deliver(mine)
            return rest, active

        async def _deliver(self, batches: dict[TP, list[Any]]) -> None:
            generation = self.app.consumer_generation_id
            for topic, handler in handlers.items():
                batch = {tp: records for tp, records in batches.items() if tp.topic == topic}
                if batch:
                    await handler(batch)
            if self.app.consumer_generation_id != generation:
                return  # rebalanced while we worked: leave the offsets to the next owner
            for tp, records in batches.items():
                await self._ack_all(tp, records)

        async def _ack_all(self, tp: TP, records: list[Any]) -> None:
            """What `ack()` does per message, once per batch; gaps as `_drain_messages` does."""
            read = self._read_offset[tp]
            first = records[0].offset
            if read is not None and first > read + 1:
                await self._add_gap(tp, read + 1, first - 1)
            committed = self._committed_offset[tp]
            acked_index = self._acked_index[tp]
            new = [
                r.offset
                for r in records
                if (committed is None or r.offset >= committed) and r.offset not in acked_index
            ]
            acked_index.update(new)
            self._acked[tp].extend(new)
            self._n_acked += len(new)
            self._read_offset[tp] = records[-1].offset

    return BatchDeliveringConsumer
