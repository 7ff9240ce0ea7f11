"""SessionSummary: the derived event for one closed user session (tables.sessions).

Emitted once when the session is final; key = user_id; id "sessions/<user>/<start ms>" (a
user's sessions never share a start). `ended_in` is the pane whose `sessions` metric counts it.
"""

from __future__ import annotations

from typing import Any

from streams.eventtime import format_timestamp
from tables.sessions import is_bounce
from tables.user_sessions import SessionSummary


def session_summary(partition: int, session: SessionSummary) -> dict[str, Any]:
    return {
        "id": f"sessions/{session.user}/{session.start_ms}",
        "user_id": session.user,
        "start": format_timestamp(session.start_ms),
        "end": format_timestamp(session.end_ms),
        "duration_ms": session.end_ms - session.start_ms,
        "clicks": session.clicks,
        "page_views": session.page_views,
        "bounce": is_bounce(session.clicks),
        "entry_referrer": session.entry_host or None,
        "ended_in": format_timestamp(session.ended_in_ms),
        "partition": partition,
    }
