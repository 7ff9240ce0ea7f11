"""Batch outcomes -> Redis, as absolute per-partition values (see serving.keys).

A cell's dimension is "<metric>|<value>"; it becomes field "<partition>|<value>" (one per count
name, for metrics with several) of the pane's hash for that metric. Writes go out in rounds off
the commit path (serving.sender); those that fail (Redis down) stay pending and go with the
next round, and a newer value for the same field replaces an older pending one, so nothing is
lost and nothing is doubled. Panes older than the newest watermark minus the retention are
deleted, by event time. A restate (serving.epoch)
stages a partition's whole state the same way, with its acknowledgement and the metadata.
"""

from __future__ import annotations

import base64
from collections import defaultdict
from collections.abc import Mapping, Sequence

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT

from serving import keys
from serving.sender import forget_sent, snapshot
from tables.window_state import BatchOutcome, Progress

# KEYS[1]: a metric's window index; ARGV[1]: its pane key prefix; ARGV[2]: oldest start kept
_DROP_OLD_PANES = """
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2])
for _, start in ipairs(old) do redis.call('DEL', ARGV[1] .. start) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2])
return #old
"""


class RedisProjection:
    def __init__(
        self,
        client: aioredis.Redis,
        app_id: str,
        stream: str,
        retention_ms: int,
        meta: Mapping[str, int] | None = None,
    ) -> None:
        self.client = client
        self.app_id = app_id
        self.stream = stream
        self.retention_ms = retention_ms
        self.meta = dict(meta or {})  # {app}:meta, written again with each restate
        self._meta_due = False
        self._acks = 0  # restates acknowledged (a round in flight then leaves their work due)
        self.failure = ""  # why the last round failed
        self.pending: dict[str, dict[FieldT, EncodableT]] = {}  # key -> field -> value
        self.windows: dict[str, set[int]] = defaultdict(set)  # metric -> pane starts
        self.keep_from = -1  # oldest pane start kept, by the newest watermark seen
        self.dropped_before = -1  # panes before this start are already deleted
        self._drop_old_panes = client.register_script(_DROP_OLD_PANES)

    def stage(self, outcomes: Sequence[BatchOutcome]) -> None:
        app = self.app_id
        stats = self.pending.setdefault(keys.pipeline(app, self.stream), {})
        reasons = self.pending.setdefault(keys.dead_letter_reasons(app, self.stream), {})
        for out in outcomes:
            attributed = [
                ((a.start_ms, d), v) for a in out.attributions for d, v in a.counts.items()
            ]
            for (start, dimension), value in [
                *out.cells.items(),
                *out.sketches.items(),
                *attributed,
            ]:
                metric, name = dimension.split(keys.SEP, 1)
                fields = self.pending.setdefault(keys.window(app, metric, start), {})
                count_names = keys.COUNT_NAMES.get(metric)
                if isinstance(value, bytes):  # sketch registers: base64, so readers get text
                    fields[keys.field(out.partition, name)] = base64.b64encode(value)
                elif count_names is None:
                    fields[keys.field(out.partition, name)] = value[0]
                else:
                    for count_name, count in zip(count_names, value, strict=True):
                        fields[keys.field(out.partition, name, count_name)] = count
                self.windows[metric].add(start)
            progress = out.progress
            stats[keys.field(out.partition, "watermark_ms")] = progress.watermark_ms
            for name in Progress.COUNTERS:
                stats[keys.field(out.partition, name)] = getattr(progress, name)
            for reason, count in progress.dead_letter_reasons.items():
                reasons[keys.field(out.partition, reason)] = count
            self.keep_from = max(self.keep_from, progress.watermark_ms - self.retention_ms)

    def acknowledge(self, partition: int, token: str) -> None:
        """A restate of `partition` (staged just before) answers epoch `token`
        (serving.epoch); it says so with the next flush."""
        restated = self.pending.setdefault(keys.restated(self.app_id), {})
        restated[keys.field(partition, self.stream)] = token
        self._meta_due = bool(self.meta)
        self._acks += 1
        self.dropped_before = -1  # the restate may hold panes past the retention: drop again

    def keep_only(self, partitions: set[int]) -> None:
        """After a rebalance: drop what is pending for partitions this worker no longer owns
        (their new owner writes them; a stale value sent later could overwrite its newer one)."""
        for key, fields in list(self.pending.items()):
            for name in [n for n in fields if keys.split_field(str(n))[0] not in partitions]:
                del fields[name]
            if not fields:  # an HSET of no fields is an error (DataError), every flush again
                del self.pending[key]

    async def flush(self) -> bool:
        """Send what is pending in one round trip; False (and kept pending) if Redis failed.
        Staging may go on meanwhile (serving.sender): what changed since stays pending."""
        if not self.pending and not self._meta_due:
            return True
        sent, acks = snapshot(self.pending), self._acks
        windows = {metric: set(starts) for metric, starts in self.windows.items() if starts}
        pipe = self.client.pipeline(transaction=False)
        for key, fields in sent.items():
            pipe.hset(key, mapping=fields)
        if self._meta_due:
            pipe.hset(keys.meta(self.app_id), mapping=self.meta)  # type: ignore[arg-type]
        for metric, starts in windows.items():
            pipe.zadd(keys.windows(self.app_id, metric), {str(s): s for s in starts})
        drop_before = self.keep_from - self.keep_from % 60_000  # checked once a minute
        if drop_before > self.dropped_before:
            for metric in keys.METRICS:
                prefix = keys.window(self.app_id, metric, 0)[:-1]
                await self._drop_old_panes(
                    keys=[keys.windows(self.app_id, metric)],
                    args=[prefix, drop_before],
                    client=pipe,
                )
        try:
            await pipe.execute()
        except (RedisError, OSError) as exc:
            self.failure = f"{type(exc).__name__}: {exc}"  # logged by serving.sender
            return False
        forget_sent(self.pending, sent)
        for metric, starts in windows.items():
            self.windows[metric] -= starts
            if not self.windows[metric]:
                del self.windows[metric]
        if acks == self._acks:  # else a restate came meanwhile: its metadata and drop are due
            self.dropped_before = drop_before
            self._meta_due = False
        return True

    def size(self) -> int:
        return sum(map(len, self.pending.values()))
