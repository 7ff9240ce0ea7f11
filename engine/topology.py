"""Processors attached to a Faust app: one line each, then `install()`.

    engine = Engine(app, EngineConfig(...))
    engine.attach(processor, help="...")    # its table, its agent, its runner
    engine.attach(processor, help="...", commit_s=0.1)   # ... committing more often
    engine.install()                        # batched delivery, the commit and tick rounds

Each processor gets a changelog-backed table (partition p holds input partition p's state), a
Faust agent over its input topics (so Faust subscribes them and co-partitions the table; under
`test_context` the agent feeds the runner itself), and a runner. In a worker, fetched records
of its topics skip Faust's per-message path (engine.delivery) and go to its runner.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import faust
from faust.types import TP, EventT

from engine.commit import Ack, KafkaCommitter, SharedOffsets
from engine.delivery import BatchHandler, FaustConsumerView, Fetch, batch_delivering_consumer
from engine.processor import InputRecord, Processor, Record
from engine.runner import Runner, RunnerConfig
from engine.state import declare_state_table
from tables.event_clock import EventClock

log = logging.getLogger(__name__)
Round = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class EngineConfig:
    partitions: int  # of every input, table and output
    commit_s: float
    idle_s: float
    batch_size: int  # of the Faust agent path (test_context)
    batch_s: float
    ticks_by: str | None  # the app id writing ticks here; None: follow another app's, write none
    max_skew_ms: int
    stops: Mapping[TP, int] | None = None  # input or time log partition -> first offset not read
    fetch: Fetch = field(default_factory=Fetch)  # the consumer's fetches (engine.delivery)


class Engine:
    def __init__(self, app: faust.App, config: EngineConfig) -> None:
        self.app, self.config = app, config
        self.runners: list[Runner] = []
        self.clock = EventClock(config.idle_s)  # one event time for every stream here
        self._readers: list[tuple[BatchHandler, tuple[str, ...]]] = []  # in attach order
        self._shared = SharedOffsets()  # topics several processors read
        self._tick_writers: dict[str, Runner] = {}  # time log -> the runner writing it

    def attach(self, processor: Processor, help: str, commit_s: float | None = None) -> Runner:
        """`commit_s`: this processor's commit interval, if not the engine's (a processor on
        a latency-bound path: its derived records go out at each commit)."""
        app, config = self.app, self.config
        table = declare_state_table(app, processor.table, help, config.partitions)
        committer = KafkaCommitter(app, table)
        time_log = processor.inputs.time_log
        writer = self._tick_writers.get(time_log) if time_log else None
        ticks_by = config.ticks_by if writer is None else None  # one writer per time log
        runner = Runner(
            processor,
            committer,
            FaustConsumerView(app, config.stops),
            RunnerConfig(
                config.commit_s if commit_s is None else commit_s,
                config.idle_s,
                ticks_by,
                config.max_skew_ms,
            ),
            clock=self.clock,
        )
        if writer is not None:
            writer.followers.append(runner)
        elif time_log is not None:
            self._tick_writers[time_log] = runner
        self.runners.append(runner)
        topics = processor.inputs.topics()
        for topic in topics:
            self._shared.reads(processor.name, topic)
        source = app.topic(
            *topics,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=config.partitions,
        )

        async def agent(stream: faust.StreamT) -> None:
            async for events in cast(faust.Stream, stream).take_events(
                config.batch_size, config.batch_s
            ):
                await runner.deliver_now(_records_of(events, processor.inputs.topics()))

        agent.__qualname__ = agent.__name__ = processor.name  # how Faust logs it
        app.agent(source, name=processor.name)(agent)

        shared, name = self._shared, processor.name

        async def deliver(fetched: Mapping[TP, list[Any]], ack: Ack) -> None:
            async def ack_shared(tp: TP, offsets: Sequence[int]) -> None:
                await ack(tp, shared.acked(name, tp, offsets, app.consumer_generation_id))

            committer.ack = ack_shared
            await runner.deliver(fetched)

        self._readers.append((deliver, topics))
        return runner

    def install(self) -> None:
        """Batched delivery for every attached processor's topics, and the engine's rounds."""
        app, config, runners = self.app, self.config, self.runners
        consumer = batch_delivering_consumer(self._readers, config.stops, config.fetch)
        setattr(app.transport, "Consumer", consumer)  # noqa: B010

        shortest = min((runner.config.commit_s for runner in runners), default=config.commit_s)

        @_every(app, max(shortest / 2, 0.1))
        async def commit_staged_state() -> None:
            """Commit what quiet partitions staged (busy ones commit as their batches come),
            every runner at once: one waiting for its acks holds back none of the others."""

            async def commit(runner: Runner) -> None:
                if app.should_stop:
                    return  # the producer may be closing: what is staged is redone by the next
                try:
                    await runner.commit_if_due()
                except Exception as exc:  # a broker hiccup: staged state and offsets wait
                    if not app.should_stop:
                        log.warning("commit failed, will retry: %r", exc)

            await asyncio.gather(*(commit(runner) for runner in runners))

        control = any(runner.processor.inputs.wall_ticks_lead_ms for runner in runners)
        if (config.idle_s > 0 or control) and config.ticks_by is not None:

            @_every(app, max(config.idle_s / 2, 0.25) if config.idle_s > 0 else 0.5)
            async def tick_idle_partitions() -> None:
                """Advance event time on quiet partitions (engine.time_log, streams.ticks)."""
                for runner in runners:
                    if app.should_stop:
                        return
                    try:
                        await runner.tick_idle_partitions()
                    except Exception as exc:  # a rebalance or a broker hiccup: next round
                        if not app.should_stop:
                            log.warning("no ticks this round: %r", exc)


def _every(app: faust.App, interval_s: float) -> Callable[[Round], Round]:
    """A task running a round `interval_s` after the previous one ended. Not a Faust timer: a
    commit round can outlast its interval under load (acks awaited), which Faust's timers log
    as a warning ("overlapping"); here the next round just starts later."""

    def schedule(fun: Round) -> Round:
        async def rounds() -> None:
            while True:
                await app.sleep(interval_s)  # returns early when the worker stops
                if app.should_stop:
                    return
                await fun()

        rounds.__qualname__ = rounds.__name__ = fun.__name__  # how Faust logs the task
        app.task(rounds)
        return fun

    return schedule


def _records_of(events: Sequence[EventT], topics: Sequence[str]) -> dict[TP, list[Record]]:
    """Faust events' messages as input records (Faust's timestamps are in seconds); a message
    of no input topic (test_context's own channel) is a source record."""
    fetched: dict[TP, list[Record]] = {}
    for event in events:
        m = event.message
        topic = m.topic if m.topic in topics else topics[0]
        record = InputRecord(
            topic, m.partition, m.offset, round(m.timestamp * 1000), m.key, m.value, m.headers
        )
        fetched.setdefault(TP(topic, m.partition), []).append(record)
    return fetched
