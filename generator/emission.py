"""One record as the generator sends it (exact bytes, key, send time) with its ground truth."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypedDict

from generator.world import Scenario

Stream = Literal["clicks", "orders"]
Fault = Literal["duplicate", "out_of_order", "late", "malformed", "legacy"]


class Label(TypedDict):
    """Ground truth for one emission; the consumer never sees it."""

    event_id: str | None  # None when a malformed payload has no readable event_id
    fault: Fault | None
    expected_reason: str | None  # malformed only: the InvalidEvent.reason validation gives
    scenario: Scenario | None  # the fraud scenario this event belongs to
    occurred_at_ms: int | None  # the event's own time; None when malformed
    delay_ms: int  # emit_at_ms minus when it was due (occurred_at, or injection time)


@dataclass(frozen=True, slots=True)
class Emission:
    stream: Stream
    key: bytes  # user_id, UTF-8
    value: bytes  # the exact payload
    emit_at_ms: int  # when it is sent; also the Kafka record timestamp
    label: Label
