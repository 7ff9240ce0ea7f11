"""The batched hot path shared by the windowed agents.

Per batch of raw events (many partitions): decode and validate each event; group by source
partition; advance each partition's window state (tables.window_state.apply_batch); emit dead
letters and late events; project to Redis; commit the changed keys to the changelog once per
batch. The agent acks the batch only after all of this, so offsets never pass unsaved state.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import faust
import orjson
from faust.types import EventT, Message

from agents.metrics import record_progress
from serving.projection import MetricLayout, RedisProjection
from streams.eventtime import event_time_ms, format_timestamp
from streams.validation import InvalidEvent, Limits
from tables.state_table import commit_outcomes, partition_reader
from tables.window_state import BatchOutcome, Observation, Rejected, apply_batch
from tables.windows import WindowSpec

Increments = tuple[tuple[str, tuple[int, ...]], ...]


@dataclass(frozen=True)
class EventKind:
    """How one input stream is read: its parser and what each valid event adds to which cells."""

    agent: str  # the agent's name, a verb
    table: str  # its state table's name
    parse: Callable[[bytes, int, Limits], Any]  # raises InvalidEvent
    increments: Callable[[Any], Increments]
    layout: MetricLayout  # where its numbers go in Redis


class WindowedAggregation:
    def __init__(
        self,
        app: faust.App,
        table: faust.Table,
        kind: EventKind,
        spec: WindowSpec,
        limits: Limits,
        projection: RedisProjection,
        dead_letter_topic: str,
        late_topic: str,
    ) -> None:
        self.app = app
        self.table = table
        self.kind = kind
        self.spec = spec
        self.limits = limits
        self.projection = projection
        self.dead_letter_topic = dead_letter_topic
        self.late_topic = late_topic

    def observe(self, message: Message) -> Observation | Rejected:
        log_time_ms = round(message.timestamp * 1000)
        try:
            event = self.kind.parse(message.value or b"", log_time_ms, self.limits)
        except InvalidEvent as exc:
            return Rejected(message.offset, exc.reason, exc.detail)
        return Observation(
            message.offset, event.event_id, event_time_ms(event), self.kind.increments(event)
        )

    async def apply(self, events: Sequence[EventT]) -> list[BatchOutcome]:
        items: dict[int, list[Observation | Rejected]] = defaultdict(list)
        messages: dict[tuple[int, int], Message] = {}
        for event in events:
            message = event.message
            items[message.partition].append(self.observe(message))
            messages[message.partition, message.offset] = message
        outcomes = [
            apply_batch(p, sorted(batch, key=_offset), self.spec, partition_reader(self.table, p))
            for p, batch in items.items()
        ]
        # Everything derived goes out before the commit: a crash in between only repeats it
        # (same ids, same absolute values); after the commit, redelivered events are skipped.
        await self._emit(outcomes, messages)
        self.projection.stage(outcomes)
        await self.projection.flush()
        await commit_outcomes(self.app, self.table, outcomes)
        record_progress(self.kind.layout.stream, outcomes)
        return outcomes

    async def _emit(
        self, outcomes: Sequence[BatchOutcome], messages: dict[tuple[int, int], Message]
    ) -> None:
        """Dead letters and late events, each with a deterministic id: topic/partition/offset."""
        sends = []
        for out in outcomes:
            for rejected in out.dead_letters:
                source = messages[out.partition, rejected.offset]
                headers = [
                    *_source_headers(source),
                    ("reason", rejected.reason.encode()),
                    ("detail", rejected.detail.encode()),
                ]
                sends.append(
                    await self.app.producer.send(
                        self.dead_letter_topic, source.key, source.value, None, None, headers
                    )
                )
            for late in out.late:
                source = messages[out.partition, late.offset]
                record = {
                    "id": _source_id(source),
                    "reason": "window closed: event later than allowed lateness",
                    "event_id": late.event_id,
                    "occurred_at": format_timestamp(late.time_ms),
                    "window_start": format_timestamp(late.window_start_ms),
                    "watermark": format_timestamp(late.watermark_ms),
                    "source": {"topic": source.topic, "partition": source.partition,
                               "offset": source.offset},
                }  # fmt: skip
                sends.append(
                    await self.app.producer.send(
                        self.late_topic, source.key, orjson.dumps(record), None, None,
                        _source_headers(source),
                    )
                )  # fmt: skip
        for ack in sends:
            await ack


def _offset(item: Observation | Rejected) -> int:
    return item.offset


def _source_id(message: Message) -> str:
    return f"{message.topic}/{message.partition}/{message.offset}"


def _source_headers(message: Message) -> list[tuple[str, bytes]]:
    return [
        ("id", _source_id(message).encode()),
        ("source_topic", message.topic.encode()),
        ("source_partition", str(message.partition).encode()),
        ("source_offset", str(message.offset).encode()),
    ]
