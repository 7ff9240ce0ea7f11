"""One clicks partition driven through apply_batch with sessions on: its stored state as a dict
and the worker's in-memory indexes over it (shared by the session and attribution tests)."""

from __future__ import annotations

import orjson

from tables.dedup import SeenIndex, seen_prefix
from tables.sessions import Visit
from tables.window_state import (
    KEYSPACE,
    SESSIONS_ENDED,
    Observation,
    apply_batch,
    cell_key,
    load_sessions,
)
from tables.windows import WindowSpec

SPEC = WindowSpec(size_ms=60_000, grace_ms=10_000, dedup_horizon_ms=3_600_000, hop_ms=60_000)
GAP = 120_000
MIN = 60_000


def click(offset: int, time_ms: int, user: str = "u1", host: str = "", view: bool = True):
    return Observation(offset, f"e{offset}", time_ms, (), (), Visit(user, view, host))


class Partition:
    """One partition's stored state and the worker's in-memory indexes over it."""

    def __init__(self) -> None:
        self.store: dict[bytes, bytes] = {}
        self.restart()

    def restart(self) -> None:
        """Indexes rebuilt from the stored state, as after a crash or a rebalance."""
        self.index = load_sessions(0, SPEC, GAP, self)
        self.seen = SeenIndex.load(self.items(seen_prefix(0)))

    def get(self, key: bytes) -> bytes | None:
        return self.store.get(key)

    def items(self, prefix: bytes):
        return [(k, v) for k, v in sorted(self.store.items()) if k.startswith(prefix)]

    def apply(self, items, land: int | None = None):
        """Apply a batch; commit all its writes in KEYSPACE's order, or only the first `land`
        (a flush cut short by a crash: the worker restarts)."""
        out = apply_batch(0, items, SPEC, self, self.seen, self.index)
        writes = KEYSPACE.ordered(out.writes)
        for key, value in writes if land is None else writes[:land]:
            if value is None:
                self.store.pop(key, None)
            else:
                self.store[key] = value
        if land is None:
            for bucket in out.new_buckets:
                self.seen.add(*bucket)
            self.seen.drop(out.expired_buckets)
        else:
            self.restart()
        return out

    def ended(self, pane: int) -> list[int]:
        raw = self.store.get(cell_key(0, pane, SESSIONS_ENDED))
        return orjson.loads(raw)["v"] if raw else [0, 0, 0]
