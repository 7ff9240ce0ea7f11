"""Order facts records (streams/order_facts.py): what the orders side writes is what the clicks
side reads; anything else in the topic is unreadable (a dead letter, by the caller)."""

from __future__ import annotations

import orjson
import pytest

from streams.order_facts import order_facts_value, order_facts_values, read_order_facts


def test_a_record_reads_back_as_written():
    facts = [("o-1", "u-1", 1_000, "EUR", 4_990, 17)]
    assert read_order_facts(order_facts_value(facts, 2_000, "shop")) == (facts, 2_000, "shop")


def test_facts_written_before_the_order_offset_was_forwarded_read_with_offset_minus_one():
    body = orjson.dumps({"orders": [["o-1", "u-1", 1, "EUR", 5]], "watermark_ms": 1, "by": "a"})
    assert read_order_facts(body) == ([("o-1", "u-1", 1, "EUR", 5, -1)], 1, "a")


def test_many_facts_are_split_and_only_the_last_record_moves_the_watermark():
    facts = [(f"o-{i}", "u" * 2000, i, "EUR", 1, i) for i in range(400)]
    values = order_facts_values(facts, 9_000, "shop")
    read = [read_order_facts(v) for v in values]
    assert len(values) > 1 and [f for r in read for f in r[0]] == facts
    assert [r[1] for r in read] == [-1] * (len(values) - 1) + [9_000]


@pytest.mark.parametrize(
    "body",
    [
        b"{oops",
        orjson.dumps({"orders": [], "watermark_ms": "soon", "by": "shop"}),
        orjson.dumps({"orders": [["o-1", "u-1", 1.5, "EUR", 1]], "watermark_ms": 1, "by": "a"}),
        orjson.dumps({"orders": [["o-1", "u-1", 1]], "watermark_ms": 1, "by": "a"}),
        orjson.dumps({"orders": [["o-1", "u-1", 1, "EUR", 1, 2, 3]], "watermark_ms": 1, "by": "a"}),
        orjson.dumps({"orders": [["o-1", "u-1", 1, "EUR", 1, "2"]], "watermark_ms": 1, "by": "a"}),
        orjson.dumps({"orders": [], "watermark_ms": 1}),
        orjson.dumps({"orders": [], "watermark_ms": True, "by": "a"}),
    ],
)
def test_anything_else_is_unreadable(body):
    assert read_order_facts(body) is None
