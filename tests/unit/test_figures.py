"""Figure builders: given read-model rows, the traces, values and display strings they produce."""

from __future__ import annotations

from collections.abc import Callable

import plotly.graph_objects as go
import pytest

from dashboard import figures
from dashboard.figures import Kpi
from serving.read_model import (
    AttributionRow,
    CountRow,
    FraudRow,
    FunnelStep,
    OrderRow,
    PageViewRow,
    PartitionRow,
    PipelineRow,
    SessionRow,
    UniqueRow,
)

MINUTE = 60_000
T0 = 1_767_268_800_000  # 2026-01-01 12:00 UTC


def views(window: int, url: str, n: int) -> PageViewRow:
    return PageViewRow(T0 + window * MINUTE, url, n)


def order(window: int, currency: str, orders: int, cents: int) -> OrderRow:
    return OrderRow(T0 + window * MINUTE, currency, orders, cents)


def stream(name: str, *partitions: PartitionRow) -> PipelineRow:
    marks = [p.watermark_ms for p in partitions if p.watermark_ms is not None]
    return PipelineRow(
        name,
        accepted=sum(p.accepted for p in partitions),
        duplicates=sum(p.duplicates for p in partitions),
        late=sum(p.late for p in partitions),
        dead_letters=sum(p.dead_letters for p in partitions),
        low_watermark_ms=min(marks, default=None),
        partitions=partitions,
    )


def annotation_texts(figure: go.Figure) -> list[str]:
    return [a.text for a in figure.layout.annotations]


def test_page_views_draw_the_total_then_the_top_urls_by_views() -> None:
    rows = [
        views(0, "/home", 5),
        views(0, "/cart", 1),
        views(0, "/blog", 2),
        views(1, "/home", 7),
        views(1, "/blog", 4),
    ]

    figure = figures.page_views_figure(rows, top_n=2)

    assert [t.name for t in figure.data] == ["All pages", "/home", "/blog"]
    assert figure.data[0].y == (8, 11)
    assert figure.data[2].y == (2, 4)
    assert figure.data[0].x == ("2026-01-01 12:00:00", "2026-01-01 12:01:00")


def test_a_url_missing_from_a_window_is_drawn_as_zero_there() -> None:
    figure = figures.page_views_figure([views(0, "/home", 3), views(1, "/cart", 9)], top_n=5)

    by_name = {t.name: t.y for t in figure.data}

    assert by_name["/home"] == (3, 0)
    assert by_name["/cart"] == (0, 9)


def test_page_views_axis_names_the_window_size() -> None:
    figure = figures.page_views_figure([views(0, "/home", 1)], window_ms=5 * MINUTE)

    assert figure.layout.yaxis.title.text == "Page views per 5 min"
    assert figure.layout.xaxis.title.text == "Window start (UTC)"


def test_revenue_has_one_axis_per_currency_in_units_not_cents() -> None:
    rows = [order(0, "USD", 2, 1999), order(1, "USD", 1, 500), order(1, "EUR", 1, 4550)]

    figure = figures.revenue_figure(rows)

    assert [t.name for t in figure.data] == ["EUR", "USD"]
    eur, usd = figure.data
    assert usd.y == (19.99, 5.0)
    assert eur.y == (0.0, 45.5)
    assert usd.customdata == ("USD 19.99", "USD 5.00")
    assert (eur.yaxis, usd.yaxis) == ("y", "y2"), "each currency on its own axis"
    titles = (figure.layout.yaxis.title.text, figure.layout.yaxis2.title.text)
    assert titles == ("EUR per minute", "USD per minute")


def test_top_pages_show_the_latest_window_largest_bar_on_top() -> None:
    rows = [views(0, "/old", 99), views(1, "/a", 3), views(1, "/b", 10), views(1, "/c", 3)]

    (bars,) = figures.top_pages_figure(rows, limit=2).data

    assert bars.y == ("/a", "/b")  # Plotly draws the last category at the top
    assert bars.x == (3, 10)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: figures.page_views_figure([]), "No page views yet"),
        (lambda: figures.top_pages_figure([]), "No page views yet"),
        (lambda: figures.revenue_figure([]), "No orders yet"),
    ],
)
def test_no_rows_give_an_empty_state_figure(build: Callable[[], go.Figure], message: str) -> None:
    figure = build()

    assert figure.data == ()
    assert any(text.startswith(message) for text in annotation_texts(figure))


def test_kpis_sum_the_latest_window_and_the_pipeline_counters() -> None:
    page_views = [views(0, "/home", 100), views(1, "/home", 7), views(1, "/cart", 3)]
    orders = [order(0, "USD", 9, 900), order(1, "EUR", 1, 250), order(1, "USD", 2, 12_345)]
    pipeline = [
        stream("clicks", PartitionRow(0, T0, 10, 2, 1, 0), PartitionRow(1, T0, 10, 1, 0, 0)),
        stream("orders", PartitionRow(0, T0, 5, 0, 0, 4)),
    ]

    cards = figures.kpis(page_views, orders, pipeline, window_ms=MINUTE, grace_ms=30_000)

    assert cards == [
        Kpi("Page views", "10", "window 2026-01-01 12:01\u201312:02 UTC"),
        Kpi("Orders", "3", "window 2026-01-01 12:01\u201312:02 UTC"),
        Kpi("Revenue", "USD 123.45", "EUR 2.50"),
        Kpi("Open sessions", "0", "not yet expired"),
        Kpi("Late events", "1", "beyond 30 s grace", "warn"),
        Kpi("Duplicates dropped", "3", "redeliveries, counted once"),
        Kpi("Dead letters", "4", "in the dead-letter topic", "bad"),
    ]


def test_kpis_before_any_data_are_zeros_not_errors() -> None:
    cards = {k.label: k for k in figures.kpis([], [], [])}

    assert cards["Page views"].value == "0"
    assert cards["Revenue"].value == "\u2014"
    assert cards["Dead letters"] == Kpi("Dead letters", "0", "no bad input", "good")


def test_pipeline_table_has_a_row_per_partition_with_its_watermark() -> None:
    pipeline = [stream("clicks", PartitionRow(0, T0 + 61_000, 1234, 0, 0, 0)), stream("orders")]

    table = figures.pipeline_table(pipeline)

    assert table.rows == (("clicks", "0", "2026-01-01 12:01:01", "1,234", "0", "0", "0"),)
    assert len(table.header) == len(table.rows[0])


def test_event_time_is_the_lowest_watermark_over_streams() -> None:
    pipeline = [
        stream("clicks", PartitionRow(0, T0 + 5_000, 1, 0, 0, 0)),
        stream(
            "orders", PartitionRow(0, T0 + 2_000, 1, 0, 0, 0), PartitionRow(1, None, 0, 0, 0, 0)
        ),
    ]

    assert figures.event_time(pipeline) == "event time 2026-01-01 12:00:02 UTC"
    assert figures.event_time([stream("clicks")]) == "no events processed yet"


@pytest.mark.parametrize(
    ("cents", "text"),
    [(0, "USD 0.00"), (5, "USD 0.05"), (123_456_789, "USD 1,234,567.89"), (-250, "USD -2.50")],
)
def test_money_is_exact_from_cents(cents: int, text: str) -> None:
    assert figures.money(cents, "USD") == text


@pytest.mark.parametrize(
    ("window_ms", "text"),
    [(None, "per minute"), (60_000, "per minute"), (300_000, "per 5 min"), (30_000, "per 30 s")],
)
def test_per_window_reads_naturally(window_ms: int | None, text: str) -> None:
    assert figures.per_window(window_ms) == text


def test_money_uses_the_currency_minor_digits():
    assert figures.money(150050, "USD") == "USD 1,500.50"
    assert figures.money(1500, "JPY") == "JPY 1,500"


def test_funnel_figure_labels_each_step_with_users_and_conversion():
    steps = [
        FunnelStep("page_view", 400, None),
        FunnelStep("add_to_cart", 100, 0.25),
        FunnelStep("checkout", 50, 0.5),
        FunnelStep("buyers", 25, 0.5),
    ]
    (trace,) = figures.funnel_figure(steps).data
    assert list(trace.x) == [400, 100, 50, 25]
    assert list(trace.text) == ["400", "100 · 25%", "50 · 50%", "25 · 50%"]
    assert trace.y[-1] == "Ordered"


def test_lines_break_across_windows_without_data_instead_of_joining_them():
    rows = [views(0, "/a", 3), views(1, "/a", 4), views(5, "/a", 1)]  # minutes 0, 1, then 5
    total, line = figures.page_views_figure(rows, window_ms=MINUTE).data
    assert list(total.y) == [3, 4, None, 1] and list(line.y) == [3, 4, None, 1]
    assert total.x[2] == figures.utc_timestamp(T0 + 2 * MINUTE)  # the first empty window
    users = [UniqueRow(T0, "users", 5), UniqueRow(T0 + 3 * MINUTE, "users", 2)]
    (user_line, _) = figures.unique_users_figure(users, window_ms=MINUTE).data
    assert list(user_line.y) == [5, None, 2]


def test_a_funnel_step_after_a_step_of_no_users_shows_no_rate():
    steps = [
        FunnelStep("page_view", 40, None),
        FunnelStep("add_to_cart", 0, 0.0),
        FunnelStep("checkout", 0, None),
        FunnelStep("buyers", 0, None),
    ]
    (trace,) = figures.funnel_figure(steps).data
    assert list(trace.text) == ["40", "0 · 0%", "0 · —", "0 · —"]


def test_the_late_events_card_warns_when_late_events_are_a_large_share() -> None:
    few = [stream("clicks", PartitionRow(0, T0, 98, 0, 2, 0))]
    many = [stream("clicks", PartitionRow(0, T0, 14, 0, 986, 0))]  # an unsorted import
    assert figures.kpis([], [], few, grace_ms=30_000)[4] == Kpi(
        "Late events", "2", "beyond 30 s grace", "warn"
    )
    assert figures.kpis([], [], many, grace_ms=30_000)[4] == Kpi(
        "Late events", "986", "99% of events: is the input in event-time order?", "bad"
    )


def test_unique_users_figure_draws_users_and_buyers():
    rows = [UniqueRow(0, "users", 10), UniqueRow(60_000, "users", 12), UniqueRow(0, "buyers", 2)]
    users, buyers = figures.unique_users_figure(rows).data
    assert list(users.y) == [10, 12] and list(buyers.y) == [2]


def test_top_referrers_sum_over_windows_largest_on_top():
    rows = [CountRow(0, "t.co", 2), CountRow(60_000, "t.co", 5), CountRow(0, "bing.com", 4)]
    (trace,) = figures.top_referrers_figure(rows).data
    assert list(trace.y) == ["bing.com", "t.co"] and list(trace.x) == [4, 7]


def test_sessions_figure_draws_sessions_ended_and_bounce_rate():
    rows = [SessionRow(T0, 4, 1, 240_000, 0.25, 60_000.0)]
    figure = figures.sessions_figure(rows, 60_000)
    bars, line = figure.data
    assert list(bars.y) == [4] and list(line.y) == [0.25]
    assert figure.layout.yaxis.title.text == "Sessions per minute"
    assert figure.layout.yaxis2.title.text == "Bounce rate"  # each axis its own title
    assert figures.sessions_figure([]).layout.annotations[0].text == "No session has ended yet"
    waiting = figures.sessions_figure([], gap_ms=1_800_000).layout.annotations[0].text
    assert waiting == "No session has ended yet (one ends 30 min after its last click)"


def test_attribution_figure_stacks_orders_per_referrer_by_currency_largest_on_top():
    rows = [
        AttributionRow(T0, "t.co", "USD", 2, 5_000),
        AttributionRow(T0 + 60_000, "t.co", "EUR", 1, 999),
        AttributionRow(T0, "(direct)", "USD", 5, 10_000),
    ]
    eur, usd = figures.attribution_figure(rows).data
    assert list(usd.y) == ["t.co", "(direct)"] and list(usd.x) == [2, 5]
    assert list(eur.x) == [1, 0] and eur.customdata[0] == "EUR 9.99"
    empty = figures.attribution_figure([]).layout.annotations[0].text
    assert empty == "No window attributed yet (both streams must pass it)"


def test_the_fraud_rate_figure_stacks_passed_and_alerted_orders_under_the_rate():
    rows = [FraudRow(T0, 10, 1, 0.1, (9,) + (0,) * 8 + (1,)), FraudRow(T0 + MINUTE, 4, 2, 0.5, ())]
    passed, alerts, rate = figures.fraud_rate_figure(rows, MINUTE).data
    assert (list(passed.y), list(alerts.y), list(rate.y)) == ([9, 2], [1, 2], [0.1, 0.5])
    assert rate.yaxis == "y2"


def test_the_score_distribution_marks_the_upper_half_and_says_when_empty():
    (bars,) = figures.score_distribution_figure((5, 0, 0, 0, 0, 0, 0, 0, 1, 2)).data
    assert list(bars.x)[:2] == ["0.0", "0.1"] and list(bars.y)[-1] == 2
    assert bars.marker.color[4] != bars.marker.color[5]
    empty = figures.score_distribution_figure((0,) * 10)
    assert empty.layout.annotations[0].text == "No order scored yet"


def test_an_alert_row_shows_money_in_its_currency_and_its_reasons():
    alert = {
        "occurred_at": "2026-01-01T12:00:05.250Z", "order_id": 7, "user": "u1",
        "amount_cents": 1500, "currency": "JPY", "score": 0.9512, "reasons": ["a", "b"],
    }  # fmt: skip
    (row,) = figures.alerts_table([alert]).rows
    assert row == ("2026-01-01 12:00:05", "7", "u1", "JPY 1,500", "0.95", "a; b")


def test_the_contributions_show_only_the_signals_that_fired_largest_on_top():
    fired = [
        {"feature": "small_order", "value": 1, "weight": 1.5, "reason": "small"},
        {"feature": "new_ip", "value": 0, "weight": 0, "reason": None},
        {"feature": "user_cards_10m", "value": 3, "weight": 3.0, "reason": "cards"},
    ]
    (bars,) = figures.contributions_figure(fired).data
    assert list(bars.y) == ["small_order", "user_cards_10m"]  # Plotly draws the last on top
    none = figures.contributions_figure(fired[1:2])
    assert "bias alone" in none.layout.annotations[0].text
