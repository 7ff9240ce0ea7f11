"""A worker's local state folder, and whether it still matches Kafka.

Folder: <CLICKSTREAM_VAR_DIR>/worker-<port>/<app id> (Faust's datadir; its RocksDB tables are
under v1/tables). Rule: the folder is kept only if it was written against this Kafka cluster
(the cluster id recorded in it) and no table partition in it is ahead of its changelog (the
changelog offset saved with it < the changelog's end offset). Otherwise it is removed before Faust
opens the tables, and they are rebuilt from the changelogs, which are the truth.

What this reads of Faust's RocksDB files (the saved changelog offset of a table partition) goes
through engine.internals (pinned by tests/unit/test_engine_contract.py and test_state_dir.py).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faust.types import TP, AppT

from clickstream.settings import Settings
from engine.internals import rocksdb_saved_offset

CLUSTER_STAMP = "kafka-cluster-id"  # file in the folder: the cluster its changelogs live in


def state_folder(settings: Settings) -> Path:
    return settings.var_dir / f"worker-{settings.worker_port}" / settings.app_id


def mismatch(
    recorded_cluster: str | None,
    cluster: str,
    saved: Mapping[TP, int],
    ends: Mapping[TP, int],
) -> str | None:
    """Why a folder does not match Kafka, or None if it does. `saved`: changelog partition ->
    offset of the last changelog record the folder holds; `ends`: changelog partition -> its end
    offset (missing = the changelog does not exist)."""
    if recorded_cluster is not None and recorded_cluster != cluster:
        return f"it was written against Kafka cluster {recorded_cluster}, this is {cluster}"
    for tp, offset in sorted(saved.items()):
        end = ends.get(tp, 0)
        if offset >= end:
            return (
                f"it holds {tp.topic} partition {tp.partition} up to offset {offset}, "
                f"but that changelog ends at {end}"
            )
    return None


async def check_state_folder(app: AppT, settings: Settings) -> str | None:
    """Remove the state folder if it does not match Kafka; the one line saying so, or None.
    Records the cluster id in the (kept or new) folder. Call before Faust opens the tables."""
    folder = state_folder(settings)
    stamp = folder / CLUSTER_STAMP
    recorded = stamp.read_text().strip() if stamp.is_file() else None
    saved = saved_offsets(app, settings.partitions)
    cluster, ends = await _cluster_and_ends(settings.bootstrap, set(saved))
    reason = mismatch(recorded, cluster, saved, ends)
    if reason is not None:
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stamp.write_text(f"{cluster}\n")
    if reason is None:
        return None
    return (
        f"state folder {folder} does not match Kafka ({reason}): removed it; "
        f"the tables are rebuilt from their changelogs"
    )


def saved_offsets(app: AppT, partitions: int) -> dict[TP, int]:
    """Changelog partition -> offset of the last record its RocksDB partition holds."""
    if not str(app.conf.store).startswith("rocksdb"):
        return {}
    saved: dict[TP, int] = {}
    for table in app.tables.values():
        topic = table.changelog_topic.get_topic_name()
        for partition in range(partitions):
            offset = rocksdb_saved_offset(table, partition)
            if offset is not None:
                saved[TP(topic, partition)] = offset
    return saved


async def _cluster_and_ends(bootstrap: str, tps: set[TP]) -> tuple[str, dict[TP, int]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        cluster = str((await admin.describe_cluster())["cluster_id"])
        topics = await admin.describe_topics(sorted({tp.topic for tp in tps})) if tps else []
    finally:
        await admin.close()
    existing = {
        (topic["topic"], partition["partition"])
        for topic in topics
        if topic["error_code"] == 0
        for partition in topic["partitions"]
    }
    present = [TopicPartition(*tp) for tp in tps if tuple(tp) in existing]
    if not present:
        return cluster, {}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(present)
    finally:
        await consumer.stop()
    return cluster, {TP(tp.topic, tp.partition): end for tp, end in ends.items()}
