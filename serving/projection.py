"""Batch outcomes -> Redis, as absolute per-partition values (see serving.keys).

Writes that fail (Redis down) stay pending and are retried with the next batch; a newer value
for the same field replaces an older pending one, so nothing is lost and nothing is doubled.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT

from serving import keys
from tables.window_state import BatchOutcome

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MetricLayout:
    """How a cell's counts become hash fields: one name per count, None for a single value."""

    metric: str  # serving.keys.PAGE_VIEWS | ORDERS
    stream: str  # clicks | orders
    count_names: tuple[str, ...] | None = None


class RedisProjection:
    def __init__(self, client: aioredis.Redis, app_id: str, layout: MetricLayout) -> None:
        self.client = client
        self.app_id = app_id
        self.layout = layout
        self.pending: dict[str, dict[FieldT, EncodableT]] = {}  # key -> field -> value
        self.windows: set[int] = set()

    def stage(self, outcomes: Sequence[BatchOutcome]) -> None:
        app, layout = self.app_id, self.layout
        stats = self.pending.setdefault(keys.pipeline(app, layout.stream), {})
        for out in outcomes:
            for (start, dimension), counts in out.cells.items():
                fields = self.pending.setdefault(keys.window(app, layout.metric, start), {})
                if layout.count_names is None:
                    fields[keys.field(out.partition, dimension)] = counts[0]
                else:
                    for name, count in zip(layout.count_names, counts, strict=True):
                        fields[keys.field(out.partition, dimension, name)] = count
                self.windows.add(start)
            progress = out.progress
            for name in ("watermark_ms", "accepted", "duplicates", "late", "dead_letters"):
                stats[keys.field(out.partition, name)] = getattr(progress, name)

    async def flush(self) -> bool:
        """Send what is pending in one round trip; False (and kept pending) if Redis failed."""
        if not self.pending:
            return True
        pipe = self.client.pipeline(transaction=False)
        for key, fields in self.pending.items():
            pipe.hset(key, mapping=fields)
        if self.windows:
            pipe.zadd(
                keys.windows(self.app_id, self.layout.metric), {str(w): w for w in self.windows}
            )
        try:
            await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("Redis projection failed, will retry with the next batch: %s", exc)
            return False
        self.pending.clear()
        self.windows.clear()
        return True
