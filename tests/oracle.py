"""The oracle: a plain-Python recomputation of the expected results from the generator's JSONL.

It shares no code with the product. It replays each (topic, partition) in produce order:
labelled-malformed lines are dead letters; an event_id seen before is a duplicate; an event
whose window [start, start + size) has end + grace <= the partition's max event time so far is
late; everything else counts in its window. A page is its URL's path.
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
    orders: Counter = field(default_factory=Counter)  # (window start, currency) -> orders
    revenue: Counter = field(default_factory=Counter)  # (window start, currency) -> cents
    dead_letters: Counter = field(default_factory=Counter)  # topic -> count
    dead_letter_reasons: Counter = field(default_factory=Counter)  # reason -> count
    duplicates: Counter = field(default_factory=Counter)  # topic -> count
    late: Counter = field(default_factory=Counter)  # topic -> count
    accepted: Counter = field(default_factory=Counter)  # topic -> count
    messages: Counter = field(default_factory=Counter)  # topic -> count


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
    for (topic, _), partition_lines in by_partition.items():
        seen: set[str] = set()
        watermark = -1
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
            if topic == clicks and body["type"] == "page_view":
                expected.page_views[start, urlsplit(body["url"]).path or "/"] += 1
            elif topic == orders:
                currency = body["currency"]
                expected.orders[start, currency] += 1
                expected.revenue[start, currency] += cents(
                    body["total"] if legacy else body["amount"], currency
                )
    return expected
