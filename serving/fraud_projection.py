"""Scorer outcomes (streams.fraud.FraudOutcome) -> Redis, in the serving.keys layout: the fraud
pane counts, the newest scored orders (their explanations) and the newest alerts.

Pane counts are absolute per-partition values and orders are keyed by order id, so a batch
redone after a crash writes the same again. Writes that fail (Redis down) stay pending and go
with the next batch; a newer value replaces a pending one, and pending orders are capped at the
number Redis keeps (the newest by order time). The sorted sets are trimmed to that number as
they grow. Fraud panes are dropped with the other panes, by the windowed projections. A restate
(serving.epoch) stages a partition's pane counts whole, counted from its marks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from engine.processor import Store
from serving import keys
from serving.epoch import Epoch
from serving.sender import forget_sent, forget_sent_fields, snapshot
from streams.fraud import SCORE_BUCKETS, FraudOutcome, marks_prefix, pane_counts

# KEYS[1]: an index (ZSET by order time), KEYS[2]: its bodies (HASH); ARGV[1]: how many to keep
TRIM = """
local extra = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[1])
if extra <= 0 then return 0 end
local old = redis.call('ZRANGE', KEYS[1], 0, extra - 1)
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, extra - 1)
for i = 1, #old, 1000 do
  redis.call('HDEL', KEYS[2], unpack(old, i, math.min(i + 999, #old)))
end
return extra
"""
COUNT_FIELDS = ("orders", "alerts", *(f"score|{b}" for b in range(SCORE_BUCKETS)))
Kept = dict[str, tuple[int, bytes]]  # order id -> (order time, body)


class FraudProjection:
    """The scorer's sink (engine.processor.Sink)."""

    def __init__(self, client: aioredis.Redis, app_id: str, pane_ms: int) -> None:
        self.client, self.app_id, self.pane_ms = client, app_id, pane_ms
        self.epoch = Epoch(client, app_id)
        self.restated: dict[str, str] = {}  # "{partition}|fraud" -> the epoch mark answered
        self.cells: dict[str, dict[str, int]] = {}  # pane key -> field -> count
        self.starts: set[int] = set()
        self.scored: Kept = {}
        self.alerts: Kept = {}
        self._trim = client.register_script(TRIM)
        self.failure = ""  # why the last round failed

    def stage(self, staged: Sequence[Any]) -> None:
        for out in cast(Sequence[FraudOutcome], staged):
            for start, counts in out.panes.items():
                fields = self.cells.setdefault(keys.window(self.app_id, keys.FRAUD, start), {})
                for name, count in zip(COUNT_FIELDS, counts, strict=True):
                    fields[keys.field(out.partition, name)] = count
                self.starts.add(start)
            self.scored.update((order, (t, body)) for order, t, body in out.scored)
            self.alerts.update((order, (t, body)) for order, t, body in out.alerts)
        _keep_newest(self.scored, keys.FRAUD_EXPLAINED)
        _keep_newest(self.alerts, keys.FRAUD_ALERTS)

    def assigned(self, partitions: set[int]) -> None:
        """After a rebalance: drop pending counts of partitions owned by others now."""
        for fields in self.cells.values():
            for name in [n for n in fields if keys.split_field(n)[0] not in partitions]:
                del fields[name]
        for name in [n for n in self.restated if keys.split_field(n)[0] not in partitions]:
            del self.restated[name]

    async def lost(self) -> bool:
        return await self.epoch.changed()

    def restate(self, partition: int, state: Store) -> None:
        """The pane counts of every order the partition's marks still hold (streams.fraud);
        the orders' bodies are not in the state (clickstream.rebuild reads them back)."""
        marks = (raw for _key, raw in state.items(marks_prefix(partition)))
        self.stage([FraudOutcome(partition, pane_counts(marks, self.pane_ms), [], [])])
        self.restated[keys.field(partition, "fraud")] = self.epoch.mark or ""

    async def flush(self) -> bool:
        """Send what is pending in one round trip; False (and kept pending) if Redis failed.
        Staging may go on meanwhile (serving.sender): what changed since stays pending."""
        if not (self.cells or self.scored or self.alerts or self.restated):
            return True
        cells, restated, starts = snapshot(self.cells), dict(self.restated), set(self.starts)
        orders = {"scored": dict(self.scored), "alerts": dict(self.alerts)}
        app, pipe = self.app_id, self.client.pipeline(transaction=False)
        if restated:
            pipe.hset(keys.restated(app), mapping=restated)  # type: ignore[arg-type]
        for key, fields in cells.items():
            pipe.hset(key, mapping=fields)
        if starts:
            pipe.zadd(keys.windows(app, keys.FRAUD), {str(s): s for s in starts})
        for index, bodies, keep in (
            ("scored", "explained", keys.FRAUD_EXPLAINED),
            ("alerts", "alert", keys.FRAUD_ALERTS),
        ):
            if kept := orders[index]:
                index_key, bodies_key = keys.fraud(app, index), keys.fraud(app, bodies)
                pipe.zadd(index_key, {order: t for order, (t, _) in kept.items()})
                pipe.hset(bodies_key, mapping={order: body for order, (_, body) in kept.items()})
                await self._trim(keys=[index_key, bodies_key], args=[keep], client=pipe)
        try:
            await pipe.execute()
        except (RedisError, OSError) as exc:
            self.failure = f"{type(exc).__name__}: {exc}"  # logged by serving.sender
            return False
        forget_sent(self.cells, cells)
        for pending, sent in (
            (self.restated, restated),
            (self.scored, orders["scored"]),
            (self.alerts, orders["alerts"]),
        ):
            forget_sent_fields(pending, sent)
        self.starts -= starts
        return True

    def size(self) -> int:
        return sum(map(len, self.cells.values())) + len(self.scored) + len(self.alerts)


def _keep_newest(kept: Kept, most: int) -> None:
    if len(kept) > most:
        newest = sorted(kept.items(), key=lambda item: item[1][0])[-most:]
        kept.clear()
        kept.update(newest)
