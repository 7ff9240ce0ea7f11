"""The clicks processor, WindowedMetrics over aggregate_clicks with sessions and attribution,
driven without a broker by engine.testing.TestDriver (shared by the session, attribution and
staged-commit tests); optionally with the orders processor beside it in the same worker,
forwarding the order facts the clicks side joins.

Real records go in: encoded clicks to the clicks topic, ticks to its time log and order facts
to the app's order facts topic (or OrderCreated events to the orders topic, and ticks to
theirs), each partition p to partition p. What comes out is what the processors sent (window
results, session summaries, late events, dead letters), their committed state, and what their
Redis projection would hold: the real serving.projection staging, applied to a dict instead of
Redis.

Times are ms after EPOCH (a whole hour: panes and hops align), in what goes in and what is read
out; offsets are the broker's. Within one delivery the runner applies side inputs (order
facts) before the source records and the ticks placed among them.

  rig = ClicksRig()
  step = await rig.apply([click(1_000, host="a.example"), tick(5 * MIN)])  # one batch, committed
  step.sessions, step.tumbling, step.attributed, step.progress
  rig.produce(inputs); await rig.driver.pump(batch=3, rng=rng); await rig.crash(land=4)
  rig.emitted()                      # everything sent and shown, by id, for comparing runs
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from itertools import zip_longest
from typing import Any, NamedTuple

import orjson

from agents.clicks import ALL_METRICS, aggregate_clicks
from agents.orders import aggregate_orders
from agents.window_results import counts_of
from agents.windowed import WindowedConfig, WindowedMetrics
from engine.processor import InputRecord, Store
from engine.testing import TestDriver, VirtualClock
from serving import keys
from serving.projection import RedisProjection
from streams.eventtime import parse_timestamp
from streams.late_events import ORDER_LATE
from streams.order_facts import order_facts_value
from streams.retries import Request, request_headers
from streams.ticks import tick_value
from streams.topics import topology
from streams.validation import Limits
from tables.panes import cell_key
from tables.user_sessions import SESSIONS_ENDED
from tables.window_state import BatchOutcome, Progress, progress_key, served
from tables.windows import WindowSpec
from tests.builders import T0, click_bytes, order_json

EPOCH = T0  # 2026-01-05T10:00:00Z
SPEC = WindowSpec(size_ms=60_000, grace_ms=10_000, dedup_horizon_ms=3_600_000, hop_ms=60_000)
GAP = 120_000
MIN = 60_000
# hopping windows of three panes; ids remembered past every run's closing tick (Traffic)
HOPPING = WindowSpec(size_ms=MIN, grace_ms=10_000, dedup_horizon_ms=240 * MIN, hop_ms=3 * MIN)
APP = "app"  # writes the order facts and (its own clock) the ticks
OUTPUTS = ("results", "sessions", "late_events", "dead_letters")


def at(time_ms: int) -> int:
    """Epoch ms of a time after EPOCH."""
    return EPOCH + time_ms


# what goes in


@dataclass(frozen=True)
class Click:
    time_ms: int
    user: str = "u1"
    host: str = ""  # the referrer's host; "" none
    view: bool = True  # a page_view, else an add_to_cart
    url: str = "/p/1"
    event_id: str | None = None  # None: "c<partition>.<offset>"
    partition: int = 0
    version: int = 1  # of the click schema


@dataclass(frozen=True)
class Tick:
    """The clock app's tick: event time reached `time_ms` after the partition's last record
    of `stream` (clicks, or orders)."""

    time_ms: int
    partition: int = 0
    stream: str = "clicks"


@dataclass(frozen=True)
class Order:
    """An OrderCreated on the orders topic (read by the orders processor, when there is one)."""

    time_ms: int
    user: str = "u1"
    currency: str = "USD"
    cents: int = 100
    event_id: str | None = None  # None: "o<partition>.<offset>"
    partition: int = 0


# order id, user, time, currency, cents[, the order's offset in its orders partition]
Fact = tuple[str, str, int, str, int] | tuple[str, str, int, str, int, int]


@dataclass(frozen=True)
class Facts:
    """The orders side's accepted orders and its watermark after them."""

    watermark_ms: int
    orders: tuple[Fact, ...] = ()
    partition: int = 0


@dataclass(frozen=True)
class Malformed:
    """Bytes on the clicks topic that are not a click (a dead letter)."""

    value: bytes = b"{oops"
    partition: int = 0


@dataclass(frozen=True)
class Reinject:
    """A request (`clickstream dead-letters reinject`) to apply the record at `offset` of the
    stream's input partition again (streams.retries)."""

    offset: int
    partition: int = 0
    stream: str = "clicks"
    reason: str = "unknown_schema_version"


Input = Click | Tick | Facts | Malformed | Order | Reinject


def click(time_ms: int, user: str = "u1", host: str = "", view: bool = True, **more: Any) -> Click:
    return Click(time_ms, user, host, view, **more)


def tick(time_ms: int, partition: int = 0, stream: str = "clicks") -> Tick:
    return Tick(time_ms, partition, stream)


def facts(watermark_ms: int, *orders: Fact, partition: int = 0) -> Facts:
    """orders: (order id, user, time, currency, cents[, orders offset])."""
    return Facts(watermark_ms, tuple(orders), partition)


# what comes out


class Summary(NamedTuple):
    """A session summary as sent (agents.session_summaries), times after EPOCH."""

    user: str
    start_ms: int
    end_ms: int
    clicks: int
    page_views: int
    entry_host: str
    ended_in_ms: int


@dataclass
class Step:
    """What one `apply` sent, and the committed progress after it."""

    sessions: list[Summary]
    tumbling: dict[int, dict[str, list[int]]]  # clicks windows: start -> counts (no sketches)
    hopping: dict[int, dict[str, list[int]]]
    attributed: dict[tuple[int, str], list[int]]  # (pane start, dimension) -> [orders, cents]
    late: list[str]  # event ids of late clicks
    late_orders: list[str]  # order ids whose facts came after their pane's attribution
    dead_letters: list[str]  # reasons
    progress: Progress


@dataclass
class Emitted:
    """Everything a run sent, by id (each id with one content), and what it left shown and
    counted: equal for two runs that emitted exactly the same."""

    results: dict[str, bytes]  # window and attribution results (progress records aside)
    sessions: dict[str, bytes]
    late_events: dict[str, bytes]
    dead_letters: dict[str, tuple[bytes | None, bytes]]  # id -> (value, reason)
    counters: dict[tuple[str, int], dict[str, int]]  # (stream, p) -> watermark_ms, COUNTERS
    shown: dict[str, dict[Any, Any]]  # the Redis projection: key -> field -> value


class NoRedis:
    """The client RedisProjection is built with; this sink never sends through it."""

    def register_script(self, script: str) -> None:
        return None


class ProjectionSink:
    """An engine.processor.Sink: the real projection's staging (serving.projection), flushed
    into a dict as its HSETs would leave Redis (no retention). A crash loses what is pending."""

    def __init__(self, stream: str, shown: dict[str, dict[Any, Any]]) -> None:
        self.projection = RedisProjection(NoRedis(), APP, stream, retention_ms=1 << 60)
        self.shown = shown  # Redis, shared by the worker's sinks
        self.staged: list[BatchOutcome] = []  # since the last flush
        self.redis_lost = False  # set: the next question says Redis lost it all

    def stage(self, staged: Sequence[Any]) -> None:
        self.staged += staged
        self.projection.stage(staged)

    async def flush(self) -> bool:
        for key, fields in self.projection.pending.items():
            self.shown.setdefault(key, {}).update(fields)
        self.projection.pending.clear()
        self.projection.windows.clear()
        self.staged.clear()
        return True

    def assigned(self, partitions: set[int]) -> None:
        self.staged.clear()  # the runner discarded them
        self.projection.keep_only(partitions)  # as agents.windowed.WindowedSink does

    async def lost(self) -> bool:
        lost, self.redis_lost = self.redis_lost, False
        return lost

    def restate(self, partition: int, state: Store) -> None:
        self.projection.stage([served(partition, state)])
        self.projection.acknowledge(partition, "epoch")

    def died(self) -> None:
        """The worker died: its memory is gone."""
        self.projection.pending.clear()
        self.projection.windows.clear()
        self.staged.clear()


class ClicksRig:
    """The clicks processor over `partitions` partitions (with `orders_side`, the orders
    processor too, `first` in the worker's commit order), the driver and the sinks."""

    def __init__(
        self,
        spec: WindowSpec = SPEC,
        gap_ms: int = GAP,
        partitions: int = 1,
        commit_s: float = 3600.0,
        metrics: frozenset[str] = ALL_METRICS,
        orders_side: bool = False,
        first: str = "clicks",
    ) -> None:
        self.topics = topology(APP, "clicks", "orders", partitions)
        config = WindowedConfig(spec, Limits(), self.topics, APP, APP, gap_ms)
        self.redis: dict[str, dict[Any, Any]] = {}  # what the sinks' flushes left there
        self.sink = ProjectionSink("clicks", self.redis)
        self.clicks = WindowedMetrics(aggregate_clicks(metrics), config, self.sink)
        self.streams = {"clicks": self.clicks}
        self.sinks = {"clicks": self.sink}
        if orders_side:
            self.sinks["orders"] = ProjectionSink("orders", self.redis)
            kind, orders_config = aggregate_orders(True), replace(config, session_gap_ms=None)
            self.streams["orders"] = WindowedMetrics(kind, orders_config, self.sinks["orders"])
            if first == "orders":
                self.streams = {"orders": self.streams["orders"], "clicks": self.clicks}
        clock = VirtualClock(wall=(EPOCH + 86_400_000) / 1000)  # records stamped a day later
        processors = list(self.streams.values())
        # it writes its time log (copies of re-injected events), but no idle ticks (idle_s 0)
        self.driver = TestDriver(processors, partitions, commit_s, ticks_by=APP, clock=clock)
        self.partitions = partitions

    # in

    def produce(self, inputs: Iterable[Input]) -> None:
        driver, clicks = self.driver, self.clicks.inputs
        orders_topic, facts_topic = self.topics.orders.name, self.topics.order_facts.name
        for item in inputs:
            p = item.partition
            if isinstance(item, Click):
                offset = len(driver.broker.log(clicks.source, p))
                value = click_bytes(
                    event_id=item.event_id or f"c{p}.{offset}",
                    type="page_view" if item.view else "add_to_cart",
                    user_id=item.user,
                    url=item.url,
                    referrer=f"https://{item.host}/landing" if item.host else None,
                    occurred_at_ms=at(item.time_ms),
                )
                if item.version != 1:
                    value = orjson.dumps({**orjson.loads(value), "version": item.version})
                driver.produce(clicks.source, value, p, key=item.user.encode())
            elif isinstance(item, Order):
                offset = len(driver.broker.log(orders_topic, p))
                body = order_json(
                    event_id=item.event_id or f"o{p}.{offset}",
                    order_id=zlib.crc32(f"{p}/{offset}".encode()),
                    user_id=item.user,
                    currency=item.currency,
                    amount_cents=item.cents,
                    occurred_at_ms=at(item.time_ms),
                )
                driver.produce(orders_topic, orjson.dumps(body), p, key=item.user.encode())
            elif isinstance(item, Malformed):
                driver.produce(clicks.source, item.value, p, key=b"?")
            elif isinstance(item, Reinject):
                source = clicks.source if item.stream == "clicks" else orders_topic
                original = driver.broker.log(source, p)[item.offset]
                request = Request(source, p, item.offset, original.timestamp)
                headers = request_headers(request, item.reason)
                retry = self.topics.retry.name
                driver.produce(retry, original.value, p, key=original.key, headers=headers)
            elif isinstance(item, Tick):
                source, time_log = self.topics.clicks, self.topics.clicks_ticks
                if item.stream == "orders":
                    source, time_log = self.topics.orders, self.topics.orders_ticks
                after = len(driver.broker.log(source.name, p)) - 1
                driver.produce(time_log.name, tick_value(at(item.time_ms), after, APP), p)
            else:
                orders = [(i, u, at(t), c, cents, *o) for i, u, t, c, cents, *o in item.orders]
                value = order_facts_value(orders, at(item.watermark_ms), APP)
                driver.produce(facts_topic, value, p)

    async def apply(self, inputs: Iterable[Input]) -> Step:
        """The inputs produced, delivered as one batch per partition, and committed; what the
        clicks side sent."""
        before = {name: len(self.driver.outputs(name)) for name in OUTPUTS}
        self.produce(inputs)
        await self.driver.pump()
        await self.driver.commit()
        new = {name: self.driver.outputs(name)[before[name] :] for name in OUTPUTS}
        return _step(new, self.progress())

    # the worker's fate

    async def commit(self) -> None:
        await self.driver.commit()

    async def crash(self, land: int | None = None) -> None:
        """The worker dies (with `land`: during a commit, after that many state writes)."""
        await self.driver.crash(land)
        for sink in self.sinks.values():
            sink.died()

    def rebalance(self) -> None:
        self.driver.rebalance()
        for sink in self.sinks.values():
            sink.staged.clear()

    def staged_writes(self) -> int:
        """State writes the next commit would make (the first processor's, in the worker's
        order, with something staged): the keys staged since its last commit."""
        for sink in (self.sinks[stream] for stream in self.streams):
            keys_ = {(out.partition, key) for out in sink.staged for key in out.writes}
            if keys_:
                return len(keys_)
        return 0

    def caught_up(self) -> bool:
        """Every input record is committed."""
        driver = self.driver
        return all(
            (driver.committed(topic, p) or 0) == len(driver.broker.log(topic, p))
            for processor in self.streams.values()
            for topic in processor.inputs.topics()
            for p in range(self.partitions)
        )

    # out

    def state(self, partition: int = 0, stream: str = "clicks") -> dict[bytes, bytes]:
        return self.driver.state(partition, processor=self.streams[stream])

    def progress(self, partition: int = 0, stream: str = "clicks") -> Progress:
        return Progress.decode(self.state(partition, stream).get(progress_key(partition)))

    def ended(self, pane_ms: int, partition: int = 0) -> list[int]:
        """The committed sessions|ended cell of a pane: [sessions, bounces, duration ms]."""
        raw = self.state(partition).get(cell_key(partition, at(pane_ms), SESSIONS_ENDED))
        return orjson.loads(raw)["v"] if raw else [0, 0, 0]

    def shown(self, metric: str, pane_ms: int, partition: int = 0) -> dict[str, Any]:
        """What the projection left in Redis for a pane's metric, this partition's fields."""
        fields = self.redis.get(keys.window(APP, metric, at(pane_ms)), {})
        mine = f"{partition}{keys.SEP}"
        return {f[len(mine) :]: v for f, v in fields.items() if f.startswith(mine)}

    def emitted(self) -> Emitted:
        driver = self.driver
        results = _by_id(driver.outputs("results"))
        counters = {
            (stream, p): {
                name: getattr(self.progress(p, stream), name)
                for name in ("watermark_ms", *Progress.COUNTERS)
            }
            for stream in sorted(self.streams)
            for p in range(self.partitions)
        }
        letters: dict[str, tuple[bytes | None, bytes]] = {}
        for record in driver.outputs("dead_letters"):
            headers = dict(record.headers)
            letter = (record.value, headers["reason"])
            assert letters.setdefault(headers["id"].decode(), letter) == letter
        return Emitted(
            results={i: v for i, v in results.items() if i.split("/")[1] != "progress"},
            sessions=_by_id(driver.outputs("sessions")),
            late_events=_by_id(driver.outputs("late_events")),
            dead_letters=letters,
            counters=counters,
            shown=self.redis,
        )


def _by_id(records: Iterable[InputRecord]) -> dict[str, bytes]:
    """Records by their JSON id; one id never carries two different contents."""
    by_id: dict[str, bytes] = {}
    for record in records:
        assert record.value is not None
        rid = orjson.loads(record.value)["id"]
        assert by_id.setdefault(rid, record.value) == record.value, f"{rid} sent differently"
    return by_id


def _rel(text: str) -> int:
    return parse_timestamp(text) - EPOCH


def _step(new: dict[str, list[InputRecord]], progress: Progress) -> Step:
    step = Step([], {}, {}, {}, [], [], [], progress)
    for record in new["sessions"]:
        s = orjson.loads(record.value or b"")
        step.sessions.append(
            Summary(
                s["user_id"],
                _rel(s["start"]),
                _rel(s["end"]),
                s["clicks"],
                s["page_views"],
                s["entry_referrer"] or "",
                _rel(s["ended_in"]),
            )
        )
    for record in new["results"]:
        result = orjson.loads(record.value or b"")
        if result["kind"] == "progress":
            continue
        start, counts = _rel(result["start"]), counts_of(result)
        if result["stream"] == "attribution":
            step.attributed.update(((start, d), v) for d, v in counts.items())
        elif result["stream"] == "clicks":
            (step.tumbling if result["kind"] == "tumbling" else step.hopping)[start] = counts
    for record in new["late_events"]:
        late = orjson.loads(record.value or b"")
        (step.late_orders if late["reason"] == ORDER_LATE else step.late).append(late["event_id"])
    step.dead_letters = [dict(r.headers)["reason"].decode() for r in new["dead_letters"]]
    return step


# whole runs, for comparing


def traffic(rng: random.Random, partitions: int = 2, **shape: Any) -> list[Input]:
    """Each partition's Traffic, interleaved as it was produced."""
    each = zip_longest(*(Traffic(rng, p, **shape).build() for p in range(partitions)))
    return [item for items in each for item in items if item is not None]


async def steady(inputs: Sequence[Input], **rig: Any) -> Emitted:
    """The uninterrupted live run: each input produced, delivered and committed in turn."""
    run = ClicksRig(commit_s=0.0, **rig)
    for item in inputs:
        run.produce([item])
        await run.driver.pump()
    assert run.caught_up()
    return run.emitted()


async def chaotic(inputs: Sequence[Input], rng: random.Random, **rig: Any) -> Emitted:
    """Every input produced up front, then fetched in random splits of the partitions and
    topics; several batches staged per commit; a third of the commits cut short after a random
    number of their state writes (the worker dies: a new one resumes from the committed
    offsets), some workers killed between batches, some rebalances."""
    run = ClicksRig(**rig)
    run.produce(inputs)
    await chaos(run, rng)
    return run.emitted()


async def chaos(run: ClicksRig, rng: random.Random) -> None:
    """`run` delivers what is produced in random fetches, with crashes and rebalances (above),
    until it is caught up."""
    while not run.caught_up():
        for _ in range(rng.randint(1, 6)):  # batches staged in one commit interval
            await run.driver.pump(rng.randint(1, 40), batch=rng.randint(1, 25), rng=rng)
            if rng.random() < 0.03:
                run.rebalance()
        fate = rng.random()
        if fate < 0.3:
            staged = run.staged_writes()
            commits = len(run.driver.broker.commits)
            await run.crash(land=rng.randint(0, staged))
            if len(run.driver.broker.commits) > commits:  # something was staged
                cut = run.driver.broker.commits[-1]
                assert sum(len(w) for w in cut.step.writes.values()) == staged
                assert not cut.acked
        elif fate < 0.35:
            await run.crash()
        else:
            await run.commit()


@dataclass
class Traffic:
    """Random clicks of one partition (some duplicated, out of order, late or malformed), ticks
    now and then, and orders among them (some sent twice), lagging or leading the clicks: as
    the facts an orders partition forwards, or (`real_orders`) as OrderCreated events and
    ticks for the orders processor, a few of them late on the orders side. Closed by ticks (and
    facts) far ahead."""

    rng: random.Random
    partition: int = 0
    users: int = 8
    clicks: int = 600
    span_ms: int = 60 * MIN
    duplicates: bool = True  # False: every click and order (fact) once
    real_orders: bool = False
    orders_share: float = 0.08  # of the draws that send orders rather than a click
    inputs: list[Input] = field(default_factory=list)

    def build(self) -> list[Input]:
        rng, p = self.rng, self.partition
        users = [f"u{p}.{i}" for i in range(self.users)]
        times = sorted(rng.randrange(0, self.span_ms) for _ in range(self.clicks))
        sent: list[Click] = []
        again: list[Input] = []  # the last orders (or their facts), to send again
        orders_watermark, clicks_watermark = -1, -1
        for n, t in enumerate(times):
            chance = rng.random()
            if chance < self.orders_share:
                if self.duplicates and again and rng.random() < 0.3:
                    self.inputs += again
                    continue
                if self.real_orders and rng.random() < 0.1:  # its pane closed on its side
                    when = max(orders_watermark - 5 * MIN, 0)
                    self.inputs.append(
                        Order(when, rng.choice(users), event_id=f"o{p}.{n}", partition=p)
                    )
                    continue
                # orders on time on their own side: not older than the watermark they follow
                shift = rng.choice([-3 * MIN, 0, 2 * MIN])
                first = max(t + shift + rng.randrange(-5_000, 5_000), orders_watermark, 0)
                times_of = [first, *(first + rng.randrange(0, 5_000) for _ in range(3))]
                orders = tuple(
                    (f"o{p}.{n}.{i}", rng.choice(users), time, rng.choice(["USD", "EUR"]), 100)
                    for i, time in enumerate(times_of[: rng.randint(1, 4)])
                )
                orders_watermark = max(orders_watermark, *(o[2] for o in orders))
                if self.real_orders:
                    again = [
                        Order(time, user, c, cents, i, p) for i, user, time, c, cents in orders
                    ]
                else:
                    again = [facts(orders_watermark, *orders, partition=p)]
                self.inputs += again
                continue
            chance -= self.orders_share
            if chance < 0.02 and sent and self.duplicates:  # an earlier click again
                self.inputs.append(rng.choice(sent))
            elif 0.02 <= chance < 0.03:
                self.inputs.append(Malformed(partition=p))
            elif 0.03 <= chance < 0.04:  # the clock app: a partition went idle for a while
                if self.real_orders and rng.random() < 0.5:
                    orders_watermark = max(orders_watermark, t) + rng.randrange(0, 20_000)
                    self.inputs.append(tick(orders_watermark, p, "orders"))
                else:
                    self.inputs.append(tick(max(clicks_watermark, t) + rng.randrange(20_000), p))
            else:
                t += rng.choice([0, 0, 0, -20_000, -65_000, -200_000])
                c = Click(
                    max(t, 0),
                    rng.choice(users),
                    rng.choice(["a.example", "b.example", ""]),
                    rng.random() < 0.8,
                    rng.choice(["/a", "/b"]),
                    f"e{p}.{n}",
                    p,
                )
                sent.append(c)
                clicks_watermark = max(clicks_watermark, c.time_ms)
                self.inputs.append(c)
        end = self.span_ms + 140 * MIN
        closing = tick(end, p, "orders") if self.real_orders else facts(end, partition=p)
        return [*self.inputs, tick(end, p), closing]
