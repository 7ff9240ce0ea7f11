"""What the network and old producers do to an event on its way: one planned event -> 1 to 3
emissions.

Per event, at most one of: legacy (orders only, v1 shape, sent on time), late (sent late_by_ms
after it occurred), out_of_order (sent 1 ms..out_of_order_max_ms after). Independently, a
duplicate (same bytes and key, 1 ms..5 s after the first copy) and a malformed neighbour (a
broken copy with its own event_id, sent when the event occurred) may follow.
"""

from __future__ import annotations

from random import Random
from typing import Any

from generator.config import GeneratorConfig
from generator.emission import Emission, Fault, Label, Stream
from generator.ids import random_uuid
from generator.malformed import BREAKERS, MALFORMED_REASONS
from generator.world import PlannedEvent, Scenario
from streams.codec import click_body, dumps, legacy_order_body, order_body
from streams.eventtime import event_time_ms
from streams.records import ClickEvent

DUPLICATE_MAX_DELAY_MS = 5_000


def make_label(
    event_id: str | None,
    fault: Fault | None,
    scenario: Scenario | None,
    occurred_at_ms: int | None,
    delay_ms: int,
    expected_reason: str | None = None,
) -> Label:
    return Label(
        event_id=event_id,
        fault=fault,
        expected_reason=expected_reason,
        scenario=scenario,
        occurred_at_ms=occurred_at_ms,
        delay_ms=delay_ms,
    )


class FaultInjector:
    def __init__(self, rng: Random, config: GeneratorConfig) -> None:
        self._rng = rng
        self._config = config

    def deliver(self, event: PlannedEvent) -> list[Emission]:
        rng, config, record = self._rng, self._config, event.record
        stream: Stream
        fault: Fault | None = None
        if isinstance(record, ClickEvent):
            stream, body = "clicks", click_body(record)
            value = dumps(body)
        else:
            stream, body = "orders", order_body(record)
            if rng.random() < config.legacy_order_rate:
                value, fault = dumps(legacy_order_body(record)), "legacy"
            else:
                value = dumps(body)
        delay_ms = 0
        if fault is None:
            fault, delay_ms = self._timing_fault()
        key, occurred_at_ms = record.user_id.encode(), event_time_ms(record)
        first = Emission(
            stream,
            key,
            value,
            occurred_at_ms + delay_ms,
            make_label(record.event_id, fault, event.scenario, occurred_at_ms, delay_ms),
        )
        emissions = [first]
        if rng.random() < config.duplicate_rate:
            again_ms = rng.randint(1, DUPLICATE_MAX_DELAY_MS)
            label = make_label(
                record.event_id, "duplicate", event.scenario, occurred_at_ms, delay_ms + again_ms
            )
            emissions.append(Emission(stream, key, value, first.emit_at_ms + again_ms, label))
        if rng.random() < config.malformed_rate:
            emissions.append(self._malformed_neighbour(stream, key, body, occurred_at_ms))
        return emissions

    def _timing_fault(self) -> tuple[Fault | None, int]:
        draw, config = self._rng.random(), self._config
        if draw < config.late_rate:
            return "late", self._rng.randint(*config.late_by_ms)
        if draw < config.late_rate + config.out_of_order_rate:
            return "out_of_order", self._rng.randint(1, config.out_of_order_max_ms)
        return None, 0

    def _malformed_neighbour(
        self, stream: Stream, key: bytes, body: dict[str, Any], at_ms: int
    ) -> Emission:
        reason = self._rng.choice(MALFORMED_REASONS)
        fresh = {**body, "event_id": random_uuid(self._rng)}
        broken = BREAKERS[reason](fresh, self._rng, self._config.max_event_bytes)
        label = make_label(broken.event_id, "malformed", None, None, 0, expected_reason=reason)
        return Emission(stream, key, broken.value, at_ms, label)
