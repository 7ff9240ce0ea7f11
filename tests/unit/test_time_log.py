"""Where ticks go among a partition's source records (engine.time_log), whatever the order in
which the two logs are fetched: a tick "after N" right after source offset N; source records
held until the time log has been read to the end it had at assignment; ticks in log order."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from engine.processor import InputRecord, Record
from engine.time_log import TimeLogMerge
from streams.ticks import tick_value

SOURCE, TICKS = "clicks", "clicks-ticks"


def src(offset: int) -> InputRecord:
    return InputRecord(SOURCE, 0, offset, 0, None, b"%d" % offset)


def tick(offset: int, after: int) -> InputRecord:
    return InputRecord(TICKS, 0, offset, 0, None, tick_value(1_000 + offset, after, "app"))


def garbage(offset: int) -> InputRecord:
    return InputRecord(TICKS, 0, offset, 0, None, b"not a tick")


def name(record: Record) -> str:
    return f"{'s' if record.topic == SOURCE else 't'}{record.offset}"


class Consumer:
    """A processor's view: what it applies of what the merge returns (it skips what its
    offsets show applied), and the offsets it reports back."""

    def __init__(self, merge: TimeLogMerge, applied: int = -1, applied_ticks: int = -1) -> None:
        self.merge, self.applied, self.applied_ticks = merge, applied, applied_ticks
        self.sequence: list[str] = []

    def take(
        self, source: Sequence[Record], ticks: Sequence[Record], written: bool = False
    ) -> list[str]:
        out = self.merge.take(source, ticks, self.applied, self.applied_ticks, written)
        for record in out:
            if record.topic == SOURCE and record.offset > self.applied:
                self.applied = record.offset
                self.sequence.append(name(record))
            elif record.topic == TICKS and record.offset > self.applied_ticks:
                self.applied_ticks = record.offset
                self.sequence.append(name(record))
        return [name(record) for record in out]


# ten source records; ticks after -1 (before the first), 2, 5, 5 and 9 (after the last)
AFTERS = [-1, 2, 5, 5, 9]
SOURCES = [src(o) for o in range(10)]
TICK_LOG = [tick(o, after) for o, after in enumerate(AFTERS)]
MERGED = ["t0", "s0", "s1", "s2", "t1", "s3", "s4", "s5", "t2", "t3", "s6", "s7", "s8", "s9", "t4"]


def random_takes(rng: random.Random, source: list, ticks: list) -> list[tuple[list, list]]:
    """Both logs fetched in order, in random chunks (either may be empty in a take)."""
    takes = []
    while source or ticks:
        ns, nt = rng.randint(0, len(source)), rng.randint(0, len(ticks))
        if ns or nt:
            takes.append((source[:ns], ticks[:nt]))
            source, ticks = source[ns:], ticks[nt:]
    return takes


@pytest.mark.parametrize(
    "takes",
    [
        [([], TICK_LOG), (SOURCES, [])],  # ticks fetched before their source records
        [(SOURCES, TICK_LOG)],  # with them
        [(SOURCES, []), ([], TICK_LOG)],  # after them
        [(SOURCES[:3], []), ([], TICK_LOG[:2]), (SOURCES[3:7], TICK_LOG[2:]), (SOURCES[7:], [])],
    ],
    ids=["before", "with", "after", "several-takes"],
)
def test_a_tick_is_applied_right_after_the_source_offset_it_names(takes):
    consumer = Consumer(TimeLogMerge(end=len(TICK_LOG)))
    for source, ticks in takes:
        consumer.take(source, ticks)
    assert consumer.sequence == MERGED
    assert not consumer.merge.waiting()


@pytest.mark.parametrize("seed", range(200))
def test_any_fetch_order_gives_the_same_merge(seed):
    rng = random.Random(seed)
    consumer = Consumer(TimeLogMerge(end=len(TICK_LOG)))
    for source, ticks in random_takes(rng, SOURCES, TICK_LOG):
        consumer.take(source, ticks)
    assert consumer.sequence == MERGED


@pytest.mark.parametrize("seed", range(100))
def test_a_restart_redelivering_from_committed_offsets_resumes_the_same_merge(seed):
    # state says: source 3 and tick 1 ("after 2") applied; the consumer's committed offsets lag
    # behind (source 2, ticks 0), so some of what comes again was applied already
    rng = random.Random(seed)
    consumer = Consumer(TimeLogMerge(end=len(TICK_LOG)), applied=3, applied_ticks=1)
    for source, ticks in random_takes(rng, SOURCES[2:], TICK_LOG):
        consumer.take(source, ticks)
    assert consumer.sequence == MERGED[MERGED.index("s3") + 1 :]


def test_source_records_wait_until_the_time_log_is_read_to_its_end_at_assignment():
    consumer = Consumer(TimeLogMerge(end=2))  # two ticks were written before the assignment
    assert consumer.take([src(0), src(1), src(2)], []) == []
    assert consumer.merge.waiting()
    assert consumer.take([src(3)], [tick(0, after=1)]) == []  # the time log is not read yet
    assert consumer.take([src(4)], [tick(1, after=3)]) == ["s0", "s1", "t0", "s2", "s3", "t1", "s4"]
    assert not consumer.merge.waiting()
    assert consumer.take([src(5)], []) == ["s5"]  # from now on, nothing waits


def test_nothing_waits_when_the_state_has_applied_the_time_log_to_its_end():
    merge = TimeLogMerge(end=3)
    assert [name(r) for r in merge.take([src(4)], [], applied=3, applied_ticks=2)] == ["s4"]
    assert [name(r) for r in TimeLogMerge(end=None).take([src(0)], [], -1, -1)] == ["s0"]
    assert [name(r) for r in TimeLogMerge(end=0).take([src(0)], [], -1, -1)] == ["s0"]


def test_a_tick_after_a_source_offset_not_yet_fetched_waits_for_it():
    consumer = Consumer(TimeLogMerge(end=None))
    assert consumer.take([src(0)], [tick(0, after=1)]) == ["s0"]
    assert consumer.merge.waiting()
    assert consumer.take([src(1), src(2)], []) == ["s1", "t0", "s2"]


def test_already_applied_and_unreadable_ticks_pass_at_once():
    merge = TimeLogMerge(end=5)
    # applied already (offset <= applied_ticks): at once, even while source records wait
    assert [name(r) for r in merge.take([src(4)], [tick(0, 7), tick(1, 7)], 3, 1)] == ["t0", "t1"]
    # unreadable: at once (the processor makes it a dead letter); the source record still waits
    assert [name(r) for r in merge.take([], [garbage(2)], 3, 1)] == ["t2"]
    assert merge.waiting()
    out = merge.take([], [tick(3, after=4), tick(4, after=9)], 3, 2)
    assert [name(r) for r in out] == ["s4", "t3"]  # read to the end: released; t4 waits for 9


def test_ticks_stay_in_log_order():
    consumer = Consumer(TimeLogMerge(end=None))
    # "after 5" then "after 3" (one worker never writes that, but it is the log's order)
    assert consumer.take([src(o) for o in range(5)], [tick(0, 5), tick(1, 3)]) == [
        *(f"s{o}" for o in range(5)),
    ]
    assert consumer.take([src(5)], [tick(2, 5)]) == ["s5", "t0", "t1", "t2"]


def test_an_unreadable_tick_does_not_overtake_a_waiting_tick():
    # else the processor records the later offset as applied and skips the earlier tick
    consumer = Consumer(TimeLogMerge(end=None))
    assert consumer.take([src(0)], [tick(0, after=1), garbage(1)]) == ["s0"]
    assert consumer.take([src(1)], []) == ["s1", "t0", "t1"]
    assert consumer.sequence == ["s0", "s1", "t0", "t1"]


def test_a_tick_written_now_waits_for_the_earlier_ones_still_to_be_read():
    # a reader of a time log that another runner of this worker writes, restarted behind it:
    # ticks 0-2 were written before the assignment, the writer writes 3 before 1 and 2 come
    consumer = Consumer(TimeLogMerge(end=3), applied=5)
    assert consumer.take([], [tick(0, after=5)]) == ["t0"]
    assert consumer.take([], [tick(3, after=5)], written=True) == []
    assert consumer.take([], [tick(1, after=5), tick(2, after=5)]) == ["t1", "t2", "t3"]
    assert consumer.sequence == ["t0", "t1", "t2", "t3"]
