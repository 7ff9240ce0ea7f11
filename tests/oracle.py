"""The oracle: a plain-Python recomputation of the expected results from the generator's JSONL.

It shares no code with the product. It replays each (topic, partition) in produce order:
labelled-malformed lines are dead letters; an event_id seen before is a duplicate; an event
whose window [start, start + size) has end + grace <= the partition's max event time so far is
late; everything else counts in its window. A page is its URL's path, a referrer its host.
A partition's window is final (its result emitted) once the partition's max event time has
reached the window's end + grace.

Sessions: per user, on-time clicks with gaps shorter than `gap_ms` form one session (a click
within the gap of several sessions joins them; the entry referrer is the earliest session's,
or the click's own when it comes first). A session is over once the window holding
end + gap - 1 is final; it then counts (sessions, bounces = one-click sessions, duration) in
the window holding end + gap.

Attribution: an accepted order at t counts for the user's session with start <= t < end + gap
(host "(direct)" without referrer, "(no session)" without such a session), in the window
holding t, per partition.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from urllib.parse import urlsplit

ZERO_DECIMAL_CURRENCIES = {"JPY", "KRW"}


@dataclass
class Expected:
    page_views: Counter = field(default_factory=Counter)  # (window start, url) -> views
    click_types: Counter = field(default_factory=Counter)  # (window start, type) -> clicks
    referrers: Counter = field(default_factory=Counter)  # (window start, host) -> clicks
    users: dict = field(default_factory=lambda: defaultdict(set))  # (start, sketch) -> user ids
    orders: Counter = field(default_factory=Counter)  # (window start, currency) -> orders
    revenue: Counter = field(default_factory=Counter)  # (window start, currency) -> cents
    dead_letters: Counter = field(default_factory=Counter)  # topic -> count
    dead_letter_reasons: Counter = field(default_factory=Counter)  # reason -> count
    duplicates: Counter = field(default_factory=Counter)  # topic -> count
    late: Counter = field(default_factory=Counter)  # topic -> count
    accepted: Counter = field(default_factory=Counter)  # topic -> count
    messages: Counter = field(default_factory=Counter)  # topic -> count
    # (stream, window start, partition) -> {metric: {name: value}}: what that partition's
    # tumbling window result says, for every window (windows) or for those its own events
    # closed, i.e. with no ticks (final_results)
    windows: dict = field(default_factory=dict)
    final_results: dict = field(default_factory=dict)
    # (user, start, end, clicks, page views, entry host or "") of every session, once every
    # window has closed (sessions), or of those closed by the partition's own events
    sessions: set = field(default_factory=set)
    final_sessions: set = field(default_factory=set)
    # (window start, partition) -> {"<host>|<currency>": {"orders": n, "cents": c}}
    attributed: dict = field(default_factory=dict)
    placed: list = field(default_factory=list)  # accepted orders: (partition, user, t, cur, cents)


def millis(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def cents(amount: object, currency: str) -> int:
    digits = 0 if currency in ZERO_DECIMAL_CURRENCIES else 2
    return int(Decimal(str(amount)).scaleb(digits))


def recompute(
    lines: list[dict], clicks: str, orders: str, size_ms: int, grace_ms: int, gap_ms: int
) -> Expected:
    expected = Expected()
    by_partition: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for line in lines:
        by_partition[line["topic"], line["partition"]].append(line)
    for (topic, partition), partition_lines in by_partition.items():
        seen: set[str] = set()
        watermark = -1
        stream = "clicks" if topic == clicks else "orders"
        windows: dict = defaultdict(lambda: defaultdict(Counter))  # start -> metric -> counts
        visits = _Visits(size_ms, grace_ms, gap_ms)

        for line in partition_lines:
            expected.messages[topic] += 1
            label = line["label"]
            if label.get("fault") == "malformed":
                expected.dead_letters[topic] += 1
                expected.dead_letter_reasons[label["expected_reason"]] += 1
                continue
            body = json.loads(line["value"])
            legacy = "orderId" in body and "version" not in body
            event_id = body["eventId"] if legacy else body["event_id"]
            if event_id in seen:
                expected.duplicates[topic] += 1
                continue
            seen.add(event_id)
            time_ms = millis(body["createdAt"] if legacy else body["occurred_at"])
            start = time_ms - time_ms % size_ms
            if start + size_ms + grace_ms <= watermark:
                expected.late[topic] += 1
                continue
            watermark = max(watermark, time_ms)
            expected.accepted[topic] += 1
            window = windows[start]
            if topic == clicks:
                kind, referrer, user = body["type"], body.get("referrer"), body["user_id"]
                expected.click_types[start, kind] += 1
                window["clicktypes"][kind] += 1
                expected.users[start, "users"].add(user)
                if kind in ("page_view", "add_to_cart", "checkout"):
                    expected.users[start, kind].add(user)
                if kind == "page_view":
                    page = urlsplit(body["url"]).path or "/"
                    expected.page_views[start, page] += 1
                    window["pageviews"][page] += 1
                host = urlsplit(referrer).hostname if referrer else ""
                if referrer:
                    expected.referrers[start, host] += 1
                    window["referrers"][host] += 1
                visits.click(user, time_ms, kind == "page_view", host)
                ended = visits.end(watermark)
                expected.final_sessions.update(ended)
                _count_ended(ended, windows, size_ms, gap_ms)
            elif topic == orders:
                currency = body["currency"]
                amount = cents(body["total"] if legacy else body["amount"], currency)
                expected.orders[start, currency] += 1
                expected.revenue[start, currency] += amount
                buyer = body["userId"] if legacy else body["user_id"]
                expected.users[start, "buyers"].add(buyer)
                expected.placed.append((partition, buyer, time_ms, currency, amount))
                window["orders"][currency, "orders"] += 1
                window["orders"][currency, "cents"] += amount
        final_windows = {start: _result_counts(metrics) for start, metrics in windows.items()}
        _count_ended(visits.end(float("inf")), windows, size_ms, gap_ms)  # ticks end them all
        expected.sessions.update(visits.ended)
        for start, metrics in windows.items():
            expected.windows[stream, start, partition] = _result_counts(metrics)
            if start + size_ms + grace_ms <= watermark:
                expected.final_results[stream, start, partition] = final_windows[start]
    _attribute(expected, size_ms, gap_ms)
    return expected


def _attribute(expected: Expected, size_ms: int, gap_ms: int) -> None:
    sessions = defaultdict(list)
    for user, start, end, *_, host in expected.sessions:
        sessions[user].append((start, end, host))
    for partition, user, time_ms, currency, amount in expected.placed:
        covering = [h for s, e, h in sessions[user] if s <= time_ms < e + gap_ms]
        host = (covering[0] or "(direct)") if covering else "(no session)"
        window = expected.attributed.setdefault((time_ms - time_ms % size_ms, partition), {})
        counts = window.setdefault(f"{host}|{currency}", {"orders": 0, "cents": 0})
        counts["orders"] += 1
        counts["cents"] += amount


class _Visits:
    """Open sessions per user: [start, end, clicks, page views, entry host]."""

    def __init__(self, size_ms: int, grace_ms: int, gap_ms: int) -> None:
        self.size_ms, self.grace_ms, self.gap_ms = size_ms, grace_ms, gap_ms
        self.open: dict = defaultdict(list)
        self.ended: list[tuple] = []
        self.next_over = float("inf")  # the soonest watermark at which a session is over

    def over_at(self, session: list) -> int:
        last = session[1] + self.gap_ms - 1
        return last - last % self.size_ms + self.size_ms + self.grace_ms

    def click(self, user: str, time_ms: int, page_view: bool, host: str) -> None:
        gap = self.gap_ms
        near = [s for s in self.open[user] if s[0] - gap < time_ms < s[1] + gap]
        first = min(near, default=None, key=lambda s: s[0])
        self.open[user] = [s for s in self.open[user] if s not in near] + [
            [
                min([time_ms, *(s[0] for s in near)]),
                max([time_ms, *(s[1] for s in near)]),
                1 + sum(s[2] for s in near),
                page_view + sum(s[3] for s in near),
                first[4] if first is not None and first[0] <= time_ms else host,
            ]
        ]
        self.next_over = min(self.next_over, self.over_at(self.open[user][-1]))

    def end(self, watermark: float) -> list[tuple]:
        """Remove and return (user, *session) of the sessions over at `watermark`."""
        over: list[tuple] = []
        if watermark < self.next_over:
            return over
        for user, sessions in self.open.items():
            for session in list(sessions):
                if self.over_at(session) <= watermark:
                    sessions.remove(session)
                    over.append((user, *session))
        self.ended += over
        remaining = [self.over_at(s) for sessions in self.open.values() for s in sessions]
        self.next_over = min(remaining, default=float("inf"))
        return over


def totals(windows: dict) -> dict:
    """(stream, window start) -> the counts of windows keyed (stream, start, partition), summed
    over partitions."""
    summed: dict = {}
    for (stream, start, _), counts in windows.items():
        summed[stream, start] = _summed(summed.get((stream, start), {}), counts)
    return summed


def hopping(windows: dict, size_ms: int, hop_ms: int) -> dict:
    """Hopping windows [h, h + hop) from tumbling ones keyed (stream, start, partition): every
    hop holding at least one of them, its counts summed."""
    hops: dict = {}
    for (stream, start, partition), counts in windows.items():
        for hop in range(start - hop_ms + size_ms, start + 1, size_ms):
            hops[stream, hop, partition] = _summed(hops.get((stream, hop, partition), {}), counts)
    return hops


def _summed(a: dict, b: dict) -> dict:
    """Nested counts added key by key."""
    total = dict(a)
    for key, value in b.items():
        if isinstance(value, dict):
            total[key] = _summed(total.get(key, {}), value)
        else:
            total[key] = total.get(key, 0) + value
    return total


def _count_ended(sessions: list[tuple], windows: dict, size_ms: int, gap_ms: int) -> None:
    """Each ended session counts in the window holding its expiry, end + gap."""
    for _, start, end, clicks, *_ in sessions:
        ended = windows[(end + gap_ms) - (end + gap_ms) % size_ms]["sessions"]
        ended["sessions"] += 1
        ended["bounces"] += clicks == 1
        ended["duration_ms"] += end - start


def _result_counts(metrics: dict) -> dict:
    """The counts of a window result, shaped as the result event carries them."""
    shaped: dict = {}
    for metric, counts in metrics.items():
        if metric == "orders":
            for (currency, name), value in counts.items():
                shaped.setdefault("orders", {}).setdefault(currency, {})[name] = value
        elif metric == "sessions":
            shaped["sessions"] = {"ended": dict(counts)}
        else:
            shaped[metric] = dict(counts)
    return shaped


def hopping_users(users: dict, size_ms: int, hop_ms: int) -> dict:
    """(hop start, sketch name) -> user ids of the hopping windows [h, h + hop), from the
    tumbling ones keyed (start, sketch name) (Expected.users): every hop holding one of them."""
    hops: dict = defaultdict(set)
    for (start, name), ids in users.items():
        for hop in range(start - hop_ms + size_ms, start + 1, size_ms):
            hops[hop, name] |= ids
    return hops
