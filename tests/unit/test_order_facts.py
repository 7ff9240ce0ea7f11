"""Order facts records (streams/order_facts.py): what the orders side writes is what the clicks
side reads; anything else with the header is unreadable (a dead letter, by the caller)."""

from __future__ import annotations

import orjson
import pytest

from streams.order_facts import is_order_facts, order_facts_record, read_order_facts


def test_a_record_reads_back_as_written():
    facts = [("o-1", "u-1", 1_000, "EUR", 4_990)]
    value, headers = order_facts_record(facts, 2_000, "shop")
    assert is_order_facts(headers) and is_order_facts(dict(headers))
    assert read_order_facts(value) == (facts, 2_000, "shop")
    assert not is_order_facts([("clickstream-tick", b"1")]) and not is_order_facts(None)


@pytest.mark.parametrize(
    "body",
    [
        b"{oops",
        orjson.dumps({"orders": [], "watermark_ms": "soon", "by": "shop"}),
        orjson.dumps({"orders": [["o-1", "u-1", 1.5, "EUR", 1]], "watermark_ms": 1, "by": "a"}),
        orjson.dumps({"orders": [["o-1", "u-1", 1]], "watermark_ms": 1, "by": "a"}),
        orjson.dumps({"orders": [], "watermark_ms": 1}),
        orjson.dumps({"orders": [], "watermark_ms": True, "by": "a"}),
    ],
)
def test_anything_else_is_unreadable(body):
    assert read_order_facts(body) is None
