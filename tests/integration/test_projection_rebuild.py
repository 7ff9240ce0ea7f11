"""`clickstream projection rebuild` against the session's Kafka and Redis: two workers take faulty
traffic, Redis loses everything (FLUSHALL), and it comes back exactly as it was, the oracle's
numbers, by itself and with the command: the open panes from the workers' tables, the closed
ones from the window results, the fraud views from the scored orders. A Redis SIGKILLed under
load and back empty recovers the same way."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import replace

import pytest
import redis

from clickstream.kafka_admin import admin_client, group_members
from clickstream.local.process import free_port
from clickstream.local.redis import LocalRedis
from clickstream.settings import Settings, load
from serving import keys
from tests.rig import (
    FAULTY_TRAFFIC,
    SMALL_WINDOWS,
    Worker,
    clickstream,
    processed,
    produce_and_expect,
    recovered,
    summed_cells,
    wait_processed,
    wait_until,
)

pytestmark = pytest.mark.integration

TRAFFIC = replace(FAULTY_TRAFFIC, seed=7, count=5_000, late_rate=0.02, fraud_rate=0.03)


def members(settings: Settings) -> int:
    async def ask() -> int:
        admin = await admin_client(settings.bootstrap)
        try:
            return await group_members(admin, settings.app_id)
        finally:
            await admin.close()

    return asyncio.run(ask())


def shown(client: redis.Redis, app: str) -> dict[bytes, object]:
    """Every key of the version as Redis holds it (the epoch's and the health reports' own keys
    left out)."""
    own = (keys.epoch, keys.restated, keys.read_back, keys.reading_back)
    bookkeeping = {k(app) for k in (*own, keys.workers, keys.worker_health)}
    found: dict[bytes, object] = {}
    for key in client.scan_iter(f"{app}:*"):
        if key.decode() in bookkeeping:
            continue
        kind = client.type(key)
        if kind == b"hash":
            found[key] = client.hgetall(key)
        elif kind == b"zset":
            found[key] = client.zrange(key, 0, -1, withscores=True)
        else:
            found[key] = client.get(key)
    return found


def differences(before: dict, now: dict, most: int = 8) -> str:
    """The keys that differ, for a failure to name."""
    missing = [k for k in before if k not in now]
    extra = [k for k in now if k not in before]
    changed = [k for k in before if k in now and before[k] != now[k]]
    lines = [f"{len(missing)} missing, {len(extra)} extra, {len(changed)} changed"]
    lines += [f"missing {k!r}" for k in missing[:most]]
    lines += [f"extra {k!r}: {now[k]!r:.200}" for k in extra[:most]]
    for k in changed[:most]:
        was, is_ = before[k], now[k]
        if isinstance(was, dict) and isinstance(is_, dict):
            diff = {
                f: (was.get(f), is_.get(f))
                for f in was.keys() | is_.keys()
                if was.get(f) != is_.get(f)
            }
            lines.append(f"changed {k!r}: {dict(list(diff.items())[:6])!r:.400}")
        else:
            lines.append(f"changed {k!r}: {was!r:.150} -> {is_!r:.150}")
    return "\n".join(lines)


def settles_to(client: redis.Redis, app: str, before: dict, within: float) -> None:
    deadline = time.monotonic() + within
    while (now := shown(client, app)) != before:
        if time.monotonic() > deadline:
            marks = {
                k(app): client.get(k(app)) for k in (keys.epoch, keys.read_back, keys.reading_back)
            }
            restated = client.hgetall(keys.restated(app))
            raise AssertionError(
                f"Redis not as it was: {differences(before, now)}\n{marks}\nrestated {restated}"
            )
        time.sleep(0.25)


def steady(client: redis.Redis, app: str, quiet_s: float = 4, within: float = 90) -> dict:
    """What Redis shows once it has not changed for `quiet_s`."""
    deadline = time.monotonic() + within
    last, since = shown(client, app), time.monotonic()
    while time.monotonic() - since < quiet_s:
        assert time.monotonic() < deadline, "Redis never settled"
        time.sleep(1)
        now = shown(client, app)
        if now != last:
            last, since = now, time.monotonic()
    return last


def test_a_rebuild_after_flushall_gives_back_every_number(
    pipeline_env, start_worker, redis_server, tmp_path
):
    env = pipeline_env
    env.update(SMALL_WINDOWS)  # no ticks: the newest panes stay open in the tables
    settings = load(env, dotenv=None)
    app = settings.app_id
    expected = produce_and_expect(settings, TRAFFIC, tmp_path)
    workers = [start_worker(), start_worker()]
    client = redis.Redis.from_url(redis_server.url)
    wait_processed(client, settings, expected, alive=workers[0].alive)
    before = steady(client, app)
    assert summed_cells(client, app, keys.PAGE_VIEWS, 0) == expected.page_views
    assert summed_cells(client, app, keys.ORDERS, 1) == expected.revenue
    assert client.zcard(keys.fraud(app, "scored")) > 0

    client.flushall()
    flushed = time.monotonic()
    # the workers notice by themselves (serving.epoch): they restate their open panes and
    # counters, and one of them reads the closed panes back from the results
    settles_to(client, app, before, within=90)
    recovered("Redis FLUSHALL: every key as it was", flushed)
    assert client.get(keys.read_back(app)) is not None

    rebuilt = clickstream(env, "projection", "rebuild")  # at once, by hand: the same
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    assert f"rebuilt {app}: {3 * settings.partitions} partitions restated" in rebuilt.stdout
    settles_to(client, app, before, within=0)
    assert summed_cells(client, app, keys.PAGE_VIEWS, 0) == expected.page_views
    assert summed_cells(client, app, keys.ORDERS, 1) == expected.revenue

    for worker in workers:
        worker.stop()
    wait_until(lambda: members(settings) == 0, within=60, why="the workers' sessions ended")
    refused = clickstream(env, "projection", "rebuild")
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and f"no worker of {app} is running" in refused.stderr


def test_redis_killed_under_load_and_back_empty_shows_the_oracles_numbers_again(
    pipeline_env, tmp_path
):
    """No command run: a Redis without persistence SIGKILLed mid-stream and started again
    empty 3 s later; the worker's writes wait, then it restates and reads back."""
    server = LocalRedis(tmp_path / "redis", free_port(), persist=False)
    server.start()
    env = {**pipeline_env, **SMALL_WINDOWS, "CLICKSTREAM_REDIS_URL": server.url}
    settings = load(env, dotenv=None)
    app = settings.app_id
    expected = produce_and_expect(settings, TRAFFIC, tmp_path)
    client = redis.Redis.from_url(server.url)
    worker = Worker(env, tmp_path / "worker.log").start()
    third = expected.messages[settings.clicks_topic] // 3
    try:
        wait_until(
            lambda: processed(client, app, "clicks") >= third,
            within=120, why="a third processed", alive=worker.alive,
        )  # fmt: skip
        pid = server.process.pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)  # reaped: a zombie would look alive to start()
        time.sleep(3)
        server.start()
        restarted = time.monotonic()
        wait_processed(client, settings, expected, alive=worker.alive)
        wait_until(
            lambda: summed_cells(client, app, keys.PAGE_VIEWS, 0) == expected.page_views
            and summed_cells(client, app, keys.ORDERS, 1) == expected.revenue,
            within=90, why="the oracle's numbers again", alive=worker.alive,
        )  # fmt: skip
        recovered("Redis SIGKILL, back empty: the oracle's numbers", restarted)
        assert summed_cells(client, app, keys.REFERRERS, 0) == expected.referrers
    finally:
        worker.stop()
        server.stop()
