"""What one click or order adds to its pane: counts per dimension and sketch positions."""

from __future__ import annotations

from agents.clicks import ALL_METRICS, click_measures, host_of, measures_of, page_of
from agents.orders import order_measures
from streams.records import ClickType
from streams.validation import ClickFields
from tables import sketch
from tables.sessions import Visit
from tests.builders import make_click, make_order


def test_a_page_is_its_url_path():
    assert page_of("/p/42?utm_source=mail#top") == "/p/42"
    assert page_of("?utm_source=ads") == "/"


def test_a_referrer_is_its_host():
    assert host_of("https://www.Google.com/search?q=x") == "www.google.com"
    assert host_of("android-app://com.reddit") == "com.reddit"


def test_a_page_view_adds_a_view_a_type_count_a_referrer_and_two_sketches():
    increments, uniques, visit = click_measures(make_click(url="/c/books?q=x"))
    assert increments == (
        ("clicktypes|page_view", (1,)),
        ("pageviews|/c/books", (1,)),
        ("referrers|search.example", (1,)),
    )
    position = sketch.position("u-1")
    assert uniques == (("uniques|users", *position), ("uniques|page_view", *position))
    assert visit == Visit("u-1", True, "search.example")


def test_other_clicks_add_no_view_and_only_funnel_steps_get_a_step_sketch():
    increments, uniques, visit = click_measures(make_click(type=ClickType.SEARCH, referrer=None))
    assert increments == (("clicktypes|search", (1,)),)
    assert [u[0] for u in uniques] == ["uniques|users"]
    assert visit == Visit("u-1", False, "")
    _, uniques, _ = click_measures(make_click(type=ClickType.CHECKOUT, referrer=None))
    assert [u[0] for u in uniques] == ["uniques|users", "uniques|checkout"]


def test_an_order_adds_one_order_and_its_amount_in_its_own_currency():
    increments, uniques, _, _ = order_measures(make_order(currency="JPY", amount_cents=1200))
    assert increments == (("orders|JPY", (1, 1200)),)
    assert uniques == (("uniques|buyers", *sketch.position("u-1")),)


def test_metrics_can_be_restricted_to_page_views():
    increments, uniques, visit = measures_of(frozenset({"pageviews"}))(make_click(url="/x"))
    assert increments == (("pageviews|/x", (1,)),) and uniques == () and visit is None


def test_a_click_measures_the_same_from_its_parsed_fields_as_from_its_record():
    clicks = [
        make_click(url="/c/books?q=x"),
        make_click(type=ClickType.CHECKOUT, referrer=None),
        make_click(type=ClickType.SEARCH, referrer="android-app://com.reddit"),
    ]
    for metrics in (ALL_METRICS, frozenset({"pageviews"}), frozenset({"referrers", "uniques"})):
        measure = measures_of(metrics)
        for click in clicks:
            fields = ClickFields(
                click.event_id, click.type, click.user_id, click.url, click.referrer, 0
            )
            assert measure(fields) == measure(click)
