"""Seeded traffic, pure (no I/O, no clock): visits arrive as a Poisson process and their events,
after faults, come out in send order (emit_at_ms, ties in creation order).

Visit rate = events_per_second / mean emissions per visit, measured on a pilot run of the same
seed. The output is a prefix of an endless stream: emissions before start_ms + duration_s, at
most `count` of them.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from statistics import fmean

from generator.config import GeneratorConfig
from generator.emission import Emission, Fault, Label, Stream
from generator.faults import FaultInjector
from generator.fraud import SCENARIOS
from generator.visits import plan_shopping_visit
from generator.world import PlannedEvent, Scenario, World

__all__ = [
    "Emission",
    "Fault",
    "GeneratorConfig",
    "Label",
    "Scenario",
    "Stream",
    "simulate",
]

PILOT_SHOPPING_VISITS = 400
PILOT_VISITS_PER_SCENARIO = 50
DIURNAL_SWING = 0.6  # visit rate x (1 + swing * cos(2 pi (hour - 20) / 24)), hour in UTC
_SCENARIO_NAMES: tuple[Scenario, ...] = tuple(SCENARIOS)


@dataclass(frozen=True, slots=True)
class TrafficShape:
    visits_per_ms: float
    fraud_visit_share: float  # chance that a visit is a fraud scenario


def simulate(config: GeneratorConfig) -> Iterator[Emission]:
    emissions = _endless_emissions(config)
    end_ms = config.end_ms
    if end_ms is not None:
        emissions = itertools.takewhile(lambda emission: emission.emit_at_ms < end_ms, emissions)
    if config.count is not None:
        emissions = itertools.islice(emissions, config.count)
    return emissions


def measure_traffic(config: GeneratorConfig, rng: random.Random) -> TrafficShape:
    """Size the visit rate and the fraud visit share from a pilot run.

    With s, f the mean events of a shopping and a fraud visit and r = fraud_rate, a visit is
    fraud with chance p = r s / (f (1 - r) + r s), so that fraud events are a share r of all.
    """
    world = World(rng, config.users, config.shifted_fraud)
    at_ms = config.start_ms
    shopping = fmean(len(plan_shopping_visit(world, at_ms)) for _ in range(PILOT_SHOPPING_VISITS))
    fraud = fmean(
        len(plan(world, at_ms))
        for plan in SCENARIOS.values()
        for _ in range(PILOT_VISITS_PER_SCENARIO)
    )
    rate = config.fraud_rate
    share = rate * shopping / (fraud * (1 - rate) + rate * shopping)
    events_per_visit = (1 - share) * shopping + share * fraud
    extra_per_event = 1 + config.duplicate_rate + config.malformed_rate
    return TrafficShape(
        config.events_per_second / 1000 / (events_per_visit * extra_per_event), share
    )


def diurnal_factor(at_ms: float) -> float:
    hour = at_ms / 3_600_000 % 24
    return 1 + DIURNAL_SWING * math.cos(2 * math.pi * (hour - 20) / 24)


def visit_starts(
    rng: random.Random, config: GeneratorConfig, visits_per_ms: float
) -> Iterator[int]:
    """Poisson arrivals; with `diurnal`, thinned from the peak rate by the time of day."""
    peak = visits_per_ms * (1 + DIURNAL_SWING if config.diurnal else 1)
    at_ms = float(config.start_ms)
    while True:
        at_ms += rng.expovariate(peak)
        if not config.diurnal or rng.random() * (1 + DIURNAL_SWING) < diurnal_factor(at_ms):
            yield int(at_ms)


def plan_visit(world: World, start_ms: int, fraud_share: float) -> list[PlannedEvent]:
    if world.rng.random() < fraud_share:
        return SCENARIOS[world.rng.choice(_SCENARIO_NAMES)](world, start_ms)
    return plan_shopping_visit(world, start_ms)


def _endless_emissions(config: GeneratorConfig) -> Iterator[Emission]:
    # Separate streams: changing a fault rate does not change the visits, and vice versa.
    seeds = random.Random(config.seed)
    traffic_rng, fault_rng, pilot_rng = (random.Random(seeds.getrandbits(64)) for _ in range(3))
    shape = measure_traffic(config, pilot_rng)
    world = World(traffic_rng, config.users, config.shifted_fraud)
    injector = FaultInjector(fault_rng, config)
    # Heap of (emit_at_ms, creation number, emission). Nothing a later visit sends can be due
    # before that visit starts, so everything due by then is final and can be yielded.
    pending: list[tuple[int, int, Emission]] = []
    numbering = itertools.count()
    for start_ms in visit_starts(traffic_rng, config, shape.visits_per_ms):
        while pending and pending[0][0] <= start_ms:
            yield heapq.heappop(pending)[2]
        for event in plan_visit(world, start_ms, shape.fraud_visit_share):
            for emission in injector.deliver(event):
                heapq.heappush(pending, (emission.emit_at_ms, next(numbering), emission))
