"""A worker's health report, written to Redis for the dashboard's /healthz (serving.health).

Every HEARTBEAT_S a worker asks the broker for its metadata (at most PROBE_S) and writes:
  ZADD {app}:workers <now ms> <worker>             who reported when (readers skip stale ones)
  HSET {app}:worker-health <worker> <report>       its report, JSON:
    {"at": ms, "broker": {"reachable": bool, "since_ms": ms of the last change},
     "streams": {stream: {"partitions": [p...], "lag": records, "applied_ms": ms | null}},
     "sinks": {sink: {"pending": fields, "failing": rounds failed since one landed,
                      "landed_ms": ms | null}}}
Reports an hour old are dropped by the writers.

The broker's state also quiets the log (clickstream.logs): while the broker is unreachable the
client library's own warnings and errors (a dead broker gave about 105 lines a second) go to
DEBUG; one line says it became unreachable, one every SUMMARY_S how long and how many lines
were held back, and one when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from engine.runner import Runner
from serving import keys
from serving.sender import InBackground

HEARTBEAT_S = 2.0
PROBE_S = 3.0
SUMMARY_S = 30.0
FORGET_MS = 3_600_000

log = logging.getLogger(__name__)


class BrokerWatch:
    """Whether the broker answers, by the worker's probes; and what the log held back."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.reachable = True
        self.answered_at = self.changed_at = clock()  # monotonic: its last answer, last change
        self.changed_ms = round(time.time() * 1000)
        self.held = 0  # client log lines held back since the last summary
        self._summary_at = 0.0

    def holds(self, record: logging.LogRecord) -> bool:
        """A client library's warning while the broker is unreachable: held back (counted)."""
        if self.reachable or record.levelno < logging.WARNING:
            return False
        if not record.name.startswith(("aiokafka", "kafka")):
            return False
        self.held += 1
        return True

    def probed(self, reachable: bool, where: str) -> None:
        now = self.clock()
        if reachable:
            self.answered_at = now
        if reachable != self.reachable:
            self.reachable, self.changed_at = reachable, now
            self.changed_ms = round(time.time() * 1000)
            if reachable:
                log.warning("Kafka at %s answers again%s", where, self._held())
            else:
                log.warning(
                    "Kafka at %s does not answer; retrying (client errors summarized every %.0f s)",
                    where,
                    SUMMARY_S,
                )
            self._summary_at = now
        elif not reachable and now - self._summary_at >= SUMMARY_S:
            self._summary_at = now
            log.warning(
                "Kafka at %s still does not answer after %.0f s%s",
                where,
                now - self.changed_at,
                self._held(),
            )

    def _held(self) -> str:
        held, self.held = self.held, 0
        return f" ({held} client log lines held back)" if held else ""


BROKER = BrokerWatch()  # the worker's (one per process), read by clickstream.logs


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def probe(client: Any) -> bool:
    """The broker answers a metadata request within PROBE_S (client: aiokafka's)."""
    try:
        await asyncio.wait_for(client.fetch_all_metadata(), PROBE_S)
    except Exception:  # refused, timed out, or no broker known: all mean "not answering"
        return False
    return True


def report(
    streams: dict[str, Runner],
    sinks: Sequence[InBackground],
    now_ms: int,
    broker: BrokerWatch = BROKER,
) -> dict[str, Any]:
    wall_now, mono_now = time.time(), time.monotonic()

    def wall_ms(monotonic: float | None) -> int | None:
        return None if monotonic is None else round((wall_now - (mono_now - monotonic)) * 1000)

    def stream(runner: Runner) -> dict[str, Any]:
        lag = runner.lag()  # partition -> records behind
        return {
            "partitions": sorted(lag),
            "lag": sum(lag.values()),
            "applied_ms": wall_ms(runner.applied_at),
        }

    return {
        "at": now_ms,
        "broker": {"reachable": broker.reachable, "since_ms": broker.changed_ms},
        "streams": {name: stream(runner) for name, runner in streams.items()},
        "sinks": {
            sink.sender.name: {
                "pending": sink.sender.size(),
                "failing": sink.sender.failing,
                "landed_ms": sink.sender.landed_ms,
            }
            for sink in sinks
        },
    }


async def publish(client: aioredis.Redis, app: str, worker: str, body: dict[str, Any]) -> None:
    now = body["at"]
    pipe = client.pipeline(transaction=False)
    pipe.zadd(keys.workers(app), {worker: now})
    pipe.hset(keys.worker_health(app), worker, orjson.dumps(body))
    pipe.zremrangebyscore(keys.workers(app), "-inf", now - FORGET_MS)
    with contextlib.suppress(RedisError, OSError):  # Redis away: the report goes stale
        await pipe.execute()
