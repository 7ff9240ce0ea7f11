"""Session windows: a user's clicks, by event time, with no gap of `gap_ms` or more inside.

A session is [start, end, clicks, page views, entry host]: its first and last click time, and
the referrer host of its first click ("" when it had none). A click at t joins every session
it lies within the gap of (start - gap < t < end + gap), so one late-ish click can bridge two
sessions into one; the merged session keeps the entry of the earlier start (the one already
stored on a tie).

A session is final once no event that is still on time can touch it: an on-time event's pane
is open, so once the pane holding end + gap - 1 has closed, every later on-time event is at
end + gap or after. Then it is closed, and its summary counts in the pane holding end + gap
(the minute it expired), which is still open at that moment: sessions per window are the
sessions that ended in it.
"""

from __future__ import annotations

import heapq
from operator import itemgetter
from typing import NamedTuple

from tables.positions import Position, decoded
from tables.windows import WindowSpec

Session = list  # [start_ms, end_ms, clicks, page views, entry host]


class Visit(NamedTuple):  # a tuple: built once per click, cheaply
    """What a click tells the sessions: who, and whether it is a page view and from where."""

    user: str
    page_view: bool
    entry_host: str  # the referrer's host, "" when none


_start = itemgetter(0)  # of a Session


def absorb(sessions: list[Session], time_ms: int, visit: Visit, gap_ms: int) -> list[Session]:
    """`sessions` (sorted by start) with the click at `time_ms` added; a new sorted list."""
    joined: Session = [time_ms, time_ms, 1, int(visit.page_view), visit.entry_host]
    kept = []
    for session in sessions:
        if session[0] - gap_ms < time_ms < session[1] + gap_ms:
            joined = _merge(session, joined)
        else:
            kept.append(session)
    kept.append(joined)
    if len(kept) > 1:  # usually the click joins the user's only session
        kept.sort(key=_start)
    return kept


def _merge(stored: Session, other: Session) -> Session:
    first = stored if stored[0] <= other[0] else other
    return [
        min(stored[0], other[0]),
        max(stored[1], other[1]),
        stored[2] + other[2],
        stored[3] + other[3],
        first[4],
    ]


def closes_at(end_ms: int, spec: WindowSpec, gap_ms: int) -> int:
    """The watermark at which a session whose last click is at `end_ms` is final."""
    return spec.closes_at(spec.start_of(end_ms + gap_ms - 1))


def ended_in(end_ms: int, spec: WindowSpec, gap_ms: int) -> int:
    """The pane a session's summary counts in: the one holding its expiry, end + gap."""
    return spec.start_of(end_ms + gap_ms)


def is_bounce(clicks: int) -> bool:
    """A session of a single click: the visitor left from the page they came in on."""
    return clicks == 1


class SessionIndex:
    """One partition's open sessions, in memory: when each user's earliest one closes.

    Loaded from the stored user records once per assignment; advanced by apply_batch as it
    stages changes (a rebalance discards it with the staged state).
    """

    def __init__(self, spec: WindowSpec, gap_ms: int) -> None:
        self.spec, self.gap_ms = spec, gap_ms
        self.due_at: dict[str, int] = {}  # user -> earliest close of their open sessions
        self.counts: dict[str, int] = {}  # user -> open sessions
        self.open_sessions = 0
        self.emptied: dict[str, Position] = {}  # user -> position of a stored record, no session
        self.retained: dict[str, list[list]] = {}  # user -> closed sessions kept for orders
        self._heap: list[tuple[int, str]] = []  # (close, user); stale entries skipped

    def load(self, user: str, record: dict) -> None:
        """A stored user record {"s": sessions, "o": last position applied}."""
        self.set(user, record["s"])
        if not record["s"]:
            self.emptied[user] = decoded(record["o"])

    def set(self, user: str, sessions: list[Session]) -> None:
        self.open_sessions += len(sessions) - self.counts.pop(user, 0)
        before = self.due_at.pop(user, None)
        if sessions:
            self.counts[user] = len(sessions)
            due = self.due_at[user] = min(closes_at(s[1], self.spec, self.gap_ms) for s in sessions)
            if due != before:  # a due time moves at most once per pane: the heap stays small
                heapq.heappush(self._heap, (due, user))

    def due(self, watermark_ms: int) -> list[str]:
        """Users with a session that closes at `watermark_ms` or before."""
        users = []
        while self._heap and self._heap[0][0] <= watermark_ms:
            due, user = heapq.heappop(self._heap)
            if self.due_at.get(user) == due:
                users.append(user)
        return users
