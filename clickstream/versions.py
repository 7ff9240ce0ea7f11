"""Versions of the app, in Redis: which ones exist beside a live one, and which one is served.

A version is an app id. The dashboard and API of the base app id (CLICKSTREAM_APP_ID) serve
the active one: `{base}:active` names it (unset: the base itself), and every read looks it up,
so `clickstream promote` switches them without a restart. `{base}:versions` lists the versions
replayed beside the base (clickstream.replay) with how they were made.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import redis

from serving import keys


def active(client: redis.Redis, base: str) -> str:
    """The app id whose numbers the base's dashboard and API serve (the read side:
    serving.read_model.served)."""
    name = client.get(keys.active(base))
    return _text(name) if name else base


def promote(client: redis.Redis, base: str, version: str) -> str:
    """Serve `version` from now on; returns the version served before."""
    before = active(client, base)
    if version == base:
        client.delete(keys.active(base))
    else:
        client.set(keys.active(base), version)
    return before


def register(client: redis.Redis, base: str, version: str, about: dict[str, Any]) -> None:
    client.hset(keys.versions(base), version, orjson.dumps(about))


def registered(client: redis.Redis, base: str) -> dict[str, dict[str, Any]]:
    """Version -> how it was made (replay's bounds), for the versions replayed beside `base`."""
    return {
        _text(name): orjson.loads(about)
        for name, about in sorted(client.hgetall(keys.versions(base)).items())
    }


def save_diff(client: redis.Redis, base: str, report: dict[str, Any]) -> None:
    """The latest diff of two versions (clickstream.diff), for the dashboard, with when."""
    saved = {**report, "saved_at_ms": round(time.time() * 1000)}
    client.hset(keys.diffs(base), f"{report['live']}/{report['shadow']}", orjson.dumps(saved))


def diffs(client: redis.Redis, base: str) -> dict[str, dict[str, Any]]:
    """ "live/shadow" -> the latest diff report of those two versions."""
    return {
        _text(pair): orjson.loads(report)
        for pair, report in sorted(client.hgetall(keys.diffs(base)).items())
    }


def unregister(client: redis.Redis, base: str, version: str) -> None:
    client.hdel(keys.versions(base), version)


def delete_keys(client: redis.Redis, version: str) -> int:
    """Every Redis key of `version` (`{version}:*`; app ids hold no glob characters) but the
    registry and pointer of the versions beside it; how many."""
    kept = {
        key.encode() for key in (keys.active(version), keys.versions(version), keys.diffs(version))
    }
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{version}:*", count=1000):
        if key in kept:
            continue
        batch.append(key)
        if len(batch) == 1000:
            deleted += client.unlink(*batch)
            batch = []
    if batch:
        deleted += client.unlink(*batch)
    return deleted


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
