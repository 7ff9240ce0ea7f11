"""The oracle: a plain-Python recomputation of the expected results from the generator's JSONL.

It shares no code with the product. It replays each (topic, partition) in produce order:
labelled-malformed lines are dead letters; an event_id seen before is a duplicate; an event
whose window [start, start + size) has end + grace <= the partition's max event time so far is
late; everything else counts in its window. A page is its URL's path, a referrer its host.
A partition's window is final (its result emitted) once the partition's max event time has
reached the window's end + grace.
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


def millis(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def cents(amount: object, currency: str) -> int:
    digits = 0 if currency in ZERO_DECIMAL_CURRENCIES else 2
    return int(Decimal(str(amount)).scaleb(digits))


def recompute(lines: list[dict], clicks: str, orders: str, size_ms: int, grace_ms: int) -> Expected:
    expected = Expected()
    by_partition: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for line in lines:
        by_partition[line["topic"], line["partition"]].append(line)
    for (topic, partition), partition_lines in by_partition.items():
        seen: set[str] = set()
        watermark = -1
        stream = "clicks" if topic == clicks else "orders"
        windows: dict = defaultdict(lambda: defaultdict(Counter))  # start -> metric -> counts
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
                if referrer:
                    host = urlsplit(referrer).hostname
                    expected.referrers[start, host] += 1
                    window["referrers"][host] += 1
            elif topic == orders:
                currency = body["currency"]
                amount = cents(body["total"] if legacy else body["amount"], currency)
                expected.orders[start, currency] += 1
                expected.revenue[start, currency] += amount
                expected.users[start, "buyers"].add(body["userId"] if legacy else body["user_id"])
                window["orders"][currency, "orders"] += 1
                window["orders"][currency, "cents"] += amount
        for start, metrics in windows.items():
            expected.windows[stream, start, partition] = _result_counts(metrics)
            if start + size_ms + grace_ms <= watermark:
                expected.final_results[stream, start, partition] = _result_counts(metrics)
    return expected


def _result_counts(metrics: dict) -> dict:
    """The counts of a window result, shaped as the result event carries them."""
    shaped: dict = {}
    for metric, counts in metrics.items():
        if metric == "orders":
            for (currency, name), value in counts.items():
                shaped.setdefault("orders", {}).setdefault(currency, {})[name] = value
        else:
            shaped[metric] = dict(counts)
    return shaped
