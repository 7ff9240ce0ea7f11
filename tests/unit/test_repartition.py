"""Repartitioning (engine.repartition) through the real runner, on the in-memory broker: the
card counts topology (tests.card_counts: orders re-keyed by card, each order's running count on
its card) against its oracle, under random interleavings, crashes and commits cut short."""

from __future__ import annotations

import random

import orjson
import pytest

from engine.repartition import partition_of
from engine.testing import TestDriver
from streams.repartition import read_entry
from streams.ticks import tick_value
from tests.card_counts import CountByCard, counted, expected_counts, forwarder

PARTITIONS = 3
APP, ORDERS = "app", "orders"
TICKS, TOPIC = f"{APP}-{ORDERS}-ticks", f"{APP}-by_card-repartition"
T0 = 1_767_225_600_000


def topology() -> tuple[TestDriver, CountByCard]:
    reader = CountByCard(APP, [ORDERS], PARTITIONS)
    forward = forwarder(APP, ORDERS, PARTITIONS)
    return TestDriver([forward, reader], partitions=PARTITIONS, commit_s=60.0), reader


def produce_orders(driver: TestDriver, rng: random.Random, n: int, topic: str = ORDERS) -> None:
    """n orders over the source partitions, each partition's times mostly rising, some late."""
    clocks = [T0] * PARTITIONS
    for i in range(n):
        p = rng.randrange(PARTITIONS)
        clocks[p] += rng.randrange(0, 40_000)
        t = clocks[p] - (rng.randrange(100_000) if rng.random() < 0.1 else 0)
        card = f"card-{rng.randrange(7)}"
        value = orjson.dumps({"id": f"o{i}", "card": card, "t": max(t, 0)})
        driver.produce(topic, value, p, key=f"user-{p}".encode(), timestamp_ms=clocks[p])


def tick_all(driver: TestDriver, at_ms: int, topic: str = ORDERS) -> None:
    """A tick past every order on each source partition, after its last record."""
    for p in range(PARTITIONS):
        after = len(driver.broker.log(topic, p)) - 1
        driver.produce(f"{APP}-{topic}-ticks", tick_value(at_ms, after, APP), p, timestamp_ms=at_ms)


def expected(driver: TestDriver) -> dict[str, int]:
    log = driver.broker.log
    orders = [log(ORDERS, p) for p in range(PARTITIONS)]
    return expected_counts({ORDERS: (orders, [log(TICKS, p) for p in range(PARTITIONS)])})


def output(driver: TestDriver, reader: CountByCard) -> dict[str, int]:
    return counted(driver.outputs("counts", processor=reader))


O1, O2 = f"{ORDERS}/0/0/0", f"{ORDERS}/1/0/0"  # entry ids: the first order of partitions 0, 1


async def run(seed: int, crashes: bool) -> tuple[TestDriver, CountByCard]:
    rng = random.Random(seed)
    reader = CountByCard(APP, [ORDERS], PARTITIONS)
    forward = forwarder(APP, ORDERS, PARTITIONS)
    driver = TestDriver([forward, reader], partitions=PARTITIONS, commit_s=3.0)
    produce_orders(driver, rng, 120)
    for _ in range(40):
        await driver.pump(rng.randrange(1, 20), rng=rng)
        driver.advance(rng.random() * 2)
        await driver.commit_if_due()
        if crashes and rng.random() < 0.15:
            await driver.crash(land=rng.randrange(0, 12))
    tick_all(driver, T0 + 10**9)
    await driver.settle(rng=rng)
    return driver, reader


@pytest.mark.parametrize("seed", range(8))
async def test_every_entry_counts_once_in_the_release_order_whatever_the_interleaving(seed):
    driver, reader = await run(seed, crashes=False)
    assert output(driver, reader) == expected(driver)


@pytest.mark.parametrize("seed", range(12))
async def test_forwards_and_reads_cut_short_by_crashes_still_count_each_entry_once(seed):
    driver, reader = await run(seed, crashes=True)
    assert driver.restarts > 0
    assert output(driver, reader) == expected(driver)


async def test_a_batch_forwarded_twice_counts_once():
    driver, reader = topology()
    for i in range(5):
        value = orjson.dumps({"id": f"o{i}", "card": "c", "t": T0 + i * 1000})
        driver.produce(ORDERS, value, 0, timestamp_ms=T0 + i * 1000)
    await driver.pump()
    await driver.crash(land=0)  # the forward's entries and marks landed, its position did not
    tick_all(driver, T0 + 60_000)
    await driver.settle()
    entries = [r for r in driver.broker.records(TOPIC) if read_entry(r.headers)]
    assert len(entries) == 10  # every entry twice, under the same ids
    assert len({read_entry(r.headers).id for r in entries}) == 5
    assert output(driver, reader) == {f"{ORDERS}/0/{i}/0": i + 1 for i in range(5)}


async def test_nothing_is_released_until_every_source_partition_has_passed_it():
    driver, reader = topology()
    driver.produce(ORDERS, orjson.dumps({"id": "o1", "card": "c", "t": T0}), 0, timestamp_ms=T0)
    driver.produce(ORDERS, orjson.dumps({"id": "o2", "card": "c", "t": T0 + 5}), 1)
    await driver.settle()
    assert output(driver, reader) == {}  # partition 2 has sent no mark
    driver.produce(TICKS, tick_value(T0 + 5, -1, "app"), 2, timestamp_ms=T0 + 5)
    await driver.settle()
    assert output(driver, reader) == {}  # every partition has marked, but 0 only T0 (o1's)
    driver.produce(TICKS, tick_value(T0 + 6, 0, "app"), 0, timestamp_ms=T0 + 6)
    await driver.settle()
    assert output(driver, reader) == {O1: 1}  # released below T0 + 5; o2 is at T0 + 5
    driver.produce(TICKS, tick_value(T0 + 6, 0, "app"), 1, timestamp_ms=T0 + 6)
    driver.produce(TICKS, tick_value(T0 + 6, -1, "app"), 2, timestamp_ms=T0 + 6)
    await driver.settle()
    assert output(driver, reader) == {O1: 1, O2: 2}


async def test_entries_go_to_the_partition_of_their_key_and_marks_to_every_partition():
    driver = TestDriver(forwarder(APP, ORDERS, PARTITIONS), partitions=PARTITIONS, commit_s=60)
    for i, card in enumerate(["a", "b", "c", "d"]):
        value = orjson.dumps({"id": f"o{i}", "card": card, "t": T0 + i})
        driver.produce(ORDERS, value, i % PARTITIONS, timestamp_ms=T0 + i)
    await driver.settle()
    records = driver.outputs("repartition")
    for record in records:
        if read_entry(record.headers):
            assert record.partition == partition_of(record.key, PARTITIONS)
    marks = [r for r in records if read_entry(r.headers) is None]
    assert sorted(r.partition for r in marks) == sorted(list(range(PARTITIONS)) * PARTITIONS)


async def test_a_record_the_rekeying_raises_on_is_a_dead_letter_and_the_rest_go_on():
    driver = TestDriver(forwarder(APP, ORDERS, PARTITIONS), partitions=PARTITIONS, commit_s=60)
    driver.produce(ORDERS, orjson.dumps({"id": "o1", "card": "c", "t": T0}), 0)
    driver.produce(ORDERS, b"boom", 0)
    driver.produce(ORDERS, b"not json", 0)  # not taken, no letter (not the forwarder's to judge)
    driver.produce(ORDERS, orjson.dumps({"id": "o2", "card": "c", "t": T0 + 1}), 0)
    await driver.settle()
    letters = driver.outputs("dead_letters")
    assert [(r.value, dict(r.headers)["reason"]) for r in letters] == [
        (b"boom", b"processing_error")
    ]
    entries = [r for r in driver.outputs("repartition") if read_entry(r.headers)]
    assert [read_entry(r.headers).offset for r in entries] == [0, 3]
    assert driver.committed(ORDERS, 0) == 4


async def test_a_record_in_the_repartition_topic_that_the_engine_did_not_write_is_a_dead_letter():
    driver = TestDriver(
        CountByCard(APP, [ORDERS], PARTITIONS), partitions=PARTITIONS, commit_s=60.0
    )
    driver.produce(TOPIC, b"stray", 1, key=b"k")
    await driver.settle()
    assert [r.value for r in driver.outputs("dead_letters")] == [b"stray"]
    assert driver.committed(TOPIC, 1) == 1


@pytest.mark.parametrize("land", range(12))
async def test_a_release_cut_short_after_any_write_counts_each_entry_once(land):
    driver, reader = topology()
    for i in range(6):  # waiting: source partition 2 has sent no mark yet
        value = orjson.dumps({"id": f"o{i}", "card": f"c{i % 2}", "t": T0 + i})
        driver.produce(ORDERS, value, i % 2, timestamp_ms=T0 + i)
    await driver.settle()
    assert output(driver, reader) == {}
    tick_all(driver, T0 + 60_000)
    await driver.pump()
    await driver.commit()  # the forwarder's marks are out
    await driver.pump()  # the reader releases all six: its commit is the next one, cut short
    await driver.crash(land=land)
    await driver.settle()
    for i in range(6, 10):  # and what comes after counts on from there
        value = orjson.dumps({"id": f"o{i}", "card": f"c{i % 2}", "t": T0 + 60_000 + i})
        driver.produce(ORDERS, value, i % 2, timestamp_ms=T0 + 60_000 + i)
    tick_all(driver, T0 + 120_000)
    await driver.settle()
    assert output(driver, reader) == {f"{ORDERS}/{i % 2}/{i // 2}/0": i // 2 + 1 for i in range(10)}


@pytest.mark.parametrize("seed", range(8))
async def test_two_sources_into_one_topic_release_in_one_order_whatever_the_crashes(seed):
    rng = random.Random(seed)
    sources = [ORDERS, "reorders"]
    reader = CountByCard(APP, sources, PARTITIONS)
    forwards = [forwarder(APP, topic, PARTITIONS, name=f"rekey_{topic}") for topic in sources]
    driver = TestDriver([*forwards, reader], partitions=PARTITIONS, commit_s=3.0)
    produce_orders(driver, rng, 80)
    produce_orders(driver, rng, 80, topic="reorders")
    for _ in range(40):
        await driver.pump(rng.randrange(1, 20), rng=rng)
        driver.advance(rng.random() * 2)
        await driver.commit_if_due()
        if rng.random() < 0.15:
            await driver.crash(land=rng.randrange(0, 12))
    for topic in sources:
        tick_all(driver, T0 + 10**9, topic)
    await driver.settle(rng=rng)
    log = driver.broker.log
    logs = {
        topic: (
            [log(topic, p) for p in range(PARTITIONS)],
            [log(f"{APP}-{topic}-ticks", p) for p in range(PARTITIONS)],
        )
        for topic in sources
    }
    got = output(driver, reader)
    assert got == expected_counts(logs)
    assert {i.split("/")[0] for i in got} == set(sources)
    assert driver.restarts > 0


def test_the_partition_of_a_key_is_the_one_kafkas_default_partitioner_picks():
    from aiokafka.partitioner import DefaultPartitioner

    rng = random.Random(5)
    pick = DefaultPartitioner()
    for _ in range(500):
        key = rng.randbytes(rng.randrange(1, 30))
        partitions = rng.randrange(1, 64)
        everything = list(range(partitions))
        assert partition_of(key, partitions) == pick(key, everything, everything)
