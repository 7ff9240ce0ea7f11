"""A window's counts fit a Kafka message: the largest names are kept, the rest folded."""

from __future__ import annotations

from tables.bounded import OTHER, bounded


def test_counts_within_the_budget_are_kept_exactly():
    counts = {"pageviews|/a": [3], "orders|EUR": [2, 990]}
    assert bounded(counts, budget=10_000) == (counts, {})


def test_the_smallest_names_fold_into_other_per_metric_and_nothing_is_lost():
    counts = {f"pageviews|/{i:03d}" + "x" * 100: [i + 1] for i in range(200)}
    counts |= {"orders|EUR": [2, 990], "orders|USD": [1, 5]}
    kept, folded = bounded(counts, budget=12_000)
    views = {d: v for d, v in kept.items() if d.startswith("pageviews|")}
    assert sum(v[0] for v in views.values()) == sum(range(1, 201))
    assert f"pageviews|{OTHER}" in views and folded["pageviews"] == 201 - len(views)
    kept_ranks = [v[0] for d, v in views.items() if d != f"pageviews|{OTHER}"]
    assert min(kept_ranks) > max(
        v[0] for d, v in counts.items() if d.startswith("pageviews|") and d not in kept
    )  # the largest are kept
    assert kept["orders|EUR"] == [2, 990]  # multi-count cells are summed count by count
    assert bounded(counts, budget=12_000) == (kept, folded)  # deterministic
