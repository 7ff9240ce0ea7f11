"""WindowTotal from one window's parts: sums over partitions, merged sketches, exact top-K; and
combining parts with the partitions' progress so each window with data is totalled once."""

from __future__ import annotations

import base64

from agents.window_results import progress_record
from agents.window_totals import combine, progress_key, window_total
from tables import sketch


def part(partition: int, partitions: int = 2, **metrics) -> dict:
    return {
        "id": f"clicks/tumbling/60000/p{partition}",
        "stream": "clicks",
        "kind": "tumbling",
        "start": "1970-01-01T00:01:00.000Z",
        "end": "1970-01-01T00:02:00.000Z",
        "partition": partition,
        "partitions": partitions,
        **metrics,
    }


def registers(*users: str) -> dict:
    packed = sketch.empty()
    for user in users:
        register, rank = sketch.position(user)
        packed[register] = max(packed[register], rank)
    return {"estimate": len(users), "registers": base64.b64encode(bytes(packed)).decode()}


def test_a_total_sums_every_partitions_counts_and_ranks_the_top_k_exactly():
    parts = [
        part(
            0,
            pageviews={"/a": 5, "/b": 2},
            sessions={"ended": {"sessions": 1, "bounces": 1, "duration_ms": 0}},
        ),
        part(
            1,
            pageviews={"/b": 4, "/c": 1},
            sessions={"ended": {"sessions": 2, "bounces": 0, "duration_ms": 7}},
        ),
    ]
    total = window_total(parts, top_k=2)
    assert total["id"] == "clicks/tumbling/60000" and total["partitions"] == 2
    assert total["pageviews"] == {"/a": 5, "/b": 6, "/c": 1}
    assert total["top_pages"] == [{"name": "/b", "count": 6}, {"name": "/a", "count": 5}]
    assert total["sessions"] == {"ended": {"sessions": 3, "bounces": 1, "duration_ms": 7}}
    assert "partition" not in total


def test_a_total_merges_sketches_so_a_user_in_two_partitions_counts_once():
    parts = [
        part(0, uniques={"users": registers("u1", "u2")}),
        part(1, uniques={"users": registers("u2", "u3")}),
    ]
    assert window_total(parts, top_k=3)["uniques"]["users"]["estimate"] == 3


def test_ties_in_the_top_k_go_by_name():
    total = window_total([part(0, 1, referrers={"b.com": 2, "a.com": 2, "c.com": 1})], top_k=2)
    assert [r["name"] for r in total["top_referrers"]] == ["a.com", "b.com"]


class DictStore(dict):
    """A results partition's kept state, sorted like the table's stores."""

    def items(self, prefix: bytes = b""):
        return sorted((k, v) for k, v in super().items() if k.startswith(prefix))


def progress(partition: int, watermark_ms: int, stream: str = "clicks", partitions: int = 2):
    return progress_record(stream, partition, partitions, watermark_ms, GRACE)


GRACE = 10_000
CLOSES = 120_000 + GRACE  # part()'s window [60 s, 120 s)


def test_a_window_is_totalled_once_every_partition_passed_it_with_the_parts_that_came():
    store = DictStore()
    assert combine(store, 1, part(1, pageviews={"/a": 2}), top_k=3) == []
    assert combine(store, 1, part(1, pageviews={"/a": 2}), top_k=3) == []  # sent again
    assert combine(store, 1, progress(1, CLOSES), top_k=3) == []  # partition 0 still open
    # partition 0 had nothing in the window: it sends no part, only its progress
    (total,) = combine(store, 1, progress(0, CLOSES + 5_000), top_k=3)
    assert total["id"] == "clicks/tumbling/60000" and total["pageviews"] == {"/a": 2}
    assert sorted(store) == [
        progress_key(1, "clicks"),
        b"T|1|00000000000000060000|funnel|tumbling|",
    ]
    # a part sent again after its partition passed the window (a crash upstream): nothing
    assert combine(store, 1, part(1, pageviews={"/a": 2}), top_k=3) == []
    assert combine(store, 1, progress(1, CLOSES + 60_000), top_k=3) == []
    assert not [k for k in store if b"|clicks|" in k]


def test_windows_without_any_part_get_no_total_and_progress_is_per_results_partition():
    store = DictStore()
    assert combine(store, 0, progress(0, 10**12), top_k=3) == []
    assert combine(store, 0, progress(1, 10**12), top_k=3) == []
    assert list(store) == [progress_key(0, "clicks")]


def test_the_funnel_waits_for_both_streams_then_gives_each_steps_conversion():
    clicks_uniques = {
        name: registers(*(f"u{i}" for i in range(n)))
        for name, n in (("users", 90), ("page_view", 80), ("add_to_cart", 20), ("checkout", 10))
    }
    store = DictStore()
    combine(store, 0, part(0, 1, uniques=clicks_uniques), top_k=3)
    orders = {**part(0, 1), "stream": "orders", "uniques": {"buyers": registers("u1")}}
    orders["id"] = "orders/tumbling/60000/p0"
    combine(store, 0, orders, top_k=3)
    (clicks_total,) = combine(store, 0, progress(0, CLOSES, partitions=1), top_k=3)
    assert clicks_total["stream"] == "clicks"
    orders_total, funnel = combine(store, 0, progress(0, CLOSES, "orders", 1), top_k=3)
    assert orders_total["stream"] == "orders"
    assert funnel["id"] == "funnel/tumbling/60000" and funnel["stream"] == "funnel"
    steps = [(s["step"], s["conversion"] is None) for s in funnel["steps"]]
    assert steps == [
        ("page_view", True),
        ("add_to_cart", False),
        ("checkout", False),
        ("buyers", False),
    ]
    assert funnel["steps"][-1]["users"] == 1
    assert sorted(store) == [progress_key(0, "clicks"), progress_key(0, "orders")]


def test_a_window_without_orders_gets_a_funnel_with_no_buyers():
    store = DictStore()
    combine(store, 0, part(0, 1, uniques={"page_view": registers("u1")}), top_k=3)
    combine(store, 0, progress(0, CLOSES, partitions=1), top_k=3)
    (funnel,) = combine(store, 0, progress(0, CLOSES, "orders", 1), top_k=3)
    assert [(s["step"], s["users"]) for s in funnel["steps"]] == [
        ("page_view", 1),
        ("add_to_cart", 0),
        ("checkout", 0),
        ("buyers", 0),
    ]
