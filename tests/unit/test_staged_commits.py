"""The worker stages several batches and commits them at once; a crash can cut that commit
short anywhere (its derived records went out, a prefix of its writes in the keyspace's order
landed, its offsets did not). Redelivering from the committed offsets must then emit exactly
what an uninterrupted run emits: the same window results, session summaries, attributions,
late events and dead letters, nothing missing and nothing different under the same id, and
leave the same counters and the same numbers in Redis.

The clicks processor over two partitions, through the real runner's staging, commits and
redelivery (engine.testing; tests/unit/partition_rig.py). Duplicates are sent while their
ids are remembered; ids expire (the closing tick passes the dedup horizon) only in traffic
without duplicates: test_windowed_dedup_horizon.py shows why."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from tables.window_state import KEYSPACE
from tables.windows import WindowSpec
from tests.unit.partition_rig import (
    HOPPING,
    MIN,
    ClicksRig,
    Emitted,
    Input,
    chaotic,
    steady,
    traffic,
)

FORGETTING = replace(HOPPING, dedup_horizon_ms=2 * MIN)  # ids forgotten while traffic flows
FLAVOURS = {  # name -> (spec, duplicates in the traffic)
    "duplicates": (HOPPING, True),
    "expiring ids": (FORGETTING, True),  # duplicates caught, and ids forgotten past the horizon
}


def kinds(emitted: Emitted) -> dict[str, int]:
    found: dict[str, int] = {}
    for rid in emitted.results:
        stream, kind = rid.split("/")[:2]
        found[f"{stream}/{kind}"] = found.get(f"{stream}/{kind}", 0) + 1
    return found


@pytest.mark.parametrize(
    ("flavour", "seed"), [("duplicates", 0), ("duplicates", 1), ("expiring ids", 2)]
)
async def test_commits_cut_short_anywhere_emit_exactly_what_an_uninterrupted_run_does(
    flavour, seed
):
    spec, duplicates = FLAVOURS[flavour]
    rng = random.Random(seed)
    inputs = traffic(rng, clicks=600, duplicates=duplicates)
    expected = await steady(inputs, spec=spec, partitions=2)
    found = kinds(expected)
    assert found["clicks/tumbling"] > 100 and found["clicks/hopping"] > 100
    assert found["attribution/tumbling"] > 20 and len(expected.sessions) > 40
    assert expected.late_events and expected.dead_letters
    if duplicates:
        assert all(counters["duplicates"] > 0 for counters in expected.counters.values())
    for _ in range(3):
        assert await chaotic(inputs, rng, spec=spec, partitions=2) == expected


async def cut_after(
    inputs: list[Input], spec: WindowSpec, committed: int, land: int, seed: int
) -> ClicksRig:
    """The first `committed` inputs delivered and committed; the rest delivered in batches
    staged for one commit, which a crash cuts short after `land` state writes; then everything
    redelivered from the committed offsets, in random fetches, and committed."""
    rng = random.Random(seed)
    rig = ClicksRig(spec=spec, partitions=2)
    rig.produce(inputs[:committed])
    await rig.driver.pump(batch=5)  # ids in many records, the older ones past the horizon
    await rig.commit()
    rig.produce(inputs[committed:])
    while await rig.driver.pump(batch=4, rng=rng):
        pass
    await rig.crash(land=land)
    await rig.driver.pump(batch=20, rng=rng)
    await rig.commit()
    assert rig.caught_up()
    return rig


@pytest.mark.parametrize(
    ("flavour", "seed"), [("duplicates", 0), ("duplicates", 1), ("expiring ids", 2)]
)
async def test_a_commit_cut_short_after_each_of_its_writes_then_redelivered_emits_the_same(
    flavour, seed
):
    spec, duplicates = FLAVOURS[flavour]
    rng = random.Random(100 + seed)
    inputs = traffic(rng, users=4, clicks=20, span_ms=8 * MIN, duplicates=duplicates)
    expected = await steady(inputs, spec=spec, partitions=2)
    committed = len(inputs) - 12  # the cut commit holds the last inputs and the closing ones
    probe = await cut_after(inputs, spec, committed, 10**6, seed)  # every write, no offsets
    first, cut = probe.driver.broker.commits[:2]
    writes = [(key, value) for partition in cut.step.writes.values() for key, value in partition]
    assert first.acked and cut.landed == len(writes) and not cut.acked
    assert set(cut.step.writes) == {0, 1} and cut.step.sends
    assert {key[:1] for key, _ in writes} == set(KEYSPACE.prefixes)  # every kind of state
    assert any(value is None for _, value in writes)  # deletes too
    if spec is FORGETTING:
        assert any(key[:1] == b"S" and value is None for key, value in writes)  # ids expire
    for land in range(len(writes) + 1):
        rig = await cut_after(inputs, spec, committed, land, seed)
        assert rig.driver.broker.commits[1].landed == land
        assert rig.emitted() == expected, f"cut after {land} of {len(writes)} writes"
