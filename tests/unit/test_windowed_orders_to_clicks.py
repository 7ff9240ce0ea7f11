"""The orders processor forwards the orders it accepts, as order facts, to the clicks processor
of the same partition, in the same worker (tests/unit/partition_rig.py). A crash, a commit of
either side cut short, or a rebalance makes the orders side redo batches and forward facts
again, with other batch boundaries and watermarks; the clicks side must still attribute every
order once, and both sides emit exactly what an uninterrupted run emits: the same results,
attributions, sessions, late events and dead letters by id, the same counters and the same
numbers in Redis.

One number differs by nature: the clicks side's count of facts records (`order_facts`), as
the orders side sends one per batch."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from tests.unit.partition_rig import HOPPING, MIN, Emitted, chaotic, steady, traffic

RIG = {"spec": HOPPING, "partitions": 2, "orders_side": True}


def but_facts_records(emitted: Emitted) -> Emitted:
    counters = {
        of: {name: n for name, n in counts.items() if name != "order_facts"}
        for of, counts in emitted.counters.items()
    }
    shown = {
        key: {f: v for f, v in fields.items() if not f.endswith("|order_facts")}
        for key, fields in emitted.shown.items()
    }
    return replace(emitted, counters=counters, shown=shown)


@pytest.mark.parametrize("seed", range(2))
async def test_orders_forwarded_again_by_redone_batches_are_attributed_once(seed):
    rng = random.Random(seed)
    inputs = traffic(rng, clicks=300, span_ms=40 * MIN, real_orders=True, orders_share=0.3)
    expected = await steady(inputs, **RIG)
    streams = {rid.split("/")[0] for rid in expected.results}
    assert streams == {"clicks", "orders", "attribution"}
    attributed = [rid for rid in expected.results if rid.startswith("attribution/")]
    assert len(attributed) > 15
    for p in (0, 1):
        orders = expected.counters["orders", p]
        assert orders["accepted"] > 10 and orders["duplicates"] > 0 and orders["late"] > 0
        assert expected.counters["clicks", p]["late_orders"] == 0  # none of their facts late
    for first in ("orders", "clicks", "orders"):  # whose commit a crash cuts short
        got = await chaotic(inputs, rng, first=first, **RIG)
        assert but_facts_records(got) == but_facts_records(expected)
