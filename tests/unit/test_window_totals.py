"""WindowTotal from one window's parts: sums over partitions, merged sketches, exact top-K, and
collecting the parts until every partition's is in (once)."""

from __future__ import annotations

import base64

from agents.window_totals import DONE, collect, collect_funnel, window_total
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
        part(0, pageviews={"/a": 5, "/b": 2}, sessions={"ended": {"sessions": 1, "bounces": 1}}),
        part(1, pageviews={"/b": 4, "/c": 1}, sessions={"ended": {"sessions": 2, "bounces": 0}}),
    ]
    total = window_total(parts, top_k=2)
    assert total["id"] == "clicks/tumbling/60000" and total["partitions"] == 2
    assert total["pageviews"] == {"/a": 5, "/b": 6, "/c": 1}
    assert total["top_pages"] == [{"name": "/b", "count": 6}, {"name": "/a", "count": 5}]
    assert total["sessions"] == {"ended": {"sessions": 3, "bounces": 1}}
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


def test_parts_are_collected_until_every_partition_is_in_then_once():
    stored, complete = collect(None, part(1))
    assert complete is None
    stored, complete = collect(stored, part(1))  # the same part again: still one
    assert complete is None
    stored, complete = collect(stored, part(0, pageviews={"/a": 1}))
    assert stored == DONE and [p["partition"] for p in complete or []] == [0, 1]
    assert collect(stored, part(0)) == (DONE, None)  # sent again after the total: nothing


def test_the_funnel_waits_for_both_streams_then_gives_each_steps_conversion():
    clicks = {
        "stream": "clicks",
        "kind": "tumbling",
        "start": "1970-01-01T00:01:00.000Z",
        "end": "1970-01-01T00:02:00.000Z",
        "uniques": {
            name: {"estimate": n, "registers": ""}
            for name, n in (("users", 90), ("page_view", 80), ("add_to_cart", 20), ("checkout", 10))
        },
    }
    orders = {**clicks, "stream": "orders", "uniques": {"buyers": {"estimate": 5}}}
    stored, funnel = collect_funnel(None, orders)
    assert funnel is None
    stored, funnel = collect_funnel(stored, clicks)
    assert stored == DONE and funnel is not None
    assert funnel["id"] == "funnel/tumbling/60000" and funnel["stream"] == "funnel"
    assert [(s["step"], s["users"], s["conversion"]) for s in funnel["steps"]] == [
        ("page_view", 80, None),
        ("add_to_cart", 20, 0.25),
        ("checkout", 10, 0.5),
        ("buyers", 5, 0.5),
    ]
    assert collect_funnel(stored, clicks) == (DONE, None)
