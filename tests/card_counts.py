"""Card counts: a two-processor topology on the engine that exercises repartitioning, with its
oracle. Orders keyed by user are re-keyed by card (engine.repartition.Repartition), and a reader
emits each order's running count on its card, in the release order. That output depends on the
order entries are read in, so the oracle checks exactness and the one order both:
(release ms, source partition, offset, index), release ms = max(event time, the source
partition's watermark before it; ticks count).

  orders (+ ticks) ──► rekey_orders_by_card ──► <app>-by_card-repartition ──► count_by_card ──►
  <app>-card-counts  {"id": entry id, "count": running count}

`python -m tests.card_counts` runs it as a Faust worker on a real broker (settings from the
environment, CARDS_*; CARDS_DIE_AT kills it inside a commit, just after its derived records
went out), for tests/reliability/test_repartition_kill.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence

import faust
import orjson

from clickstream.app import broker_urls
from clickstream.kafka_admin import ensure_topics
from engine.commit import CommitStep, Committer, Flush
from engine.processor import (
    Inputs,
    Keyspace,
    Outcome,
    Poisoned,
    Position,
    Prefix,
    Record,
    Send,
    Store,
)
from engine.repartition import ALIGNMENT_PREFIXES, EFFECTS, Alignment, Entry, Repartition
from engine.topology import Engine, EngineConfig
from streams.ticks import read_tick
from streams.topics import TopicSpec, repartition_topic


def by_card(record: Record) -> list[Entry]:
    """An order's one entry, keyed by its card; b"boom" raises (a bug), other non-JSON is not
    taken (its own processor would dead-letter it)."""
    if record.value == b"boom":
        raise RuntimeError("a bug in the re-keying")
    try:
        order = orjson.loads(record.value or b"")
    except orjson.JSONDecodeError:
        return []
    return [Entry(order["card"].encode(), record.value or b"", order["t"])]


def by_card_topic(app_id: str, partitions: int) -> TopicSpec:
    return repartition_topic(app_id, "by_card", "card", partitions)


def forwarder(
    app_id: str, orders: str, partitions: int, name: str = "rekey_orders_by_card"
) -> Repartition:
    """Forwards one source topic of orders; several may write the one by_card topic."""
    return Repartition(
        name, by_card_topic(app_id, partitions).name,
        Inputs(orders, time_log=f"{app_id}-{orders}-ticks"), by_card, partitions,
        f"{app_id}-dead-letters", clock_app_id=app_id, max_skew_ms=60_000,
    )  # fmt: skip


class CountByCard:
    """Each released order's running count on its card; the count kept per card with the
    sequence number of the entry it last applied."""

    name, table, sink = "count_by_card", "card_counts", None
    keyspace = Keyspace(*ALIGNMENT_PREFIXES, Prefix("C", "orders per card", EFFECTS.start))

    def __init__(self, app_id: str, sources: Sequence[str], partitions: int) -> None:
        """`sources`: the topics of orders forwarded to the by_card topic."""
        self.inputs = Inputs(by_card_topic(app_id, partitions).name)
        self.outputs = {"counts": f"{app_id}-card-counts", "dead_letters": f"{app_id}-dead-letters"}
        self.alignment = Alignment(dict.fromkeys(sources, partitions))

    def apply(
        self, partition: int, records: Sequence[Record | Poisoned], state: Store, settled: Store
    ) -> Outcome:
        aligned = self.alignment.take(partition, records, state)
        writes, sends = aligned.writes, []
        for entry in aligned.released:
            key = b"C|%d|%s" % (partition, entry.key)
            raw = writes[key] if key in writes else state.get(key)
            count, seq = orjson.loads(raw) if raw else (0, 0)
            if entry.seq <= seq:
                continue  # applied by a commit cut short; its count went out before its state
            count += 1
            writes[key] = orjson.dumps([count, entry.seq])
            value = orjson.dumps({"id": entry.head.id, "count": count})
            sends.append(Send("counts", entry.key, value))
        for record in aligned.foreign:
            sends.append(Send("dead_letters", record.key, record.value))
        return Outcome(partition, writes, sends)

    def position(self, partition: int, state: Store) -> Position:
        return Position(-1)

    def forget(self, partition: int) -> None:
        pass


Log = tuple[Sequence[Sequence[Record]], Sequence[Sequence[Record]]]  # records, ticks; by partition


def expected_counts(logs: Mapping[str, Log]) -> dict[str, int]:
    """The oracle: entry id -> the order's running count on its card, from each source topic's
    partitions' orders and ticks, in the release order (release ms, source topic's rank by name,
    partition, offset)."""
    entries = []
    for rank, topic in enumerate(sorted(logs)):
        entries += _releases(rank, *logs[topic])
    counts: dict[str, int] = defaultdict(int)
    running = {}
    for _, card, record in sorted(entries, key=lambda e: e[0]):
        counts[card] += 1
        running[f"{record.topic}/{record.partition}/{record.offset}/0"] = counts[card]
    return running


def ticks_after(records: Sequence[Record]) -> defaultdict[int, int]:
    """Source offset -> the latest tick time applied right after it (-1: none)."""
    after: defaultdict[int, int] = defaultdict(lambda: -1)
    for record in records:
        tick = read_tick(record.value)
        if tick is not None:
            after[tick.after] = max(after[tick.after], tick.time_ms)
    return after


def _releases(
    rank: int, orders: Sequence[Sequence[Record]], ticks: Sequence[Sequence[Record]]
) -> list[tuple[tuple[int, int, int, int], str, Record]]:
    entries = []
    for p, (records, tick_records) in enumerate(zip(orders, ticks, strict=True)):
        after = ticks_after(tick_records)
        watermark = after[-1]
        for record in records:
            try:
                order = orjson.loads(record.value or b"")
            except orjson.JSONDecodeError:
                order = None
            if order is not None:
                release = max(order["t"], watermark)
                entries.append(((release, rank, p, record.offset), order["card"], record))
                watermark = max(watermark, order["t"])
            watermark = max(watermark, after[record.offset])
    return entries


def counted(records: Iterable[Record]) -> dict[str, int]:
    """Entry id -> count, from the reader's output; a repeated record repeats its value."""
    seen: dict[str, int] = {}
    for record in records:
        body = orjson.loads(record.value or b"")
        assert seen.setdefault(body["id"], body["count"]) == body["count"], body
    return seen


# a real worker


def main() -> None:
    env = os.environ
    app_id, orders, bootstrap = env["CARDS_APP_ID"], env["CARDS_ORDERS"], env["CARDS_BOOTSTRAP"]
    partitions = int(env["CARDS_PARTITIONS"])
    app = faust.App(
        app_id,
        broker=broker_urls(bootstrap),
        store="rocksdb://",
        datadir=env["CARDS_DATA_DIR"],
        topic_partitions=partitions,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        web_port=int(env["CARDS_WEB_PORT"]),
        broker_session_timeout=8,
        broker_heartbeat_interval=1,
        autodiscover=False,
        env={},
    )
    config = EngineConfig(
        partitions=partitions, commit_s=0.2, idle_s=1.0, batch_size=1000, batch_s=0.1,
        ticks_by=app_id, max_skew_ms=60_000,
    )  # fmt: skip
    engine = Engine(app, config)
    forward, read = forwarder(app_id, orders, partitions), CountByCard(app_id, [orders], partitions)
    runners = {
        "forward": engine.attach(forward, help="source partition -> forwarding position"),
        "read": engine.attach(read, help="repartition partition -> entries, marks, card counts"),
    }
    if "CARDS_DIE_AT" in env:  # "<forward|read>:<n>": die in that runner's n-th commit
        runner, n = env["CARDS_DIE_AT"].split(":")
        die_after_sends(runners[runner].committer, int(n))
    engine.install()
    owned = {*forward.outputs.values(), *read.outputs.values(), forward.inputs.time_log or ""}
    specs = [TopicSpec(name, "", "", partitions) for name in sorted(owned)]
    specs += [
        TopicSpec(f"{app_id}-{table}-changelog", "", "", partitions, compacted=True)
        for table in (forward.table, read.table)
    ]
    asyncio.run(ensure_topics(bootstrap, specs, 1))
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn"]
    app.main()


def die_after_sends(committer: Committer, n: int) -> None:
    """The n-th commit that sends keyed records (entries, counts; not only marks) dies once they
    are out, before its state and offsets: a SIGKILL at the worst moment, on purpose."""
    commit, seen = committer.commit, [0]

    async def dying(step: CommitStep, owner: Callable[[], bool], flush: Flush) -> None:
        seen[0] += any(d.key is not None for d in step.sends)
        if seen[0] == n:
            flush = _die
        await commit(step, owner, flush)

    committer.commit = dying  # type: ignore[method-assign]


async def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    main()
