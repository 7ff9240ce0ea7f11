"""Whether Redis still holds what a version's workers wrote: its epoch key.

`{app}:epoch` holds a token. Each sink asks at most once per CHECK_S: it sets a new token if
the key is missing (SET NX), then reads it back with the Redis server's run id. A key it had to
create (Redis restarted empty, FLUSHALL), a token it did not know (another worker found it
missing first, or `clickstream projection rebuild` wrote a new one) or another run id (Redis
restarted, perhaps from an append-only file a second behind) means that what it wrote may be
gone: the runner then restates its partitions (engine.runner), and each restated partition is
acknowledged under `{app}:restated` with the mark (token and run id) it answers. A worker's
first question always says changed, so a worker restates what it owns once it starts. The
closed panes, which the tables no longer hold, are read back once per mark
(clickstream.rebuild).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from serving import keys

CHECK_S = 1.0


def mark_of(token: str, run_id: str) -> str:
    """What a restate acknowledges: the epoch token and the Redis run it was written to."""
    return f"{token} {run_id}"


class Epoch:
    def __init__(
        self,
        client: aioredis.Redis,
        app_id: str,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client, self.key, self.monotonic = client, keys.epoch(app_id), monotonic
        self.mark: str | None = None  # mark_of the token and run last read; None: never asked
        self._next_check = 0.0

    async def changed(self) -> bool:
        """Whether Redis lost or was asked to forget what was written, since last asked."""
        now = self.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + CHECK_S
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.key, uuid.uuid4().hex, nx=True)  # new: the others see it changed too
        pipe.get(self.key)
        pipe.info("server")
        try:
            created, current, server = await pipe.execute()
        except (RedisError, OSError):
            return False  # Redis away: the writes wait and retry; asked again next round
        token = current.decode() if isinstance(current, bytes) else str(current)
        mark = mark_of(token, str(server.get("run_id")))
        changed = bool(created) or mark != self.mark
        self.mark = mark
        return changed
