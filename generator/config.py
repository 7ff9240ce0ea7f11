"""What to simulate: traffic size and shape, and how often each fault and fraud scenario occurs.

Rates are shares in [0, 1]. Fault rates are per event (an event has at most one of late,
out_of_order, legacy; a duplicate or a malformed record is sent in addition). fraud_rate is the
share of events that belong to a fraud scenario.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GeneratorConfig:
    seed: int = 1  # same seed and config -> byte-identical output
    start_ms: int = 1_767_225_600_000  # epoch ms where simulated time starts (2026-01-01Z)
    events_per_second: float = 100.0  # mean emissions per simulated second, faults included
    count: int | None = None  # stop after this many emissions (None: no limit)
    duration_s: float | None = None  # stop at the first emission this far after start_ms
    users: int = 5_000  # returning shoppers; visits favour a loyal few
    duplicate_rate: float = 0.01  # events sent a second time, same bytes, up to 5 s later
    out_of_order_rate: float = 0.05  # events sent late by 1 ms..out_of_order_max_ms
    out_of_order_max_ms: int = 10_000  # keep below the grace period: these must still count
    late_rate: float = 0.005  # events sent late by late_by_ms: after their window closed
    late_by_ms: tuple[int, int] = (120_000, 600_000)  # > 60 s window + 30 s grace
    malformed_rate: float = 0.005  # extra broken records sent beside events (one per reason)
    max_event_bytes: int = 64 * 1024  # consumer's size limit; `oversized` payloads exceed it
    legacy_order_rate: float = 0.2  # orders sent in the v1 camelCase shape
    fraud_rate: float = 0.02  # events that belong to a fraud scenario
    shifted_fraud: bool = False  # every scenario stealthier (generator.fraud): a drift test
    diurnal: bool = False  # vary the visit rate over the UTC day (peak 20:00, low 08:00)

    def __post_init__(self) -> None:
        for name in (
            "duplicate_rate",
            "out_of_order_rate",
            "late_rate",
            "malformed_rate",
            "legacy_order_rate",
            "fraud_rate",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}={getattr(self, name)} must be between 0 and 1")
        if self.out_of_order_rate + self.late_rate > 1.0:
            raise ValueError("out_of_order_rate + late_rate must not exceed 1")
        if self.events_per_second <= 0:
            raise ValueError(f"events_per_second={self.events_per_second} must be more than 0")
        if self.count is not None and self.count < 0:
            raise ValueError(f"count={self.count} must be 0 or more")
        if self.duration_s is not None and self.duration_s < 0:
            raise ValueError(f"duration_s={self.duration_s} must be 0 or more")
        if self.users < 1:
            raise ValueError(f"users={self.users} must be at least 1")
        if self.out_of_order_max_ms < 1:
            raise ValueError(f"out_of_order_max_ms={self.out_of_order_max_ms} must be at least 1")
        low, high = self.late_by_ms
        if not 0 < low <= high:
            raise ValueError(f"late_by_ms={self.late_by_ms} must be (min, max) with 0 < min <= max")

    @property
    def end_ms(self) -> int | None:
        """Emissions are sent strictly before this time; None when duration_s is not set."""
        if self.duration_s is None:
            return None
        return self.start_ms + round(self.duration_s * 1000)
