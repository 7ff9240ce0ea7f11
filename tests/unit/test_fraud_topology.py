"""The fraud processors (agents.fraud) as one worker's topology on the in-memory broker: seeded
traffic with its fraud scenarios, duplicates, late and malformed events, fetched in random
interleavings, with crashes in the middle of commits; every accepted order scored once, each
score and feature equal to the oracle's (tests.fraud_oracle)."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace

import orjson
import pytest

from agents.clicks import aggregate_clicks
from agents.fraud import (
    DAY_MS,
    ProfileOrders,
    ScoreOrders,
    click_forwarder,
    order_forwarder,
    policy_forwarder,
)
from agents.orders import aggregate_orders
from agents.windowed import WindowedConfig, WindowedMetrics
from engine.repartition import partition_of
from engine.testing import TestDriver
from fraud.features import FEATURES, PROFILE_TTL_MS, Order
from fraud.policy import DEFAULT_POLICY, load_policy
from generator.config import GeneratorConfig
from generator.emission import Emission
from generator.produce import partition_for
from generator.simulate import simulate
from streams import upcast, validation
from streams.eventtime import parse_timestamp
from streams.fraud import PANE_COUNTS, part_value, progress_value, score_bucket
from streams.fraud_policy import policy_record_value
from streams.records import ORDER_SCHEMA
from streams.retries import Request, request_headers
from streams.ticks import tick_value
from streams.topics import topology
from streams.validation import Limits
from tables.window_state import Progress, progress_key
from tables.windows import WindowSpec
from tests import fraud_oracle
from tests.fraud_oracle import expected_scores, released

APP, PARTITIONS, PANE = "app", 3, 5_000  # short panes: crashes fall inside them
TOPICS = topology(APP, "clicks", "orders", PARTITIONS)
LIMITS = Limits(max_future_skew_ms=300_000)
POLICY = load_policy(DEFAULT_POLICY, FEATURES)
STREAMS = (
    (TOPICS.clicks, TOPICS.clicks_ticks),
    (TOPICS.orders, TOPICS.orders_ticks),
    (TOPICS.fraud_policy, TOPICS.fraud_policy_ticks),
)
SPEC = WindowSpec(size_ms=60_000, grace_ms=30_000, dedup_horizon_ms=3_600_000, hop_ms=300_000)


def fraud_topology(
    with_windows: bool = False, ticks: bool = False
) -> tuple[TestDriver, ScoreOrders]:
    """The fraud processors; `with_windows`: after the windowed metrics of both streams, as the
    worker has them (they read the same inputs and time logs, and write the ticks)."""
    scorer = ScoreOrders(TOPICS, POLICY, PANE, PaneSink())
    processors: list = [
        click_forwarder(TOPICS, LIMITS, APP),
        order_forwarder(TOPICS, LIMITS, APP),
        policy_forwarder(TOPICS, LIMITS, APP),
        ProfileOrders(TOPICS),
        scorer,
    ]
    if with_windows:
        config = WindowedConfig(SPEC, LIMITS, TOPICS, APP, APP, 1_800_000)
        processors[:0] = [
            WindowedMetrics(aggregate_clicks(), config, None),
            WindowedMetrics(aggregate_orders(True), replace(config, session_gap_ms=None), None),
        ]
    idle = {"idle_s": 1.0, "ticks_by": APP, "max_skew_ms": LIMITS.max_future_skew_ms}
    driver = TestDriver(processors, partitions=PARTITIONS, commit_s=2.0, **(idle if ticks else {}))
    return driver, scorer


class PaneSink:
    """The scorer's sink as Redis holds it: the newest flushed counts per (partition, pane)."""

    def __init__(self) -> None:
        self.pending: dict[tuple[int, int], list[int]] = {}
        self.panes: dict[tuple[int, int], list[int]] = {}
        self.alerts: dict[str, bytes] = {}

    def stage(self, staged) -> None:
        for out in staged:
            self.pending.update(((out.partition, s), c) for s, c in out.panes.items())
            self.alerts.update((order, body) for order, _, body in out.alerts)

    async def flush(self) -> bool:
        self.panes.update(self.pending)
        self.pending.clear()
        return True

    def assigned(self, partitions: set[int]) -> None:
        pass

    async def lost(self) -> bool:
        return False

    def restate(self, partition: int, state: object) -> None:
        pass


def pane_counts(want: dict[str, dict]) -> dict[tuple[int, int], list[int]]:
    """(scorer partition, pane start) -> orders, alerts, orders per score bucket."""
    out: dict[tuple[int, int], list[int]] = {}
    for event_id, body in want.items():
        at = (partition_of(event_id.encode(), PARTITIONS), body["time_ms"] // PANE * PANE)
        counts = out.setdefault(at, [0] * PANE_COUNTS)
        counts[0] += 1
        counts[1] += body["alert"]
        counts[2 + score_bucket(body["score"])] += 1
    return out


def traffic(seed: int, count: int) -> list[Emission]:
    config = GeneratorConfig(seed=seed, count=count, events_per_second=50, fraud_rate=0.15)
    return list(simulate(config))


def produce(driver: TestDriver, emissions: list[Emission]) -> None:
    """Each record to the partition of its key."""
    for e in emissions:
        topic = TOPICS.clicks.name if e.stream == "clicks" else TOPICS.orders.name
        partition = partition_for(e.key, list(range(PARTITIONS)))
        driver.produce(topic, e.value, partition, key=e.key, timestamp_ms=e.emit_at_ms)


def tick_everything(driver: TestDriver, at_ms: int) -> None:
    for spec, ticks in STREAMS:
        for p in range(PARTITIONS):
            after = len(driver.broker.log(spec.name, p)) - 1
            driver.produce(ticks.name, tick_value(at_ms, after, APP), p, timestamp_ms=at_ms)


def expected(driver: TestDriver, leaving_out: set[tuple[int, int]] = frozenset()) -> dict:
    """The oracle's scores over the logs, without the orders at `leaving_out` (partition,
    offset): dead letters when they came, whatever today's code says of them."""
    log = driver.broker.log

    def records(spec, p):  # a left-out order keeps its place, as a record of no event
        left = leaving_out if spec is TOPICS.orders else set()
        return [replace(r, value=b"") if (p, r.offset) in left else r for r in log(spec.name, p)]

    logs = {
        spec.name: (
            [records(spec, p) for p in range(PARTITIONS)],
            [log(ticks.name, p) for p in range(PARTITIONS)],
        )
        for spec, ticks in STREAMS
    }
    return expected_scores(released(logs, LIMITS), POLICY, PARTITIONS)


def scored(driver: TestDriver, scorer: ScoreOrders) -> dict[str, dict]:
    """Event id -> the scored order; a repeated one must repeat the same record."""
    out: dict[str, dict] = {}
    for record in driver.outputs("scored", processor=scorer):
        body = orjson.loads(record.value)
        assert out.setdefault(body["event_id"], body) == body, body["event_id"]
    return out


def compared(got: dict[str, dict], want: dict[str, dict]) -> None:
    assert got.keys() == want.keys()
    for event_id, body in got.items():
        expect = want[event_id]
        assert body["features"] == expect["features"], event_id
        assert (body["score"], body["alert"]) == (expect["score"], expect["alert"])
        assert body["policy_version"] == expect["version"]


async def run(
    seed: int, crashes: bool, with_windows: bool = False, ticks: bool = False
) -> tuple[TestDriver, ScoreOrders]:
    """`ticks`: idle partitions get ticks as they go (written by the first reader of each time
    log, handed to the others at once); the crashes cut any processor's commit short."""
    rng = random.Random(seed)
    driver, scorer = fraud_topology(with_windows, ticks)
    emissions = traffic(seed, 5000)
    last = max(e.emit_at_ms for e in emissions)
    rounds = 60
    for i in range(rounds):  # the traffic comes while the worker runs: partitions catch up
        produce(
            driver, emissions[i * len(emissions) // rounds : (i + 1) * len(emissions) // rounds]
        )
        await driver.pump(rng.randrange(20, 200), rng=rng)
        driver.advance(rng.random() * 2)
        await driver.commit_if_due()
        if ticks and rng.random() < 0.3:
            await driver.tick()
        if crashes and rng.random() < 0.1:
            await driver.crash(land=rng.randrange(0, 20), after=rng.randrange(0, 4))
    tick_everything(driver, last + 3_600_000)
    await driver.settle(rng=rng)
    return driver, scorer


@pytest.mark.parametrize("seed", range(3))
async def test_every_order_is_scored_once_as_the_oracle_scores_it(seed):
    driver, scorer = await run(seed, crashes=False)
    got, want = scored(driver, scorer), expected(driver)
    compared(got, want)
    assert len(got) > 20 and any(b["alert"] for b in got.values())


@pytest.mark.parametrize("seed", range(4))
async def test_crashes_in_the_middle_of_commits_change_no_score(seed):
    """With ticks (the policy log's among them), orders are released and scored between the
    crashes, not only once the run is over."""
    driver, scorer = await run(seed + 10, crashes=True, ticks=seed % 2 == 0)
    assert driver.restarts > 0
    compared(scored(driver, scorer), expected(driver))


@pytest.mark.parametrize("seed", range(3))
async def test_the_alert_rate_and_score_distribution_per_pane_count_each_order_once(seed):
    """What the sink got last per (partition, pane), as Redis would hold it, equals the
    oracle's counts, though crashes redid batches and rescored orders whose mark was lost."""
    driver, scorer = await run(seed + 60, crashes=True, ticks=True)
    assert driver.restarts > 0
    want = expected(driver)
    assert scorer.sink.panes == pane_counts(want)
    assert {orjson.loads(b)["event_id"] for b in scorer.sink.alerts.values()} == {
        event_id for event_id, body in want.items() if body["alert"]
    }


@pytest.mark.parametrize(("seed", "caught_up"), [(0, True), (1, True), (2, False)])
async def test_months_of_sparse_history_forget_keys_unseen_for_the_ttl_and_stay_bounded(
    seed, caught_up
):
    """400 days of sparse traffic in event-time order, with crashes: a user, card, IP or device
    back after more than the TTL starts afresh (the oracle forgets it too, and the scores
    differ from never forgetting), and the stored profiles are those seen within the TTL of
    the watermark (a day's slack), each indexed once under the day it was last seen.
    `caught_up` False: the policy log holds everything back until the end, which is then
    released at once (a worker started on months already in the log): profile partitions
    race days apart, and no order whose parts come late is taken for abandoned."""
    rng = random.Random(seed)
    days = 400
    config = GeneratorConfig(
        seed=seed + 70, duration_s=days * 86_400, events_per_second=4_000 / (days * 86_400),
        users=100, fraud_rate=0.1, out_of_order_rate=0, late_rate=0, malformed_rate=0,
    )  # fmt: skip
    emissions = list(simulate(config))
    driver, scorer = fraud_topology(ticks=True)
    for i in range(0, len(emissions), 100):
        chunk = emissions[i : i + 100]
        produce(driver, chunk)
        policy, policy_ticks = STREAMS[2]  # the policy log ahead, as the wall clock is live
        for p in range(PARTITIONS if caught_up else 0):
            after = len(driver.broker.log(policy.name, p)) - 1
            at = chunk[-1].emit_at_ms + 3_600_000
            driver.produce(policy_ticks.name, tick_value(at, after, APP), p, timestamp_ms=at)
        await driver.pump(rng.randrange(20, 200), rng=rng)
        await driver.commit_if_due()
        await driver.tick()
        if rng.random() < 0.2:
            await driver.crash(land=rng.randrange(0, 20), after=rng.randrange(0, 4))
    last = max(e.emit_at_ms for e in emissions)
    tick_everything(driver, last + 3_600_000)
    await driver.settle(rng=rng)
    tick_everything(driver, last + 2 * DAY_MS)  # a day passes: stale profiles are deleted
    await driver.settle(rng=rng)
    assert driver.restarts > 0
    got, want = scored(driver, scorer), expected(driver)
    compared(got, want)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fraud_oracle, "PROFILE_TTL_MS", 10**15)
        never_forgetting = expected(driver)
    assert any(never_forgetting[i]["features"] != want[i]["features"] for i in want)

    profiler = driver.processors[3]
    for p in range(PARTITIONS):
        state = driver.state(p, profiler)
        watermark = profiler.position(p, state).watermark_ms
        profiles = {k: orjson.loads(v) for k, v in state.items() if k.startswith(b"P|")}
        assert profiles
        assert all(watermark - v["r"] <= PROFILE_TTL_MS + DAY_MS for v in profiles.values())
        indexed = sorted(k[len(b"X|0|000000|") :] for k in state if k.startswith(b"X|"))
        assert indexed == sorted(profiles)


@pytest.mark.parametrize("seed", range(3))
async def test_beside_the_windowed_metrics_on_the_same_inputs_both_stay_exact(seed):
    """Two processors per input topic and time log: a topic's offsets are committed only once
    both have saved what they read, so no crash loses a record for either."""
    calm, _ = await run(seed + 30, crashes=False, with_windows=True)
    driver, scorer = await run(seed + 30, crashes=True, with_windows=True)
    assert driver.restarts > 0
    compared(scored(driver, scorer), expected(driver))
    for i in range(2):
        calm_windowed, windowed = calm.processors[i], driver.processors[i]
        assert windowed_counts(driver, windowed) == windowed_counts(calm, calm_windowed)
        assert results(driver, windowed) == results(calm, calm_windowed)


@pytest.mark.parametrize("seed", range(4))
async def test_idle_ticks_written_by_one_reader_of_a_time_log_place_alike_for_all(seed):
    """The windowed metrics write the ticks; the fraud forwarders get each one at once, at the
    offset it follows, as a replay of the time log applies it: scores equal the oracle's over
    the logs, and every record is counted once by the windowed side, crashes or not."""
    calm, _ = await run(seed + 40, crashes=False, with_windows=True)
    driver, scorer = await run(seed + 40, crashes=True, with_windows=True, ticks=True)
    ticks = [r for _, t in STREAMS for r in driver.broker.records(t.name)]
    assert driver.restarts > 0 and len(ticks) > 2 * PARTITIONS  # more than the closing ones
    compared(scored(driver, scorer), expected(driver))
    for i in range(2):  # each record once: accepted, duplicate, late or a dead letter
        calm_windowed, windowed = calm.processors[i], driver.processors[i]
        assert records_counted(driver, windowed) == records_counted(calm, calm_windowed)


def records_counted(driver: TestDriver, windowed) -> int:
    counts = windowed_counts(driver, windowed)
    return sum(c["accepted"] + c["duplicates"] + c["late"] + c["dead_letters"] for c in counts)


EXACT_COUNTERS = ("accepted", "duplicates", "late", "dead_letters", "late_orders")  # not records


def windowed_counts(driver: TestDriver, windowed) -> list[dict]:
    progress = [Progress.decode(driver.state(p, windowed)[progress_key(p)]) for p in range(3)]
    return [{c: getattr(pr, c) for c in EXACT_COUNTERS} for pr in progress]


def results(driver: TestDriver, windowed) -> dict[str, dict]:
    """The window results by id (progress records depend on batching: not compared)."""
    out: dict[str, dict] = {}
    for record in driver.outputs("results", processor=windowed):
        body = orjson.loads(record.value)
        if body["kind"] != "progress":
            assert out.setdefault(body["id"], body) == body, body["id"]
    return out


async def test_a_policy_published_while_running_scores_the_orders_after_it_by_event_time():
    """Version 2 (every signal weighs double) takes effect at the middle of the traffic's
    event time; it comes while the worker runs, before the orders after it: the orders
    before carry version 1 and its scores, the orders after version 2 and its, as the oracle
    computes them over the logs (a replay of the same logs gives the same)."""
    emissions = traffic(50, 5000)
    middle = sorted(e.label["occurred_at_ms"] or 0 for e in emissions)[len(emissions) // 2]
    doubled = replace(
        POLICY,
        version=2,
        signals=tuple(replace(signal, weight=signal.weight * 2) for signal in POLICY.signals),
    )
    driver, scorer = fraud_topology()
    produce(driver, emissions[:1000])
    await driver.settle()
    for p in range(PARTITIONS):
        driver.produce(TOPICS.fraud_policy.name, policy_record_value(doubled, middle, APP), p)
    produce(driver, emissions[1000:])
    tick_everything(driver, max(e.emit_at_ms for e in emissions) + 3_600_000)
    await driver.settle()
    got = scored(driver, scorer)
    compared(got, expected(driver))
    versions = Counter(
        (body["policy_version"], parse_timestamp(body["occurred_at"]) >= middle)
        for body in got.values()
    )
    assert versions.keys() == {(1, False), (2, True)}, versions


async def test_alerts_are_the_scored_orders_at_or_over_the_threshold_with_their_reasons():
    driver, scorer = await run(20, crashes=False)
    got = scored(driver, scorer)
    alerts = {orjson.loads(r.value)["event_id"]: orjson.loads(r.value)
              for r in driver.outputs("alerts", processor=scorer)}  # fmt: skip
    assert alerts.keys() == {i for i, b in got.items() if b["score"] >= POLICY.threshold}
    for event_id, alert in alerts.items():
        assert alert["id"] == f"alert/{event_id}" and alert["reasons"] == got[event_id]["reasons"]
        assert alert["reasons"], alert
    reasons = Counter(reason for body in got.values() for reason in body["reasons"])
    assert reasons  # what fires, for a reader of a failure


async def test_a_part_sent_again_after_its_order_was_scored_scores_nothing_and_waits_nowhere():
    scorer = ScoreOrders(TOPICS, POLICY)
    driver = TestDriver(scorer, partitions=PARTITIONS, commit_s=60.0)
    t = 1_767_225_600_000

    def order(n: int, at: int) -> Order:  # no card, address or device: one part, the user's
        return Order(f"e{n}", n, "u1", at, 2_000, "EUR", None, None, None, None)

    def send_part(o: Order) -> None:
        value = part_value("user", o, {"user_orders_10m": 1}, 0)
        driver.produce(TOPICS.fraud_parts.name, value, 0, key=o.event_id.encode())

    send_part(order(1, t))
    await driver.settle()
    send_part(order(1, t))  # the profile's commit was cut short: the part again
    await driver.settle()
    assert [orjson.loads(r.value)["event_id"] for r in driver.outputs("scored")] == ["e1"]
    state = driver.state(0)
    assert not [k for k in state if k.startswith(b"S|")] and b"D|0|e1" in state
    send_part(order(2, t + 25 * 3_600_000))
    await driver.settle()
    assert b"D|0|e1" in driver.state(0)  # the profiles' front has not moved

    def send_front(at: int) -> None:
        for q in range(PARTITIONS):
            driver.produce(TOPICS.fraud_parts.name, progress_value(q, at), 0)

    send_front(t + 25 * 3_600_000)  # every profile partition past a day later
    send_front(t + 26 * 3_600_000)
    await driver.settle()
    assert b"D|0|e1" not in driver.state(0) and b"D|0|e2" in driver.state(0)
    assert not driver.outputs("dead_letters")


async def test_orders_reinjected_once_their_version_is_known_are_scored_once_as_the_oracle_has_it(
    monkeypatch,
):
    """OrderCreated v3 before the app knows it: dead letters, unscored. A release makes v3
    current (v2 upcast to it); each v3 order is re-injected (some twice) and scored once, as
    the oracle scores it from the logs: the copies in the time logs at their places, the
    originals as the dead letters they were. The run crashes inside commits now and then."""
    rng = random.Random(7)
    driver, scorer = fraud_topology(with_windows=True, ticks=True)
    emissions = traffic(7, 3000)
    for i, e in enumerate(emissions):
        body = orjson.loads(e.value) if e.stream == "orders" else None
        if isinstance(body, dict) and body.get("version") == 2 and rng.random() < 0.4:
            emissions[i] = replace(e, value=orjson.dumps({**body, "version": 3}))
    produce(driver, emissions)
    await driver.settle(rng=rng)
    orders = TOPICS.orders.name
    unknown = [
        r
        for p in range(PARTITIONS)
        for r in driver.broker.log(orders, p)
        if b'"version":3' in (r.value or b"")
    ]
    assert len(unknown) > 20 and not (scored(driver, scorer).keys() & _ids(unknown))

    monkeypatch.setattr(validation, "ORDER_VERSION", 3)  # the release
    monkeypatch.setitem(upcast.UPCASTERS, (ORDER_SCHEMA, 2), lambda b: {**b, "version": 3})
    for r in [*unknown, *rng.sample(unknown, len(unknown) // 3)]:
        request = Request(orders, r.partition, r.offset, r.timestamp)
        headers = request_headers(request, "unknown_schema_version")
        driver.produce(TOPICS.retry.name, r.value, r.partition, r.key, headers=headers)
        await driver.pump(rng.randrange(1, 50), rng=rng)
        if rng.random() < 0.2:
            await driver.crash(land=rng.randrange(0, 20), after=rng.randrange(0, 3))
    await driver.settle(rng=rng)
    tick_everything(driver, max(e.emit_at_ms for e in emissions) + 3_600_000)
    await driver.settle(rng=rng)
    got = scored(driver, scorer)
    assert _ids(unknown) <= got.keys()
    compared(got, expected(driver, leaving_out={(r.partition, r.offset) for r in unknown}))


def _ids(records) -> set[str]:
    return {orjson.loads(r.value)["event_id"] for r in records}
