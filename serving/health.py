"""The pipeline's health as /healthz, the API and the page report it: read from the workers'
reports in Redis (clickstream.health). Each check is ok, or says what is wrong in words an
operator can act on:

  workers     a worker of the version reported within STALE_MS
  broker      every live worker's probe reaches Kafka
  projection  no live worker's Redis writes have been failing for STALE_MS
  event time  no stream has records waiting while nothing was applied for STALL_MS

Redis itself unreachable: read_model.Unavailable, as for every other read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
import redis

from serving import keys, read_model

STALE_MS = 10_000  # five missed heartbeats (clickstream.health.HEARTBEAT_S)
STALL_MS = 30_000


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class WorkerRow:
    worker: str
    seen_s: float  # since its last report
    partitions: dict[str, list[int]]  # stream -> partitions it owns
    lag: dict[str, int]  # stream -> records waiting


@dataclass(frozen=True)
class Health:
    status: str  # ok | down
    checks: list[Check]
    workers: list[WorkerRow] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [check.detail for check in self.checks if not check.ok]


def health(client: redis.Redis, app: str, now_ms: int) -> Health:
    with read_model.reachable(client):
        pipe = client.pipeline(transaction=False)
        pipe.zrangebyscore(keys.workers(app), now_ms - STALE_MS, "+inf", withscores=True)
        pipe.zrevrange(keys.workers(app), 0, 0, withscores=True)
        pipe.hgetall(keys.worker_health(app))
        live, newest, bodies = pipe.execute()
    reports = {str(w): orjson.loads(bodies[w]) for w, _ in live if w in bodies}
    checks = [
        _workers(app, reports, newest, now_ms),
        _broker(reports, now_ms),
        _projection(reports, now_ms),
        _event_time(reports, now_ms),
    ]
    rows = [
        WorkerRow(
            worker,
            round((now_ms - r["at"]) / 1000, 1),
            {s: v["partitions"] for s, v in r["streams"].items()},
            {s: v["lag"] for s, v in r["streams"].items()},
        )
        for worker, r in sorted(reports.items())
    ]
    return Health("ok" if all(c.ok for c in checks) else "down", checks, rows)


def _workers(
    app: str, reports: dict[str, Any], newest: list[tuple[str, float]], now_ms: int
) -> Check:
    if reports:
        return Check("workers", True, f"{len(reports)} reporting")
    if not newest:
        return Check("workers", False, f"no worker of {app} has ever reported")
    ago = (now_ms - newest[0][1]) / 1000
    return Check("workers", False, f"no worker of {app} has reported for {ago:.0f} s")


def _broker(reports: dict[str, Any], now_ms: int) -> Check:
    cut_off: list[int] = [
        r["broker"]["since_ms"] for r in reports.values() if not r["broker"]["reachable"]
    ]
    if not cut_off:
        return Check("broker", True, "reachable" if reports else "no report")
    longest = (now_ms - min(cut_off)) / 1000
    return Check(
        "broker",
        False,
        f"Kafka unreachable from {len(cut_off)} of {len(reports)} workers, for {longest:.0f} s",
    )


def _projection(reports: dict[str, Any], now_ms: int) -> Check:
    behind = []
    for report in reports.values():
        for sink, state in report["sinks"].items():
            landed = state["landed_ms"]
            if state["failing"] and (landed is None or now_ms - landed > STALE_MS):
                ago = "never" if landed is None else f"{(now_ms - landed) / 1000:.0f} s ago"
                behind.append(f"{sink}: {state['pending']} fields waiting, last write {ago}")
    if behind:
        return Check("projection", False, "Redis writes failing: " + "; ".join(sorted(behind)))
    return Check("projection", True, "current")


def _event_time(reports: dict[str, Any], now_ms: int) -> Check:
    stalled = []
    for report in reports.values():
        for stream, state in report["streams"].items():
            applied = state["applied_ms"]
            if state["lag"] and (applied is None or now_ms - applied > STALL_MS):
                stalled.append(f"{stream}: {state['lag']} records waiting, none applied")
    if stalled:
        return Check("event time", False, "stalled: " + "; ".join(sorted(stalled)))
    return Check("event time", True, "advancing")
