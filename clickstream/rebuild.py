"""A version's Redis numbers written again, exact, after Redis lost them (a restart without
persistence or from an append-only file a second behind, FLUSHALL): by the workers themselves,
or at once with `clickstream projection rebuild`.

What Redis shows comes from two places, and each is rewritten from its own:
  1. the panes still open, the pipeline counters, the metadata and the recent fraud counts
     live in the workers' tables. A new epoch mark (serving.epoch: Redis found empty or
     restarted, or a new token written by the command) makes every worker of the version
     restate its partitions, and each acknowledges.
  2. the closed panes left the tables once their last window closed; their content is in the
     version's window results (tumbling, one per stream, pane and partition, and attribution)
     and its scored orders and alerts. Once every partition acknowledged the mark, one reader
     (a worker's ReadBackGuard, or the command; a lock with a TTL) reads them whole and writes
     them with HSETNX: a field a worker wrote is never overwritten, so a worker that moved on
     meanwhile keeps its newer value, and a pane deleted from the tables before its restate had
     its result out before. `{app}:read-back` then names the mark, so it is done once.
Panes past the retention (by the newest watermark, as the projection drops them) are skipped.
A window whose names did not fit one result (tables.bounded) keeps its smallest names summed
in "(other)": counted and reported, the one way the rebuild can differ from what was lost.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis

from agents.window_results import counts_of
from agents.windowed import ATTRIBUTION
from clickstream.kafka_admin import admin_client, group_members, partitions_of, read_whole
from clickstream.replay import ReplayFailed
from clickstream.settings import Settings
from engine.repartition import partition_of
from serving import keys
from serving.epoch import mark_of
from serving.fraud_projection import COUNT_FIELDS, TRIM
from streams.eventtime import parse_timestamp
from streams.fraud import add_count, score_bucket

# KEYS[1]: a hash; ARGV: field, value, field, value, ...: each set unless present
_FILL = """
local set = 0
for i = 1, #ARGV, 2 do set = set + redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) end
return set
"""
log = logging.getLogger(__name__)
STREAMS = ("clicks", "orders")
LOCK_S = 600  # a reader that died lets go of the read-back after this


@dataclass
class Rebuilt:
    restated: int = 0  # partitions the workers restated
    panes: int = 0  # closed (pane, partition) results read back
    filled: int = 0  # fields written that Redis had lost
    folded: list[str] = field(default_factory=list)  # results whose names were folded
    scored: int = 0  # scored orders read back
    by_another: bool = False  # a worker read them back meanwhile

    def describe(self, app: str) -> str:
        if self.by_another:
            return (
                f"rebuilt {app}: {self.restated} partitions restated by their workers, the "
                f"closed panes read back by one of them"
            )
        text = (
            f"rebuilt {app}: {self.restated} partitions restated by their workers, "
            f"{self.panes} closed pane results and {self.scored} scored orders read back, "
            f"{self.filled} fields written"
        )
        if self.folded:
            text += (
                f"; {len(self.folded)} windows had more names than a result holds, their "
                f"smallest names stay summed in (other): {', '.join(self.folded[:5])}"
            )
        return text


def rebuild(
    settings: Settings,
    client: Any,
    timeout_s: float,
    waiting: Callable[[int, int], None],
    seen: Callable[[int, int], None],
) -> Rebuilt:
    """Rebuild version `settings.app_id`'s Redis numbers (client: a sync redis client);
    `waiting(restated, partitions)` and `seen(read, total)` report progress."""
    app = settings.app_id
    partitions = _partitions(settings)
    if not asyncio.run(_members(settings)):
        raise ReplayFailed(
            f"no worker of {app} is running, and the open windows are in their tables: start "
            f"them (`clickstream worker` with CLICKSTREAM_APP_ID={app}) and run this again"
        )
    client.set(keys.epoch(app), uuid.uuid4().hex)
    return read_back(settings, client, partitions, timeout_s, waiting, seen)


def restore_if_lost(settings: Settings, client: Any) -> Rebuilt | None:
    """A worker's round: the closed panes read back once Redis lost them (a new epoch mark
    whose read-back is not done), unless another worker does it now; what was done, or None."""
    mark = _mark(client, settings.app_id)
    if mark is None or client.get(keys.read_back(settings.app_id)) == mark.encode():
        return None
    nothing = lambda _done, _total: None  # noqa: E731
    return read_back(settings, client, _partitions(settings), 120.0, nothing, nothing)


def read_back(
    settings: Settings,
    client: Any,
    partitions: dict[str, list[int]],
    timeout_s: float,
    waiting: Callable[[int, int], None],
    seen: Callable[[int, int], None],
) -> Rebuilt:
    """Once every partition restated for the current mark, the closed panes and the fraud
    views written back; one caller at a time (the others wait for it to finish)."""
    app, topics = settings.app_id, settings.topics
    mark = _mark(client, app)
    if mark is None:
        raise ReplayFailed(f"version {app} has no epoch in Redis: start its workers")
    expected = {
        keys.field(p, stream)
        for stream, topic in zip(STREAMS, (topics.clicks, topics.orders), strict=True)
        for p in partitions.get(topic.name, [])
    }
    if settings.fraud == "on":
        expected |= {keys.field(p, "fraud") for p in partitions.get(topics.fraud_parts.name, [])}
    restated = _restated(client, app, mark, expected, timeout_s, waiting)
    lock = keys.reading_back(app)
    deadline = time.monotonic() + timeout_s
    while not client.set(lock, mark, nx=True, ex=LOCK_S):
        if client.get(keys.read_back(app)) == mark.encode():
            return Rebuilt(restated=restated, by_another=True)
        if time.monotonic() > deadline:
            raise ReplayFailed(f"another reader of {app}'s closed panes holds {lock}; try again")
        time.sleep(0.5)
    try:
        out = _read_back(settings, client, partitions, seen)
        out.restated = restated
        if _mark(client, app) != mark:  # lost again while reading: what was written may be too
            raise ReplayFailed(f"{app}'s epoch moved while its closed panes were read back")
        client.set(keys.read_back(app), mark)
    finally:
        client.delete(lock)
    return out


class ReadBackGuard:
    """A worker's watch: restore_if_lost in a daemon thread, one at a time (a read-back can
    take minutes; neither the worker's loop nor its shutdown waits for it)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.thread: threading.Thread | None = None

    def poke(self) -> None:
        if self.thread is None or not self.thread.is_alive():
            self.thread = threading.Thread(target=self._run, name="read-back", daemon=True)
            self.thread.start()

    def _run(self) -> None:
        url, app = self.settings.redis, self.settings.app_id
        client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        try:
            done = restore_if_lost(self.settings, client)
            if done is not None and done.filled:  # none: a first start, nothing was lost
                log.warning("Redis had lost %s's numbers: %s", app, done.describe(app))
        except Exception as exc:  # Redis or Kafka away, a worker not restated yet: next round
            log.warning("closed panes of %s not read back yet, will retry: %s", app, exc)
        finally:
            client.close()


def _partitions(settings: Settings) -> dict[str, list[int]]:
    topics = settings.topics
    names = [topics.clicks.name, topics.orders.name, topics.window_results.name]
    if settings.fraud == "on":
        names += [topics.fraud_parts.name, topics.scored_orders.name, topics.fraud_alerts.name]
    partitions = asyncio.run(partitions_of(settings.bootstrap, names))
    if topics.window_results.name not in partitions:
        raise ReplayFailed(
            f"version {settings.app_id} has no topic {topics.window_results.name}: no worker "
            f"ever ran under that app id (`clickstream versions` lists them)"
        )
    return partitions


def _mark(client: Any, app: str) -> str | None:
    """The current epoch token and Redis run (serving.epoch), or None: no epoch yet."""
    token = client.get(keys.epoch(app))
    if token is None:
        return None
    return mark_of(token.decode(), str(client.info("server").get("run_id")))


def _read_back(
    settings: Settings,
    client: Any,
    partitions: dict[str, list[int]],
    seen: Callable[[int, int], None],
) -> Rebuilt:
    app, topics = settings.app_id, settings.topics
    out = Rebuilt()
    meta = client.hgetall(keys.meta(app))
    retention_ms = int(meta.get(b"retention_ms", 0)) or round(settings.retention_hours * 3.6e6)
    keep_from = _newest_watermark(client, app) - retention_ms
    filled: dict[str, dict[str, Any]] = {}  # key -> field -> value, each set unless present
    starts: dict[str, set[int]] = {}  # metric -> pane starts
    scored: dict[str, tuple[int, bytes]] = {}  # order id -> (order time, body)
    alerts: dict[str, tuple[int, bytes]] = {}
    fraud_panes: dict[int, dict[int, list[int]]] = {}  # scorer partition -> pane -> counts
    seen_orders: set[str] = set()
    pane_ms = int(meta.get(b"window_ms", 0)) or settings.window_spec.size_ms
    parts = len(partitions.get(topics.fraud_parts.name, [])) or 1

    def fill(metric: str, start: int, name: str, value: Any) -> None:
        filled.setdefault(keys.window(app, metric, start), {})[name] = value
        starts.setdefault(metric, set()).add(start)

    def take(topic: str, record: Any) -> None:
        if record.value is None:
            return
        body = orjson.loads(record.value)
        if topic == topics.window_results.name:
            _take_result(body, keep_from, fill, out)
        elif topic == topics.scored_orders.name:
            time_ms = parse_timestamp(body["occurred_at"])
            scored[str(body["order_id"])] = (time_ms, record.value)
            event_id = body["event_id"]
            if event_id not in seen_orders and time_ms >= keep_from:  # scored again: once
                seen_orders.add(event_id)
                at = partition_of(event_id.encode(), parts)  # the scorer's partition
                pane, bucket = time_ms - time_ms % pane_ms, score_bucket(body["score"])
                add_count(fraud_panes.setdefault(at, {}), pane, bucket, int(body["alert"]))
            _keep_newest(scored, keys.FRAUD_EXPLAINED)
        else:
            alerts[str(body["order_id"])] = (parse_timestamp(body["occurred_at"]), record.value)
            _keep_newest(alerts, keys.FRAUD_ALERTS)

    logs = {
        t: partitions[t]
        for t in (topics.window_results.name, topics.scored_orders.name, topics.fraud_alerts.name)
        if t in partitions
    }
    asyncio.run(read_whole(settings.bootstrap, logs, take, seen))
    for at, panes in fraud_panes.items():
        for pane, counts in panes.items():
            for name, count in zip(COUNT_FIELDS, counts, strict=True):
                fill(keys.FRAUD, pane, keys.field(at, name), count)
    out.scored = len(seen_orders)
    out.filled = _write(client, app, filled, starts, scored, alerts)
    return out


async def _members(settings: Settings) -> int:
    admin = await admin_client(settings.bootstrap)
    try:
        return await group_members(admin, settings.app_id)
    finally:
        await admin.close()


def _restated(
    client: Any,
    app: str,
    mark: str,
    expected: set[str],
    timeout_s: float,
    waiting: Callable[[int, int], None],
) -> int:
    """Wait until every partition in `expected` restated for `mark`."""
    deadline = time.monotonic() + timeout_s
    while True:
        if _mark(client, app) != mark:  # Redis lost its data again meanwhile: a new round
            raise ReplayFailed(f"{app}'s epoch moved while its partitions restated; try again")
        answers = client.hgetall(keys.restated(app)).items()
        done = {name.decode() for name, value in answers if value == mark.encode()} & expected
        waiting(len(done), len(expected))
        if done == expected:
            return len(done)
        if time.monotonic() > deadline:
            missing = ", ".join(sorted(expected - done)[:8])
            raise ReplayFailed(
                f"the workers of {app} restated {len(done)} of {len(expected)} partitions in "
                f"{timeout_s:g} s (missing: {missing}); check that they run and reach Redis, "
                f"or give more --timeout"
            )
        time.sleep(0.2)


def _newest_watermark(client: Any, app: str) -> int:
    newest = -1
    for stream in STREAMS:
        for name, value in client.hgetall(keys.pipeline(app, stream)).items():
            if name.decode().endswith(f"{keys.SEP}watermark_ms"):
                newest = max(newest, int(value))
    return newest


def _take_result(
    body: dict[str, Any],
    keep_from: int,
    fill: Callable[[str, int, str, Any], None],
    out: Rebuilt,
) -> None:
    """A tumbling window result's fields, as the projection writes its pane's cells."""
    if body.get("kind") != "tumbling" or body.get("stream") not in (*STREAMS, ATTRIBUTION):
        return
    start, partition = int(body["id"].split("/")[2]), int(body["partition"])
    if start < keep_from - keep_from % 60_000:
        return
    out.panes += 1
    if body.get("folded"):
        out.folded.append(body["id"])
    for dimension, values in counts_of(body).items():
        metric, name = dimension.split(keys.SEP, 1)
        count_names = keys.COUNT_NAMES.get(metric)
        if count_names is None:
            fill(metric, start, keys.field(partition, name), values[0])
        else:
            for count_name, count in zip(count_names, values, strict=True):
                fill(metric, start, keys.field(partition, name, count_name), count)
    for name, sketch in body.get(keys.UNIQUES, {}).items():
        fill(keys.UNIQUES, start, keys.field(partition, name), sketch["registers"])


def _keep_newest(kept: dict[str, tuple[int, bytes]], most: int) -> None:
    if len(kept) > 2 * most:  # pruned now and then: reading stays linear
        newest = sorted(kept.items(), key=lambda item: item[1][0])[-most:]
        kept.clear()
        kept.update(newest)


def _write(
    client: Any,
    app: str,
    filled: dict[str, dict[str, Any]],
    starts: dict[str, set[int]],
    scored: dict[str, tuple[int, bytes]],
    alerts: dict[str, tuple[int, bytes]],
) -> int:
    """Each field set unless present; the pane indexes; the newest orders, trimmed."""
    fill, trim = client.register_script(_FILL), client.register_script(TRIM)
    written = 0
    pipe = client.pipeline(transaction=False)
    for n, (key, fields) in enumerate(filled.items(), 1):
        fill(keys=[key], args=[x for kv in fields.items() for x in kv], client=pipe)
        if n % 1000 == 0:
            written += sum(pipe.execute())
    written += sum(pipe.execute())
    for metric, pane_starts in starts.items():
        client.zadd(keys.windows(app, metric), {str(s): s for s in pane_starts})
    for kept, index, bodies, most in (
        (scored, "scored", "explained", keys.FRAUD_EXPLAINED),
        (alerts, "alerts", "alert", keys.FRAUD_ALERTS),
    ):
        newest = sorted(kept.items(), key=lambda item: item[1][0])[-most:]
        if not newest:
            continue
        index_key, bodies_key = keys.fraud(app, index), keys.fraud(app, bodies)
        client.zadd(index_key, {order: t for order, (t, _) in newest}, nx=True)
        fill(keys=[bodies_key], args=[x for o, (_, b) in newest for x in (o, b)])
        trim(keys=[index_key, bodies_key], args=[most])
    return written
