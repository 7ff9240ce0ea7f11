"""A rebalance between a batch and its commit: the runner discards what the batch staged, and
the projection drops what it staged for the partitions this worker lost (their new owner writes
them; a stale value sent at this worker's next commit would overwrite its newer one). The
clicks processor through the runner (tests/unit/partition_rig.py), two partitions."""

from __future__ import annotations

from agents.windowed import WindowedSink
from serving import keys
from serving.projection import RedisProjection
from tests.unit.partition_rig import MIN, ClicksRig, NoRedis, click


async def test_what_was_staged_for_a_lost_partition_never_reaches_redis():
    rig = ClicksRig(partitions=2)
    rig.produce([click(MIN, partition=0), click(MIN, partition=1)])
    await rig.driver.pump()  # staged, not committed
    rig.driver.rebalance([0])  # partition 1 moves to another worker
    await rig.driver.pump()  # partition 0 redelivered from its committed offset
    await rig.commit()
    partitions = {
        keys.split_field(str(name))[0] for fields in rig.redis.values() for name in fields
    }
    assert partitions == {0}
    assert rig.progress(0).accepted == 1 and rig.progress(1).accepted == 0


def test_the_worker_sink_keeps_only_the_assigned_partitions_pending():
    projection = RedisProjection(NoRedis(), "app", "clicks", retention_ms=1 << 60)  # type: ignore[arg-type]
    projection.pending = {"k": {keys.field(0, "a"): 1, keys.field(1, "a"): 2}}
    WindowedSink(projection, "clicks").assigned({0})
    assert projection.pending == {"k": {keys.field(0, "a"): 1}}


def test_a_key_left_with_no_field_after_a_rebalance_does_not_block_the_flush(redis_server):
    """A key whose every pending field was another partition's: no HSET of nothing (Redis
    refuses it, and the commit would fail at every retry: a partition stuck for good)."""
    import asyncio

    import redis.asyncio as aioredis

    async def flush() -> bool:
        client = aioredis.Redis.from_url(redis_server.url)
        projection = RedisProjection(client, "rebalanced", "orders", retention_ms=1 << 60)
        projection.pending = {
            "rebalanced:k": {keys.field(1, "a"): 2},
            "rebalanced:j": {keys.field(0, "a"): 1},
        }
        projection.keep_only({0})
        assert projection.pending == {"rebalanced:j": {keys.field(0, "a"): 1}}
        projection.pending["rebalanced:empty"] = {}  # a stage of no outcome
        try:
            return await projection.flush()
        finally:
            await client.aclose()

    assert asyncio.run(flush())
