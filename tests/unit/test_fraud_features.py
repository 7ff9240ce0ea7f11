"""The fraud features (fraud.features): each formula on plain state, one behaviour per test."""

from __future__ import annotations

from dataclasses import replace

from fraud import features as f
from fraud.features import Click, Order

T = 1_767_225_600_000
MIN = 60_000


def make_order(n: int = 1, at: int = T, **overrides) -> Order:
    fields = {
        "event_id": f"o{n}", "order_id": n, "user": "u1", "time_ms": at, "amount": 2_000,
        "currency": "EUR", "card": "card-1", "card_country": "DE", "device": "d1",
        "ip": "46.1.2.3",
    }  # fmt: skip
    return Order(**{**fields, **overrides})


def make_click(n: int = 1, at: int = T, kind: str = "page_view", **overrides) -> Click:
    fields = {"event_id": f"c{n}", "time_ms": at, "page_view": kind == "page_view",
              "add_to_cart": kind == "add_to_cart", "device": "d1", "ip": "46.1.2.3"}  # fmt: skip
    return Click(**{**fields, **overrides})


def user_features(*events: Click | Order) -> f.Features:
    """The features of the last event (an order), after the others."""
    user = f.new_user()
    out = None
    for event in events:
        if isinstance(event, Click):
            f.add_click(user, event)
        else:
            out = f.add_user_order(user, event)
    assert out is not None
    return out


def test_velocity_counts_the_orders_of_the_last_10_minutes_and_hour_with_this_one():
    orders = [make_order(i, T + i * 9 * MIN) for i in range(5)]  # 0, 9, 18, 27, 36 min
    got = user_features(*orders)
    assert got["user_orders_10m"] == 2 and got["user_orders_1h"] == 5
    assert got["user_amount_1h"] == 5 * 2_000


def test_the_amount_in_the_hour_sums_only_the_orders_currency():
    got = user_features(make_order(1, amount=900, currency="USD"), make_order(2, T + 1))
    assert got["user_amount_1h"] == 2_000 and got["user_orders_1h"] == 2


def test_cards_in_10_minutes_are_distinct_cards():
    orders = [make_order(i, T + i * MIN, card=f"card-{i % 3}") for i in range(6)]
    assert user_features(*orders)["user_cards_10m"] == 3


def test_a_first_order_has_no_deviation_and_says_so():
    got = user_features(make_order(amount=90_000))
    assert got["first_order"] == 1 and got["amount_z"] == 0.0


def test_the_amount_deviation_is_against_the_exponentially_weighted_history():
    history = [make_order(i, T + i, amount=2_000 + 100 * (i % 2)) for i in range(6)]
    usual = user_features(*history, make_order(9, T + 10, amount=2_050))
    dear = user_features(*history, make_order(9, T + 10, amount=20_000))
    assert usual["first_order"] == 0 and abs(usual["amount_z"]) < 1
    assert dear["amount_z"] > 10  # s is tiny: the floor m / 4 = ~500 bounds it (~36)
    assert dear["amount_z"] < 40


def test_a_duplicate_order_gives_no_features_and_counts_once():
    user = f.new_user()
    assert f.add_user_order(user, make_order(1)) is not None
    assert f.add_user_order(user, make_order(1)) is None
    assert f.add_user_order(user, make_order(2, T + 1))["user_orders_10m"] == 2


def test_the_session_before_the_order_gives_pages_age_and_cart():
    clicks = [make_click(1, T), make_click(2, T + 20_000), make_click(3, T + 40_000, "add_to_cart")]
    got = user_features(*clicks, make_order(at=T + 100_000))
    assert got["no_recent_session"] == 0 and got["session_pages"] == 2
    assert got["session_age_s"] == 100.0 and got["no_cart"] == 0


def test_no_click_in_the_30_minutes_before_is_no_session():
    got = user_features(make_click(1, T), make_order(at=T + 31 * MIN))
    assert got["no_recent_session"] == 1 and got["session_pages"] == 0 and got["no_cart"] == 1


def test_a_gap_of_30_minutes_starts_a_new_session():
    got = user_features(make_click(1, T), make_click(2, T + 30 * MIN), make_order(at=T + 31 * MIN))
    assert got["session_pages"] == 1 and got["session_age_s"] == 60.0


def test_a_duplicate_click_counts_once():
    got = user_features(make_click(1, T), make_click(1, T), make_order(at=T + 1000))
    assert got["session_pages"] == 1


def test_clicks_under_a_second_apart_make_the_fast_click_share():
    bot = [make_click(i, T + i * 400) for i in range(10)]  # 9 gaps of 0.4 s
    human = [make_click(i, T + i * 8_000) for i in range(10)]
    assert user_features(*bot, make_order(at=T + 5_000))["fast_click_share"] == 1.0
    assert user_features(*human, make_order(at=T + 90_000))["fast_click_share"] == 0.0
    few = [make_click(i, T + i * 400) for i in range(4)]  # 3 gaps: too few to judge
    assert user_features(*few, make_order(at=T + 5_000))["fast_click_share"] == 0.0


def test_cadence_is_over_the_clicks_in_time_order_whatever_order_they_came_in():
    times = [0, 2_000, 1_000, 3_000, 4_000, 600]
    clicks = [make_click(i, T + t) for i, t in enumerate(times)]
    got = user_features(*clicks, make_order(at=T + 10_000))
    assert got["fast_click_share"] == 2 / 5  # sorted: 0, 600, 1000, 2000, 3000, 4000


def test_a_device_new_for_a_known_user_is_new_but_not_for_a_new_user():
    earlier = make_order(1, T)  # the user shopped before, from d1
    visit = [make_click(2, T + 2 * 3_600_000, device="d9", ip="177.1.1.1")]
    takeover = user_features(earlier, *visit, make_order(3, T + 2 * 3_600_000 + 60_000,
                                                         device="d9", ip="177.1.1.1"))  # fmt: skip
    assert takeover["new_device"] == 1 and takeover["new_ip"] == 1
    newcomer = user_features(*visit, make_order(3, T + 2 * 3_600_000 + 60_000, device="d9"))
    assert newcomer["new_device"] == 0  # everything is new to a new user
    back = user_features(earlier, make_click(2, T + 7_200_000), make_order(3, T + 7_300_000))
    assert back["new_device"] == 0 and back["new_ip"] == 0


def test_a_user_keeps_the_devices_seen_most_recently():
    user = f.new_user()
    for i in range(f.MAX_KNOWN + 5):
        f.add_click(user, make_click(i, T + i * 31 * MIN, device=f"d{i}"))
    assert len(user["d"]) == f.MAX_KNOWN
    assert f"d{f.MAX_KNOWN + 4}" in user["d"] and "d0" not in user["d"]


def test_key_velocity_and_distinct_users_per_card():
    card = f.new_key()
    got = None
    for i in range(5):
        got = f.add_key_order("card", card, make_order(i, T + i * MIN, user=f"u{i % 3}"))
    assert got == {
        "card_orders_10m": 5, "card_orders_1h": 5, "card_amount_1h": 10_000, "card_users": 3,
    }  # fmt: skip


def test_users_per_address_count_the_last_hour_only():
    ip = f.new_key()
    f.add_key_order("ip", ip, make_order(1, T, user="u1"))
    f.add_key_order("ip", ip, make_order(2, T + 1, user="u2"))
    got = f.add_key_order("ip", ip, make_order(3, T + 61 * MIN, user="u3"))
    assert got == {"ip_orders_10m": 1, "ip_orders_1h": 1, "ip_users_1h": 1}
    assert len(ip["o"]) == 1  # the hour before is forgotten


def test_a_duplicate_order_on_a_key_gives_nothing():
    device = f.new_key()
    order = make_order(1)
    assert f.add_key_order("device", device, order) is not None
    assert f.add_key_order("device", device, replace(order)) is None


def test_every_feature_has_a_name_the_policy_can_use():
    assert {*f.USER_FEATURES, *f.ORDER_FEATURES} <= f.FEATURES
    assert len(f.FEATURES) == len(f.USER_FEATURES) + len(f.ORDER_FEATURES) + sum(
        len(names) for names in f.KEY_FEATURES.values()
    )
