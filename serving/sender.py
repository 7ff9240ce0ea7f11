"""A sink's Redis writes off the commit path (issue 16: a hung Redis slowed every commit tenfold).

A commit hands over what it staged and goes on; the writes go out in the background, one round
trip at a time, and one asked for meanwhile follows right after. A failed round leaves what it
sent pending (a newer value staged meanwhile replaces it), is counted, and is tried again each
second until one lands. What stays pending is bounded by the fields touched (values are
absolute, so a field is pending once), not by time.

`forget_sent` is the rule both projections follow after a round that landed: a field leaves the
pending set only if it still holds the value that was sent (else the newer one goes next).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import Counter, Gauge

log = logging.getLogger(__name__)

RETRY_S = 1.0
SUMMARY_S = 30.0

WRITE_FAILURES = Counter(
    "clickstream_redis_write_failures",
    "Rounds of projection writes to Redis that failed (kept pending, sent again)",
    ["sink"],
)
PENDING_FIELDS = Gauge(
    "clickstream_redis_pending_fields",
    "Projection fields staged and not yet written to Redis",
    ["sink"],
)


def snapshot(pending: dict[Any, dict[Any, Any]]) -> dict[Any, dict[Any, Any]]:
    """What a round sends: a copy, so staging may go on while it is in flight."""
    return {key: dict(fields) for key, fields in pending.items() if fields}


def forget_sent(pending: dict[Any, dict[Any, Any]], sent: dict[Any, dict[Any, Any]]) -> None:
    """Drop from `pending` (key -> field -> value) each field that still holds the value
    `sent` wrote, and the keys left with none."""
    for key, fields in sent.items():
        now = pending.get(key)
        if now is not None:
            forget_sent_fields(now, fields)
            if not now:
                del pending[key]


def forget_sent_fields(pending: dict[Any, Any], sent: dict[Any, Any]) -> None:
    for name, value in sent.items():
        if name in pending and pending[name] == value:
            del pending[name]


class Sender:
    """Runs `send` (one round: True if it landed) in the background, one at a time; a failed
    round is tried again every RETRY_S until one lands, so an idle pipeline converges too.
    The log says when writes start failing (with `failure()`, why), every SUMMARY_S while
    they do, and when they land again."""

    def __init__(
        self,
        name: str,
        send: Callable[[], Awaitable[bool]],
        size: Callable[[], int],
        failure: Callable[[], str] = lambda: "",
    ) -> None:
        self.name, self.send, self.size, self.failure = name, send, size, failure
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self.landed_ms: int | None = None  # wall time the last round landed
        self.failing = 0  # rounds failed since then
        self._failing_since = self._said_at = 0.0

    def request(self) -> None:
        if self._task is not None and not self._task.done():
            self._again = True  # taken right after the round in flight
            return
        self._task = asyncio.ensure_future(self._rounds())

    async def drain(self) -> None:
        """Until no round is in flight (tests, shutdown)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def _rounds(self) -> None:
        while True:
            self._again = False
            try:
                landed = await self.send()
            except Exception:  # a bug must not end the rounds silently: logged, retried
                log.exception("Redis %s projection round raised", self.name)
                landed = False
            PENDING_FIELDS.labels(self.name).set(self.size())
            if landed:
                self._landed()
            else:
                self._failed()
                await asyncio.sleep(RETRY_S)
                continue
            if not self._again:
                return

    def _landed(self) -> None:
        if self.failing:
            log.warning(
                "Redis writes of the %s projection land again, after %.0f s",
                self.name,
                time.monotonic() - self._failing_since,
            )
        self.landed_ms, self.failing = round(time.time() * 1000), 0

    def _failed(self) -> None:
        WRITE_FAILURES.labels(self.name).inc()
        now = time.monotonic()
        if not self.failing:
            self._failing_since = self._said_at = now
            log.warning(
                "Redis writes of the %s projection fail (%s); %d fields kept, retried every %.0f s",
                self.name,
                self.failure(),
                self.size(),
                RETRY_S,
            )
        elif now - self._said_at >= SUMMARY_S:
            self._said_at = now
            log.warning(
                "Redis writes of the %s projection still fail after %.0f s (%s); %d fields kept",
                self.name,
                now - self._failing_since,
                self.failure(),
                self.size(),
            )
        self.failing += 1


class InBackground:
    """An engine.processor.Sink whose Redis round trips leave the commit path: `flush` hands
    over and returns, `lost` answers with the last finished epoch check and starts the next.
    The runner's commits and restates then never wait on Redis (bounded socket timeouts keep
    a round from hanging for long)."""

    def __init__(self, sink: Any, name: str) -> None:
        self.sink = sink
        self.sender = Sender(name, sink.flush, sink.size, lambda: getattr(sink, "failure", ""))
        self._check: asyncio.Task[bool] | None = None

    def stage(self, staged: Any) -> None:
        self.sink.stage(staged)

    async def flush(self) -> bool:
        self.sender.request()
        return True

    def assigned(self, partitions: set[int]) -> None:
        self.sink.assigned(partitions)

    async def lost(self) -> bool:
        check = self._check
        if check is not None and not check.done():
            return False
        self._check = asyncio.ensure_future(self.sink.lost())
        if check is None or check.cancelled() or check.exception() is not None:
            return False
        return check.result()

    def restate(self, partition: int, state: Any) -> None:
        self.sink.restate(partition, state)
