"""Whole fetched batches for the runners' input topics, below Faust's per-message path.

Faust's consumer turns every fetched record into a Message, an Event, a channel put, a stream
step and an ack: about 150 CPU-µs a record. For the topics registered here the fetched record
lists go straight to their handler instead, once per fetch, still inside Faust's consumer:
same consumer group, same assignment (so tables stay co-partitioned and recover as before),
same commit loop. The handler acks offsets itself, through the `Ack` it is given, once the
state they produced is saved (it may save several fetches at once), so committed offsets
never pass saved state.

A bounded run (a replay to a point, clickstream.replay) gives each input and time log partition
a stop offset: records from there on are never delivered nor acked, so the committed offset
ends exactly at the stop. (Records past it are still fetched, and dropped: a paused partition
would stay paused in Faust's consumer across rebalances, and a worker given it back with work
left below the stop would never read it.) A time log's end is its stop then (engine.time_log
waits for the ticks written before the end).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiokafka
import faust
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer
from faust.types import TP

from engine.commit import Ack


@dataclass(frozen=True)
class Fetch:
    """How the worker's consumer fetches: the trade between latency and CPU.

    `max_wait_ms`: how long the broker may hold a fetch that has less than `min_bytes`. Faust
    hard-codes 1500 ms, and the client sends one fetch per broker at a time: a fetch for
    partitions at their end (a quiet orders topic) then delays the next fetch of busy ones
    (measured: a stall of ~1 s after every other fetch, more than half of the worker's time).
    A larger `min_bytes` makes fewer, fuller fetches at low rates (less CPU per event), each
    waiting up to `max_wait_ms` more."""

    max_wait_ms: int = 100
    min_bytes: int = 1


BatchHandler = Callable[[Mapping[TP, list[Any]], Ack], Awaitable[object]]


def batch_delivering_consumer(
    readers: Sequence[tuple[BatchHandler, Sequence[str]]],
    stops: Mapping[TP, int] | None = None,
    fetch: Fetch = Fetch(),
) -> type[Consumer]:
    """A Faust consumer class that hands fetched records of the readers' topics to them, reader
    by reader in order (a topic several processors read goes to each); `stops`: partition ->
    the first offset not to deliver."""
    read = {topic for _, topics in readers for topic in topics}
    bounded: Mapping[TP, int] = stops or {}

    class FetchingThread(AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = fetch.max_wait_ms  # read by its Fetcher at start()
            consumer._fetch_min_bytes = fetch.min_bytes
            return consumer

    class BatchDeliveringConsumer(Consumer):
        def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
            return FetchingThread(self, loop=self.loop, beacon=self.beacon)

        async def _wait_next_records(self, timeout: float) -> tuple[Any, Any]:  # noqa: ASYNC109
            records, active = await super()._wait_next_records(timeout)
            if not records or not self.flow_active or self.should_stop:
                return records, active
            ours = {tp: batch for tp, batch in records.items() if tp.topic in read}
            if not ours:
                return records, active
            rest = {tp: batch for tp, batch in records.items() if tp.topic not in read}
            mine: dict[TP, list[Any]] = {}
            paused: dict[TP, list[Any]] = {}
            for tp, batch in ours.items():
                (mine if active is None or tp in active else paused)[tp] = batch
            assigned = self.assignment() if paused else set()
            for tp, batch in paused.items():
                # Fetched while it was being paused (recovery after a rebalance): read again
                # once it resumes. Dropped, the records would be lost: the next acked offset
                # after them would count them as a gap, and the commit would pass them.
                if tp in assigned:  # else revoked: its next owner reads it from the commit
                    await self.seek(tp, batch[0].offset)
            if bounded:
                mine = self._before_stops(mine)
            await self._deliver(mine)
            return rest, active

        def _before_stops(self, batches: dict[TP, list[Any]]) -> dict[TP, list[Any]]:
            kept: dict[TP, list[Any]] = {}
            for tp, batch in batches.items():
                stop = bounded.get(tp)
                if stop is not None and batch[-1].offset >= stop:
                    batch = [record for record in batch if record.offset < stop]
                if batch:
                    kept[tp] = batch
            return kept

        async def _commit(self, offsets: Mapping[TP, int]) -> bool:
            # After a crash the consumer thread may already be gone, and Faust's shutdown
            # (App._stop_consumer -> wait_empty -> commit) hands it a commit and waits for the
            # answer forever (mode's call_thread has no timeout): the worker never exits.
            # Skipping it is at-least-once: the uncommitted records are read again on restart.
            if self.crashed or self._thread.crashed:
                return False
            return await super()._commit(offsets)

        async def _deliver(self, batches: dict[TP, list[Any]]) -> None:
            for handler, topics in readers:  # one call per reader, with all its topics
                batch = {tp: records for tp, records in batches.items() if tp.topic in topics}
                if batch:
                    await handler(batch, self._ack_offsets)

        async def _ack_offsets(self, tp: TP, offsets: Sequence[int]) -> None:
            """What `ack()` does per message, once per run of offsets; gaps as
            `_drain_messages` does."""
            if not offsets:
                return
            read = self._read_offset[tp]
            first = offsets[0]
            if read is not None and first > read + 1:
                await self._add_gap(tp, read + 1, first - 1)
            committed = self._committed_offset[tp]
            acked_index = self._acked_index[tp]
            new = [
                offset
                for offset in offsets
                if (committed is None or offset >= committed) and offset not in acked_index
            ]
            acked_index.update(new)
            self._acked[tp].extend(new)
            self._n_acked += len(new)
            self._read_offset[tp] = offsets[-1]

    return BatchDeliveringConsumer


class FaustConsumerView:
    """What a runner reads of Faust's consumer (engine.runner.ConsumerView); `stops` as
    batch_delivering_consumer's."""

    def __init__(self, app: faust.App, stops: Mapping[TP, int] | None = None) -> None:
        self.app = app
        self.stops = stops or {}
        self._recovered_generation: int | None = None
        receiver: Any = self._on_recovered  # mode types receivers as positional-only
        app.on_rebalance_complete.connect(receiver)  # engine.internals

    async def _on_recovered(self, sender: Any, **kwargs: Any) -> None:
        self._recovered_generation = self.app.consumer_generation_id

    def recovered(self) -> bool:
        """The assignment's tables are recovered. Recovery signals before it checks that no
        newer rebalance began (a stale signal then finds the newer generation), so also: no
        rebalance in progress (app.rebalancing is cleared only by a recovery that finished)."""
        generation = self._recovered_generation
        return (
            generation == self.generation() and generation is not None and not self.app.rebalancing
        )

    def generation(self) -> int | None:
        return self.app.consumer_generation_id

    def assigned(self, topic: str) -> set[int]:
        return {tp.partition for tp in self.app.consumer.assignment() if tp.topic == topic}

    def highwater(self, topic: str, partition: int) -> int | None:
        return self.app.consumer.highwater(TP(topic, partition))

    async def ends(self, topic: str, partitions: set[int]) -> dict[int, int]:
        ends = await self.app.consumer.highwaters(*(TP(topic, p) for p in partitions))
        stops = self.stops
        return {
            tp.partition: min(offset, stops[tp]) if tp in stops else offset
            for tp, offset in ends.items()
        }
