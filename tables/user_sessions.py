"""Users' sessions in one source partition, as one batch changes them (pure; state passed in;
the session rules are tables.sessions).

Shape, in partition p's key space:
  U|p|<user> -> {"s": open sessions, "o": the position of the last click applied
                (tables.positions: its source offset, or [N, t] for a re-injected one)}
  C|p|<pane>|sessions|ended (tables.panes) -> (sessions, bounces, total duration ms) of the
                sessions that ended in the pane, its position that of the record whose
                watermark closed them

Rules: a click joins its user's sessions unless the user record's offset already covers it (a
commit cut short). Once the batch's watermark makes a session final it is closed: summarised,
counted exactly once in its expiry pane (the cell keeps the position of the record whose
watermark closed it, so two closes never share one), and kept for the attribution join. A user
record whose sessions all closed stays (empty, with its offset, so a redone click is not
absorbed twice) until the committed (settled) offset covers it.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from engine.processor import Store
from tables import sessions as rules
from tables.attribution import retained_prefix
from tables.panes import PaneBatch
from tables.positions import Position, as_json, decoded
from tables.sessions import Session, SessionIndex
from tables.windows import WindowSpec

SESSIONS_ENDED = "sessions|ended"  # (sessions, bounces, total duration ms) by expiry pane
EMPTY_USER = {"s": [], "o": -1}


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """A closed session of one user."""

    user: str
    start_ms: int
    end_ms: int
    clicks: int
    page_views: int
    entry_host: str
    ended_in_ms: int  # the pane it counts in


def user_prefix(partition: int) -> bytes:
    return f"U|{partition}|".encode()


def user_key(partition: int, user: str) -> bytes:
    return user_prefix(partition) + user.encode()


def load_sessions(partition: int, spec: WindowSpec, gap_ms: int, store: Store) -> SessionIndex:
    """A partition's session index rebuilt from its stored user records and the closed
    sessions kept for attribution (once per assignment, and after a restart)."""
    index = SessionIndex(spec, gap_ms)
    users, kept = user_prefix(partition), retained_prefix(partition)
    for key, raw in store.items(users):
        index.load(key[len(users) :].decode(), orjson.loads(raw))
    for key, raw in store.items(kept):
        index.retained[key[len(kept) :].decode()] = orjson.loads(raw)
    return index


Retain = Callable[[str, int, int, str], None]  # user, start, end, entry host (attribution)


class UserBatch:
    """The user records of one partition as one batch changes them."""

    def __init__(self, partition: int, store: Store, index: SessionIndex) -> None:
        self.partition, self.store, self.index = partition, store, index
        self.users: dict[str, dict] = {}  # user -> stored record, as changed by this batch

    def visit(self, events: Iterable[tuple[int, Any]]) -> None:
        """Accepted clicks, as (pane start, event with offset, time_ms, visit), join their
        users' sessions, unless a user record already covers a click's offset (one loop per
        batch: the hot path)."""
        users, read, absorb, gap_ms = self.users, self._read, rules.absorb, self.index.gap_ms
        for _, event in events:
            visit = event.visit
            if visit is None:
                continue
            user = users.get(visit.user)
            if user is None:
                user = users[visit.user] = read(visit.user)
            if user["o"] < event.offset:
                user["s"] = absorb(user["s"], event.time_ms, visit, gap_ms)
                user["o"] = event.offset

    def sessions_of(self, name: str) -> list[Session]:
        users = self.users
        return (users[name] if name in users else self._read(name))["s"]

    def close(
        self,
        spec: WindowSpec,
        watermark: int,
        rises: list[tuple[int, Position]],
        last: Position,
        panes: PaneBatch,
        retain: Retain,
    ) -> list[SessionSummary]:
        """Close the sessions final by `watermark`; count each in its expiry pane (at the
        position of the record in `rises` whose watermark closed it; `last` when none did
        here); `retain` keeps it for attribution while orders it covers may still come."""
        index = self.index
        for name, user in self.users.items():
            index.set(name, user["s"])
        ended: dict[tuple[Position, int], list[int]] = {}  # (closing position, pane) -> counts
        summaries = []
        for name in index.due(watermark):
            user = self._user(name)
            still_open: list[Session] = []
            for session in user["s"]:
                closes = rules.closes_at(session[1], spec, index.gap_ms)
                if closes > watermark:
                    still_open.append(session)
                    continue
                start, end, clicks, page_views, entry = session
                pane = rules.ended_in(end, spec, index.gap_ms)
                rise = bisect.bisect_left(rises, (closes,))  # a stored session closes after W0
                at = rises[rise][1] if rise < len(rises) else last
                counts = ended.setdefault((at, pane), [0, 0, 0])
                counts[0] += 1
                counts[1] += rules.is_bounce(clicks)
                counts[2] += end - start
                summaries.append(SessionSummary(name, start, end, clicks, page_views, entry, pane))
                retain(name, start, end, entry)
            user["s"] = still_open
            index.set(name, still_open)
        for (at, pane), amounts in sorted(ended.items()):  # positions ascending, as for events
            panes.add_at(pane, SESSIONS_ENDED, at, amounts)
        return summaries

    def write(self, settled: Position, writes: dict[bytes, bytes | None]) -> None:
        """The batch's user records; an emptied one is deleted once its position is
        committed (`settled`: the committed position)."""
        emptied, partition = self.index.emptied, self.partition
        for name, user in self.users.items():
            key = user_key(partition, name)
            if user["s"]:
                emptied.pop(name, None)
                writes[key] = _encode(user)
            elif user["o"] <= settled:
                emptied.pop(name, None)
                writes[key] = None
            else:
                emptied[name] = user["o"]
                writes[key] = _encode(user)
        for name in [n for n, at in emptied.items() if at <= settled]:
            del emptied[name]
            writes[user_key(partition, name)] = None

    def _user(self, name: str) -> dict:
        user = self.users.get(name)
        if user is None:
            user = self.users[name] = self._read(name)
        return user

    def _read(self, name: str) -> dict:
        raw = self.store.get(user_key(self.partition, name))
        if raw is None:
            return dict(EMPTY_USER)
        user = orjson.loads(raw)
        user["o"] = decoded(user["o"])
        return user


def _encode(user: dict) -> bytes:
    return orjson.dumps(user, default=as_json)
