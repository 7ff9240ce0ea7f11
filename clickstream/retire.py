"""`clickstream retire VERSION`: every trace of a version, deleted.

What goes: its consumer group, the topics it owns (derived, internal, changelogs, its replay
bounds, its time logs if it wrote them, Faust's leader topic), its local state folders and its
Redis keys. What stays: the input topics, and every other version's topics and keys.
Refused while it is the version served, while another version follows its time log, or while
workers of it are running.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import redis

from clickstream import versions
from clickstream.kafka_admin import admin_client, group_members
from clickstream.replay import ReplayFailed, version_settings
from clickstream.settings import Settings
from engine.internals import delete_consumer_group


@dataclass(frozen=True)
class Retirement:
    version: str
    topics: list[str]
    folders: list[Path]

    def describe(self) -> str:
        return (
            f"version {self.version}: consumer group {self.version}, {len(self.topics)} topics "
            f"({', '.join(self.topics[:3])}{', ...' if len(self.topics) > 3 else ''}), "
            f"{len(self.folders)} local state folders, Redis keys {self.version}:*"
        )


def plan(settings: Settings, client: redis.Redis, version: str) -> Retirement:
    """What retiring `version` deletes; ReplayFailed when it must not be retired."""
    base = settings.app_id
    served = versions.active(client, base)
    if version == served:
        raise ReplayFailed(
            f"{version} is the version the dashboard serves; promote another first "
            f"(`clickstream promote VERSION`)"
        )
    for name, about in versions.registered(client, base).items():
        if name != version and about.get("clock") == version:
            raise ReplayFailed(f"version {name} follows {version}'s time log; retire {name} first")
    return asyncio.run(_plan(settings, version))


async def _plan(settings: Settings, version: str) -> Retirement:
    own = version_settings(settings, version, version)  # with its own time logs, if it wrote any
    names = {spec.name for spec in own.topics.owned(version)} | {f"{version}-__assignor-__leader"}
    admin = await admin_client(settings.bootstrap)
    try:
        existing = set(await admin.list_topics())
        # a stopped worker stays a (static) member until its session times out
        for _ in range(settings.session_timeout_seconds + 5):
            members = await group_members(admin, version)
            if not members:
                break
            await asyncio.sleep(1)
    finally:
        await admin.close()
    if members:
        raise ReplayFailed(
            f"version {version} still has {members} worker(s) in its consumer group; "
            f"stop them first"
        )
    folders = sorted(path for path in settings.var_dir.glob(f"worker-*/{version}") if path.is_dir())
    return Retirement(version, sorted(names & existing), folders)


def retire(settings: Settings, client: redis.Redis, retirement: Retirement) -> int:
    """Delete what `retirement` lists; returns the Redis keys deleted."""
    asyncio.run(_delete_in_kafka(settings.bootstrap, retirement))
    for folder in retirement.folders:
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            folder.parent.rmdir()  # worker-<port>, when no other version is in it
    deleted = versions.delete_keys(client, retirement.version)
    versions.unregister(client, settings.app_id, retirement.version)
    return deleted


async def _delete_in_kafka(bootstrap: str, retirement: Retirement) -> None:
    admin = await admin_client(bootstrap)
    try:
        await delete_consumer_group(admin, retirement.version)
        if retirement.topics:
            await admin.delete_topics(retirement.topics)
    finally:
        await admin.close()
