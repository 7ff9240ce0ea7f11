"""The runner (engine.runner) driven through engine.testing, without a broker: a tiny processor
counting the values of each partition; commits once per interval, each staged key once in the
keyspace's order, offsets acked with the commit; crashes (also in the middle of a commit) and
rebalances redone exactly from the committed offsets; poison records split out; idle ticks
applied at once and, after a crash, again at the same place."""

from __future__ import annotations

import random
from collections.abc import Sequence

import orjson
import pytest

from engine.commit import Derived
from engine.processor import (
    Inputs,
    Keyspace,
    Outcome,
    Poisoned,
    Position,
    Prefix,
    Record,
    Send,
    Sink,
    Store,
)
from engine.testing import TestDriver
from streams.ticks import read_tick, tick_value

SOURCE, TICKS = "numbers", "numbers-ticks"
KEYSPACE = Keyspace(
    Prefix("v", "a value's count and the last source offset counted in it", order=0),
    Prefix("p", "the partition's progress: source offset, ticks offset, watermark", order=1),
)  # "p" sorts before "v", and the processor stages it first: the order is the keyspace's


def progress_key(partition: int) -> bytes:
    return b"p|%d" % partition


def value_key(partition: int, value: int) -> bytes:
    return b"v|%d|%d" % (partition, value)


class Counter:
    """Counts each partition's values (ASCII integers: anything else raises); one output record
    per input record, with a deterministic id; a Poisoned record becomes a dead letter."""

    name = "count_numbers"
    table = "number_counts"
    keyspace = KEYSPACE
    inputs = Inputs(SOURCE, time_log=TICKS)
    outputs = {"counted": "counted", "ticks": "ticks-applied", "dead_letters": "dead-letters"}

    def __init__(self, sink: Sink | None = None) -> None:
        self.sink = sink
        self.batches: list[list[str]] = []  # what each apply call was given (poison splits)

    def apply(
        self, partition: int, records: Sequence[Record | Poisoned], state: Store, settled: Store
    ) -> Outcome:
        self.batches.append([f"{r.topic}:{r.offset}" for r in records])
        progress = orjson.loads(state.get(progress_key(partition)) or b'{"o":-1,"t":-1,"w":-1}')
        writes: dict[bytes, bytes | None] = {progress_key(partition): None}  # staged first
        sends = []
        for record in records:
            source = record.record if isinstance(record, Poisoned) else record
            log = "o" if source.topic == SOURCE else "t"
            if source.offset <= progress[log]:
                continue  # applied already (a redelivery)
            progress[log] = source.offset
            rid = f"{source.topic}/{partition}/{source.offset}".encode()
            if isinstance(record, Poisoned):
                sends.append(Send("dead_letters", rid, repr(record.error).encode()))
                continue
            if log == "t":
                tick = read_tick(record.value)
                if tick is None:
                    sends.append(Send("dead_letters", rid, b"not a tick"))
                    continue
                progress["w"] = max(progress["w"], tick.time_ms)
                body = {"after": progress["o"], "ms": tick.time_ms}
                sends.append(Send("ticks", rid, orjson.dumps(body)))
                continue
            number = int(record.value or b"")  # raises: a poison record
            key = value_key(partition, number)
            raw = writes.get(key) or state.get(key)
            count = orjson.loads(raw) if raw else {"n": 0, "o": -1}
            if record.offset > count["o"]:  # not yet counted in this key (a cut-short commit)
                count = {"n": count["n"] + 1, "o": record.offset}
                writes[key] = orjson.dumps(count)
            progress["w"] = max(progress["w"], record.timestamp)
            sends.append(Send("counted", rid, orjson.dumps({"value": number})))
        writes[progress_key(partition)] = orjson.dumps(progress)
        return Outcome(partition, writes, sends)

    def position(self, partition: int, state: Store) -> Position:
        raw = state.get(progress_key(partition))
        if raw is None:
            return Position(-1)
        progress = orjson.loads(raw)
        return Position(progress["o"], progress["t"], progress["w"])

    def forget(self, partition: int) -> None:
        pass  # no in-memory indexes


def counts(driver: TestDriver, partition: int) -> dict[int, int]:
    prefix = b"v|%d|" % partition
    return {
        int(k[len(prefix) :]): orjson.loads(v)["n"]
        for k, v in driver.state(partition).items()
        if k.startswith(prefix)
    }


def progress(driver: TestDriver, partition: int) -> dict[str, int]:
    return orjson.loads(driver.state(partition)[progress_key(partition)])


def sent(driver: TestDriver, name: str) -> dict[bytes, bytes]:
    """The records sent to an output by id; one id never carries two different values."""
    by_id: dict[bytes, bytes] = {}
    for record in driver.outputs(name):
        assert record.key is not None and record.value is not None
        assert by_id.setdefault(record.key, record.value) == record.value, record.key
    return by_id


def produce_numbers(driver: TestDriver, partition: int, numbers: Sequence[int | str]) -> None:
    for number in numbers:
        driver.produce(SOURCE, str(number).encode(), partition)


# the commit interval


async def test_commits_once_per_commit_interval():
    driver = TestDriver(Counter(), commit_s=5.0)
    start = driver.clock.monotonic()
    for _ in range(12):  # one record a second
        produce_numbers(driver, 0, [1])
        await driver.pump()
        driver.advance(1.0)
    # due at the first delivery commit_s after the oldest staged batch
    assert [c.at_s - start for c in driver.broker.commits] == [5.0, 11.0]
    assert counts(driver, 0) == {1: 12}
    produce_numbers(driver, 0, [2])  # at 12 s, then quiet: the commit timer's round commits it
    await driver.pump()
    driver.advance(4.9)
    await driver.commit_if_due()
    assert len(driver.broker.commits) == 2
    driver.advance(0.1)
    await driver.commit_if_due()
    assert [c.at_s - start for c in driver.broker.commits] == [5.0, 11.0, 17.0]
    assert counts(driver, 0) == {1: 12, 2: 1}
    assert driver.committed(SOURCE) == 13


async def test_a_commit_writes_each_staged_key_once_in_keyspace_order():
    driver = TestDriver(Counter(), partitions=2, commit_s=60.0)
    rng = random.Random(7)
    for _ in range(5):  # several batches of both partitions staged before one commit
        for partition in (0, 1):
            produce_numbers(driver, partition, [rng.randint(0, 3) for _ in range(4)])
        await driver.pump(batch=2)
    await driver.commit()
    (commit,) = driver.broker.commits
    assert set(commit.step.writes) == {0, 1}
    for partition, writes in commit.step.writes.items():
        keys = [key for key, _ in writes]
        assert len(keys) == len(set(keys)), "each staged key once"
        assert keys[-1] == progress_key(partition)  # last, though staged first
        assert [KEYSPACE.rank(k, v) for k, v in writes] == sorted(
            KEYSPACE.rank(k, v) for k, v in writes
        )
        assert dict(writes) == driver.state(partition)  # the last staged value of each key
    assert counts(driver, 0) == _counted(driver, 0)
    assert counts(driver, 1) == _counted(driver, 1)


def _counted(driver: TestDriver, partition: int) -> dict[int, int]:
    result: dict[int, int] = {}
    for record in driver.broker.records(SOURCE, partition):
        result[int(record.value or b"")] = result.get(int(record.value or b""), 0) + 1
    return result


# offsets, crashes and rebalances


async def test_offsets_are_acked_only_with_the_commit():
    driver = TestDriver(Counter(), partitions=2, commit_s=60.0)
    produce_numbers(driver, 0, [1, 2, 1, 3, 1])
    produce_numbers(driver, 1, [5, 5, 6])
    assert await driver.pump() == 8
    assert driver.broker.committed_offsets == {}
    assert driver.outputs("counted") == []  # derived records go out with the commit too
    await driver.crash()  # before any commit: everything is delivered again
    assert driver.state(0) == driver.state(1) == {}
    assert await driver.pump() == 8
    await driver.commit()
    assert (driver.committed(SOURCE, 0), driver.committed(SOURCE, 1)) == (5, 3)
    assert counts(driver, 0) == {1: 3, 2: 1, 3: 1}
    assert counts(driver, 1) == {5: 2, 6: 1}
    produce_numbers(driver, 0, [2, 2])
    assert await driver.pump() == 2
    await driver.crash()  # only what followed the commit comes again
    assert await driver.pump() == 2
    await driver.commit()
    assert counts(driver, 0) == {1: 3, 2: 3, 3: 1}
    assert len(sent(driver, "counted")) == 10


WORKLOAD = {
    0: [1, 2, 1, 3, 1, 2, 4, 4, 1, 0],
    1: [7, 7, 8, 7, 9, 9, 8, 7],
}
TICKS_AFTER = {0: [(2, 60_000), (6, 90_000)], 1: [(-1, 30_000), (4, 70_000)]}


def workload(driver: TestDriver) -> None:
    """Source records and ticks of both partitions, all written before the worker starts (a
    tick "after N" is placed after source offset N however the two logs are fetched)."""
    for partition, numbers in WORKLOAD.items():
        produce_numbers(driver, partition, numbers)
        for after, at_ms in TICKS_AFTER[partition]:
            driver.produce(TICKS, tick_value(at_ms, after, "app"), partition)


async def run(land: int | None, seed: int) -> TestDriver:
    """The workload in random fetches; one commit half-way; the rest staged, then (`land` not
    None) a crash cut short after `land` state writes, and redelivery to the end."""
    driver = TestDriver(Counter(), partitions=2, commit_s=3600.0)
    workload(driver)
    rng = random.Random(seed)
    await driver.pump(max_records=12, batch=3, rng=rng)
    await driver.commit()
    await driver.pump(batch=3, rng=rng)
    if land is not None:
        await driver.crash(land=land)
        await driver.pump(batch=3, rng=rng)
    await driver.commit()
    return driver


def outcome(driver: TestDriver) -> tuple:
    return (
        driver.state(0),
        driver.state(1),
        sent(driver, "counted"),
        sent(driver, "ticks"),
        sent(driver, "dead_letters"),
    )


@pytest.mark.parametrize("seed", range(4))
async def test_a_commit_cut_short_anywhere_then_redelivered_gives_the_uninterrupted_result(seed):
    reference = await run(None, seed)
    expected = outcome(reference)
    assert counts(reference, 0) == {0: 1, 1: 4, 2: 2, 3: 1, 4: 2}
    assert counts(reference, 1) == {7: 4, 8: 2, 9: 2}
    ticks = {k: orjson.loads(v)["after"] for k, v in expected[3].items()}
    assert ticks == {
        b"numbers-ticks/0/0": 2,
        b"numbers-ticks/0/1": 6,
        b"numbers-ticks/1/0": -1,
        b"numbers-ticks/1/1": 4,
    }
    probe = await run(10**6, seed)  # every write lands, the offsets do not
    cut = probe.broker.commits[1]
    writes = sum(len(w) for w in cut.step.writes.values())
    assert cut.landed == writes and not cut.acked and writes > 2
    for land in range(writes + 1):
        driver = await run(land, seed)
        assert driver.broker.commits[1].landed == land
        assert outcome(driver) == expected, f"cut after {land} of {writes} writes"
        assert driver.committed(SOURCE, 0) == len(WORKLOAD[0])


async def test_a_rebalance_between_delivery_and_commit_discards_what_was_staged():
    driver = TestDriver(Counter(), commit_s=60.0)
    produce_numbers(driver, 0, [1, 1, 2])
    await driver.pump()
    driver.rebalance()
    await driver.commit()
    assert driver.broker.commits == []
    assert driver.state(0) == {} and driver.outputs("counted") == []
    assert await driver.pump() == 3  # the partition's (new) owner gets it all again
    await driver.commit()
    assert counts(driver, 0) == {1: 2, 2: 1}
    assert len(driver.outputs("counted")) == 3


class RebalancingSink:
    """A sink whose first flush sees a rebalance happen."""

    def __init__(self) -> None:
        self.driver: TestDriver | None = None
        self.staged: list[object] = []
        self.flushes = 0
        self.assignments: list[set[int]] = []

    def stage(self, staged: Sequence[object]) -> None:
        self.staged += staged

    async def flush(self) -> bool:
        self.flushes += 1
        if self.flushes == 1 and self.driver is not None:
            self.driver.rebalance()
        return True

    def assigned(self, partitions: set[int]) -> None:
        self.assignments.append(partitions)

    async def lost(self) -> bool:
        return False

    def restate(self, partition: int, state: object) -> None:
        pass


async def test_a_rebalance_while_the_sink_flushes_lands_neither_state_nor_offsets():
    sink = RebalancingSink()
    driver = TestDriver(Counter(sink), commit_s=60.0)
    sink.driver = driver
    produce_numbers(driver, 0, [4, 4])
    await driver.pump()
    await driver.commit()
    (commit,) = driver.broker.commits  # its derived records went out before the flush
    assert sink.flushes == 1 and commit.step.sends and commit.landed == 0 and not commit.acked
    assert await driver.pump() == 2  # redelivered to the partition's owner
    assert sink.assignments == [{0}]
    await driver.commit()
    assert counts(driver, 0) == {4: 2}


async def test_a_rebalance_during_the_commit_step_lands_neither_state_nor_offsets(monkeypatch):
    driver = TestDriver(Counter(), commit_s=60.0)
    produce_numbers(driver, 0, [1, 2])
    await driver.pump()
    send = driver.broker.send

    def send_then_rebalance(derived: Derived) -> None:
        send(derived)
        if len(driver.outputs("counted")) == 1:
            driver.rebalance()

    monkeypatch.setattr(driver.broker, "send", send_then_rebalance)
    await driver.commit()
    (commit,) = driver.broker.commits
    assert (commit.landed, commit.acked) == (0, False)
    assert len(driver.outputs("counted")) == 2  # derived records went out: redone under their ids
    assert driver.state(0) == {} and driver.committed(SOURCE) is None
    monkeypatch.undo()
    assert await driver.pump() == 2
    await driver.commit()
    assert counts(driver, 0) == {1: 1, 2: 1} and len(sent(driver, "counted")) == 2


# poison records


async def test_a_record_whose_apply_raises_is_split_out_and_handed_back_as_poisoned():
    counter = Counter()
    driver = TestDriver(counter, commit_s=60.0)
    produce_numbers(driver, 0, [1, 2, "boom", 3, 1, 1, "x", 2])
    await driver.pump()
    await driver.commit()
    assert counts(driver, 0) == {1: 3, 2: 2, 3: 1}  # its neighbours are applied
    letters = sent(driver, "dead_letters")
    assert set(letters) == {b"numbers/0/2", b"numbers/0/6"}
    assert b"ValueError" in letters[b"numbers/0/2"]
    assert set(sent(driver, "counted")) == {b"numbers/0/%d" % o for o in (0, 1, 3, 4, 5, 7)}
    assert progress(driver, 0)["o"] == 7 and driver.committed(SOURCE) == 8
    assert counter.batches[0] == [f"numbers:{o}" for o in range(8)]  # then split in halves
    assert ["numbers:2"] in counter.batches  # alone, then as Poisoned
    assert len(counter.batches) < 2 * 8  # not one by one


# ticks


async def test_an_idle_caught_up_partition_gets_a_tick_applied_at_once():
    driver = TestDriver(Counter(), partitions=2, commit_s=60.0, idle_s=10.0, ticks_by="app")
    produce_numbers(driver, 0, [1, 2, 3])
    await driver.pump()
    watermark = driver.clock.wall_ms()  # the records' timestamps
    assert await driver.tick() == {}  # not idle yet (the clock anchors at the watermark)
    driver.advance(10.0)
    assert await driver.tick() == {0: watermark + 10_000, 1: watermark + 10_000}
    (tick,) = driver.broker.records(TICKS, 0)
    assert read_tick(tick.value) == read_tick(tick_value(watermark + 10_000, 2, "app"))
    await driver.commit()  # applied at once: without fetching the time log
    assert progress(driver, 0) == {"o": 2, "t": 0, "w": watermark + 10_000}
    assert progress(driver, 1) == {"o": -1, "t": 0, "w": watermark + 10_000}
    assert driver.committed(TICKS, 0) is None  # acked once fetched
    assert await driver.pump() == 2  # the ticks come back from the log: taken as applied
    await driver.commit()
    assert driver.committed(TICKS, 0) == 1 and len(driver.outputs("ticks")) == 2
    ticks = {k: orjson.loads(v)["after"] for k, v in sent(driver, "ticks").items()}
    assert ticks == {b"numbers-ticks/0/0": 2, b"numbers-ticks/1/0": -1}


async def test_no_ticks_without_a_ticking_app():
    driver = TestDriver(Counter(), commit_s=60.0, idle_s=10.0, ticks_by=None)
    produce_numbers(driver, 0, [1])
    await driver.pump()
    driver.advance(30.0)
    await driver.tick()
    assert await driver.tick() == {} and driver.broker.records(TICKS) == []


async def tick_then_more(driver: TestDriver) -> None:
    produce_numbers(driver, 0, [1, 2, 3])
    await driver.pump()
    await driver.commit()
    await driver.tick()
    driver.advance(10.0)
    assert list(await driver.tick()) == [0]  # "after 2", applied at once
    produce_numbers(driver, 0, [4, 5])
    await driver.pump(topics=[SOURCE])


async def test_after_a_crash_a_tick_is_applied_again_after_the_same_source_offset():
    reference = TestDriver(Counter(), commit_s=60.0, idle_s=10.0, ticks_by="app")
    await tick_then_more(reference)
    await reference.pump()
    await reference.commit()
    driver = TestDriver(Counter(), commit_s=60.0, idle_s=10.0, ticks_by="app")
    await tick_then_more(driver)
    await driver.crash()  # the tick stays in the time log; its application is lost
    # the source records come first: they wait for the time log's end at assignment
    assert await driver.pump(topics=[SOURCE]) == 2
    await driver.commit()
    assert progress(driver, 0)["o"] == 2
    assert await driver.pump() == 1
    await driver.commit()
    assert outcome(driver) == outcome(reference)
    (tick,) = sent(driver, "ticks").values()
    assert orjson.loads(tick)["after"] == 2
    assert progress(driver, 0)["o"] == 4 and progress(driver, 0)["t"] == 0


async def test_after_a_rebalance_a_tick_is_applied_again_after_the_same_source_offset():
    driver = TestDriver(Counter(), commit_s=60.0, idle_s=10.0, ticks_by="app")
    await tick_then_more(driver)
    driver.rebalance()
    assert await driver.pump(topics=[SOURCE]) == 2
    assert await driver.pump(topics=[TICKS]) == 1
    await driver.commit()
    (tick,) = sent(driver, "ticks").values()
    assert orjson.loads(tick)["after"] == 2
    assert counts(driver, 0) == {1: 1, 2: 1, 3: 1, 4: 1, 5: 1}


async def test_a_tick_read_while_the_time_log_end_was_unknown_is_kept(monkeypatch):
    driver = TestDriver(Counter(), commit_s=60.0)
    produce_numbers(driver, 0, [1, 2, 3, 4, 5, 6])
    driver.produce(TICKS, tick_value(5_000, 3, "app"), 0)
    ends, failures = driver.broker.ends, [ConnectionError("a broker hiccup")]

    async def ends_once_unknown(topic: str, partitions: set[int]) -> dict[int, int]:
        if failures:
            raise failures.pop()
        return await ends(topic, partitions)

    monkeypatch.setattr(driver.broker, "ends", ends_once_unknown)
    assert await driver.pump(topics=[TICKS]) == 1  # no end known: the tick waits for source 3
    assert await driver.pump(topics=[SOURCE]) == 6  # the end is known by now
    await driver.commit()
    assert progress(driver, 0)["o"] == 5
    (tick,) = sent(driver, "ticks").values()
    assert orjson.loads(tick)["after"] == 3


# processors sharing their inputs (two readers of one source and its time log)


class CounterBeside(Counter):
    """A second Counter on the same source and time log, with a table and outputs of its own."""

    name = "count_numbers_beside"
    table = "number_counts_beside"
    outputs = {k: f"{topic}-beside" for k, topic in Counter.outputs.items()}


async def test_a_tick_written_by_one_reader_of_a_time_log_is_placed_alike_for_the_other():
    first, beside = Counter(), CounterBeside()
    driver = TestDriver([first, beside], commit_s=60.0, idle_s=10.0, ticks_by="app")
    await tick_then_more(driver)  # the tick "after 2", then 3 and 4 fetched before it
    await driver.settle()
    assert len(driver.broker.records(TICKS)) == 1  # written once, by the first reader
    for reader in (first, beside):
        (tick,) = driver.outputs("ticks", processor=reader)
        assert orjson.loads(tick.value)["after"] == 2
    assert driver.committed(TICKS, 0) == 1  # fetched by both, acked by both


@pytest.mark.parametrize("after", [0, 1])
async def test_a_source_offset_two_readers_read_is_committed_once_both_saved_it(after):
    first, beside = Counter(), CounterBeside()
    driver = TestDriver([first, beside], commit_s=60.0)
    produce_numbers(driver, 0, [1, 2, 3])
    await driver.pump()
    await driver.crash(land=0, after=after)  # the first reader's commit, or the second's, cut
    assert driver.committed(SOURCE, 0) is None  # not before both saved state
    await driver.settle()
    assert driver.committed(SOURCE, 0) == 3
    for reader in (first, beside):
        assert [r.key for r in driver.outputs("counted", processor=reader)][-3:] == [
            f"{SOURCE}/0/{i}".encode() for i in range(3)
        ]
        prefix = b"v|0|"
        state = driver.state(0, reader)
        assert {k: orjson.loads(v)["n"] for k, v in state.items() if k.startswith(prefix)} == {
            value_key(0, n): 1 for n in (1, 2, 3)
        }
