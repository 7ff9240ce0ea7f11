"""Dead letters re-injected (streams.retries): each request copied once into the time log after
the source offset applied, and judged there as the original event at its original record
timestamp: counted once when it became valid (a new upcaster), late when its window closed
meanwhile, a duplicate when sent twice, a dead letter again (naming its original) when still
invalid. Exact through commits cut short anywhere, and a replay that follows the time log
gets the same verdicts in the same places.

The clicks processor through the real runner (engine.testing; tests/unit/partition_rig.py).
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from engine.testing import TestDriver
from serving import keys
from streams import upcast, validation
from streams.records import CLICK_SCHEMA
from streams.retries import read_copy
from tests.unit.partition_rig import (
    MIN,
    Click,
    ClicksRig,
    Emitted,
    Facts,
    Input,
    Malformed,
    Reinject,
    Tick,
    chaos,
    click,
    tick,
    traffic,
)

VIEWS = f"{keys.PAGE_VIEWS}|/p/1"
HOUR = 60 * MIN  # the traffic's span: its closing ticks and facts come long after


@pytest.fixture
def click_v2(monkeypatch):
    """A release that knows click v2 (current), and upcasts v1 to it."""

    def ship() -> None:
        monkeypatch.setattr(validation, "CLICK_VERSION", 2)
        monkeypatch.setitem(upcast.UPCASTERS, (CLICK_SCHEMA, 1), lambda b: {**b, "version": 2})

    return ship


def copies(driver: TestDriver, time_log: str, partition: int = 0) -> list:
    return [c for r in driver.broker.log(time_log, partition) if (c := read_copy(r.headers))]


async def test_a_dead_letter_of_an_unknown_version_counts_once_after_the_upcaster_ships(
    click_v2,
):
    rig = ClicksRig()
    step = await rig.apply([click(1_000, event_id="a"), click(2_000, event_id="b", version=2)])
    assert step.dead_letters == ["unknown_schema_version"]
    click_v2()
    step = await rig.apply([Reinject(1)])
    assert (step.progress.accepted, step.progress.retried, step.progress.dead_letters) == (2, 1, 1)
    step = await rig.apply([Reinject(1)])  # re-injected twice
    assert (step.progress.accepted, step.progress.duplicates, step.progress.retried) == (2, 1, 2)
    step = await rig.apply([tick(5 * MIN)])
    assert step.tumbling[0][VIEWS] == [2]
    clicks, time_log = rig.topics.clicks.name, rig.topics.clicks_ticks.name
    assert len(rig.driver.broker.log(clicks, 0)) == 2, "nothing written to the input"
    assert [(c.request.source_id, c.after) for c in copies(rig.driver, time_log)] == [
        ("clicks/0/1", 1),
        ("clicks/0/1", 1),
    ]
    assert rig.caught_up()


async def test_a_reinjected_event_whose_window_closed_meanwhile_is_late_never_merged(click_v2):
    rig = ClicksRig()
    await rig.apply([click(2_000, event_id="b", version=2), click(3_000, event_id="c")])
    step = await rig.apply([tick(5 * MIN)])
    assert step.tumbling[0][VIEWS] == [1]
    click_v2()
    step = await rig.apply([Reinject(0)])
    assert step.late == ["b"] and not step.tumbling
    assert (step.progress.accepted, step.progress.late) == (1, 1)


async def test_a_reinjection_still_invalid_is_a_dead_letter_again_naming_its_original():
    rig = ClicksRig()
    await rig.apply([Malformed()])
    step = await rig.apply([Reinject(0, reason="malformed_json")])
    assert step.dead_letters == ["malformed_json"]
    letter = rig.driver.outputs("dead_letters")[-1]
    headers = dict(letter.headers)
    assert headers["retry_of"] == b"clicks/0/0" and headers["id"] == b"app-clicks-ticks/0/0"
    assert letter.value == Malformed().value
    assert (step.progress.dead_letters, step.progress.retried) == (2, 1)


async def test_a_request_is_copied_once_though_the_worker_dies_before_committing_it(click_v2):
    click_v2()
    rig = ClicksRig()
    await rig.apply([click(1_000, event_id="a", version=1)])
    rig.produce([Reinject(0)])
    await rig.driver.pump()  # copied and applied, not committed
    await rig.crash()
    await rig.driver.settle()
    time_log = rig.topics.clicks_ticks.name
    assert len(copies(rig.driver, time_log)) == 1, "the copy in the time log covers the request"
    progress = rig.progress()
    assert (progress.retried, progress.duplicates, progress.accepted) == (1, 1, 1)
    assert rig.caught_up()


class Follower:
    """A replay of a run's logs in a fresh worker: the inputs and the time log (with its copies)
    as the run left them, no requests (a version following the run's clock)."""

    def __init__(self, run: ClicksRig) -> None:
        self.run, self.rig = run, ClicksRig(spec=run.clicks.config.spec, partitions=run.partitions)
        topics = run.topics
        self.names = (topics.clicks.name, topics.clicks_ticks.name, topics.order_facts.name)
        self.copied: dict[tuple[str, int], int] = {}

    async def follow(self) -> None:
        """Read what the run's logs hold by now."""
        for name in self.names:
            for p in range(self.run.partitions):
                log = self.run.driver.broker.log(name, p)
                for r in log[self.copied.get((name, p), 0) :]:
                    self.rig.driver.produce(name, r.value, p, r.key, r.timestamp, r.headers)
                self.copied[name, p] = len(log)
        await self.rig.driver.settle()


def with_unknown_versions(
    rng: random.Random, partitions: int
) -> tuple[list[Input], list[Input], list[Reinject]]:
    """Traffic with about one click in eight sent as v2 (one in two of the last two minutes'):
    (the traffic without its closing ticks and facts, those, and a request to re-inject each
    v2 click)."""
    body, closing, requests = [], [], []
    offsets = dict.fromkeys(range(partitions), 0)  # of the clicks topic, as produced
    for item in traffic(rng, partitions, clicks=300):
        time_ms = item.time_ms if isinstance(item, Tick) else getattr(item, "watermark_ms", 0)
        if isinstance(item, Tick | Facts) and time_ms > HOUR:
            closing.append(item)
            continue
        newest = isinstance(item, Click) and item.time_ms > HOUR - 2 * MIN  # panes still open
        if isinstance(item, Click) and rng.random() < (1 / 2 if newest else 1 / 8):
            item = replace(item, version=2)
            requests.append(Reinject(offsets[item.partition], item.partition))
        if isinstance(item, Click | Malformed):
            offsets[item.partition] += 1
        body.append(item)
    return body, closing, requests


def emitted_counts(emitted: Emitted) -> dict[str, int]:
    return {
        name: sum(c[name] for c in emitted.counters.values())
        for name in ("retried", "accepted", "duplicates", "late", "dead_letters")
    }


@pytest.mark.parametrize("seed", range(3))
async def test_crashes_anywhere_then_a_replay_following_the_time_log_gets_the_same(seed, click_v2):
    """v2 clicks are dead letters, and some re-injected at once are rejected again; the
    upcaster ships; every v2 click is re-injected (some twice): counted once while its window
    is open, else late. The run crashes inside commits at random; a follower replays its logs
    after each phase and emits exactly the same."""
    rng = random.Random(seed)
    run = ClicksRig(partitions=2)
    follower = Follower(run)
    body, closing, requests = with_unknown_versions(rng, 2)
    early = rng.sample(requests, len(requests) // 3)
    run.produce([*body, *early])
    await chaos(run, rng)
    await follower.follow()
    assert follower.rig.emitted() == run.emitted()
    before = emitted_counts(run.emitted())
    assert before["retried"] == len(early) and before["dead_letters"] >= len(requests) + len(early)

    click_v2()
    twice = rng.sample(requests, len(requests) // 4)
    run.produce([*requests, *twice])
    await chaos(run, rng)
    run.produce(closing)  # after the copies: else they would be late, all of them
    await chaos(run, rng)
    await follower.follow()
    assert follower.rig.emitted() == run.emitted()
    after = emitted_counts(run.emitted())
    assert after["retried"] == len(early) + len(requests) + len(twice)
    taken = after["accepted"] - before["accepted"]
    assert taken > 0 and after["late"] > before["late"]
    late, duplicates = after["late"] - before["late"], after["duplicates"] - before["duplicates"]
    print(f"re-injected: {taken} counted, {late} late, {duplicates} duplicates")
    assert taken + late + duplicates == len(requests) + len(twice), "each has one verdict"
    assert taken <= len(requests), "re-injected twice, counted once"
