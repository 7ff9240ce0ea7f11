"""Whether Redis still holds what a version's workers wrote: its epoch key.

`{app}:epoch` holds a token. Each sink asks at most once per CHECK_S: it sets a new token if
the key is missing (SET NX), then reads it back. A key it had to create (Redis restarted empty,
FLUSHALL) or a token it did not know (another worker found it missing first, or `clickstream
projection rebuild` wrote a new one) means that what it wrote may be gone: the runner then
restates its partitions (engine.runner), and each restated partition is acknowledged under
`{app}:restated` with the token it answers. A worker's first question always says changed, so
a worker restates what it owns once it starts.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from serving import keys

CHECK_S = 1.0


class Epoch:
    def __init__(
        self,
        client: aioredis.Redis,
        app_id: str,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client, self.key, self.monotonic = client, keys.epoch(app_id), monotonic
        self.token: str | None = None  # the token last read; None: never asked
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
        try:
            created, current = await pipe.execute()
        except (RedisError, OSError):
            return False  # Redis away: the writes wait and retry; asked again next round
        token = current.decode() if isinstance(current, bytes) else str(current)
        changed = bool(created) or token != self.token
        self.token = token
        return changed
