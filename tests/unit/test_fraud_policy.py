"""The scoring policy (fraud.policy): the file's form, its checks, and score_order."""

from __future__ import annotations

import math

import pytest

from fraud.features import FEATURES
from fraud.policy import (
    DEFAULT_POLICY,
    PolicyError,
    load_policy,
    policy_body,
    read_policy,
    score_order,
)

POLICY = read_policy(
    {
        "version": 3, "bias": -5.0, "threshold": 0.5, "small_order_eur_cents": 500,
        "rates": {"EUR": 1.0},
        "signals": [
            {"feature": "user_cards_10m", "at_least": 2, "weight": 3.0,
             "reason": "{value} different cards from this account in 10 minutes"},
            {"feature": "ip_card_country_mismatch", "at_least": 1, "weight": 2.5,
             "reason": "the card is from another country than the address"},
            {"feature": "small_order", "at_least": 1, "weight": 1.0,
             "reason": "a small order, as card testers place"},
            {"feature": "card_orders_10m", "at_least": 3, "weight": 2.0, "reason": "velocity"},
        ],
    },
    FEATURES,
    "test",
)  # fmt: skip


def body(**overrides) -> dict:
    return {**policy_body(POLICY), **overrides}


def test_the_default_policy_file_is_a_usable_policy():
    default = load_policy(DEFAULT_POLICY, FEATURES)
    assert default.version == 1 and len(default.signals) > 10


def test_the_score_is_the_logistic_of_the_bias_and_the_weights_that_fire():
    features = {"user_cards_10m": 2, "small_order": 1, "card_orders_10m": 1}  # 3.0 + 1.0 fire
    score = score_order(features, POLICY)
    assert score.score == round(1 / (1 + math.exp(-(POLICY.bias + 4.0))), 6)
    assert not score.alert and score.version == POLICY.version
    fired = {c.feature: c.weight for c in score.contributions if c.weight}
    assert fired == {"user_cards_10m": 3.0, "small_order": 1.0}


def test_an_alert_at_or_over_the_threshold_names_its_top_reasons_by_weight():
    features = {"user_cards_10m": 4, "ip_card_country_mismatch": 1, "small_order": 1}
    score = score_order(features, POLICY)
    assert score.alert and score.score >= POLICY.threshold
    assert score.reasons() == [
        "4 different cards from this account in 10 minutes",
        "the card is from another country than the address",
        "a small order, as card testers place",
    ]


def test_a_missing_feature_counts_as_zero_and_every_signal_is_reported():
    score = score_order({}, POLICY)
    assert len(score.contributions) == len(POLICY.signals)
    assert all(c.weight == 0 and c.reason is None for c in score.contributions)
    assert score.score == round(1 / (1 + math.exp(-POLICY.bias)), 6)


def test_a_below_signal_fires_under_its_bound():
    policy = read_policy(
        body(signals=[{"feature": "session_age_s", "below": 30, "weight": 9.0, "reason": "fast"}]),
        FEATURES,
        "test",
    )
    assert score_order({"session_age_s": 12.5}, policy).alert
    assert not score_order({"session_age_s": 30}, policy).alert


def test_the_policy_round_trips_through_its_record_form():
    assert read_policy(policy_body(POLICY), FEATURES, "record") == POLICY


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 0}, "version must be a whole number >= 1"),
        ({"threshold": 1.5}, "threshold one in (0, 1)"),
        ({"rates": {"EUR": -1}}, "rates must map currency codes to positive numbers"),
        ({"signals": []}, "signals must be a non-empty list"),
        (
            {"signals": [{"feature": "shoe_size", "at_least": 1, "weight": 1, "reason": "x"}]},
            "unknown feature 'shoe_size'",
        ),
        (
            {"signals": [{"feature": "new_ip", "weight": 1, "reason": "x"}]},
            "exactly one of `at_least` and `below`",
        ),
        (
            {"signals": [{"feature": "new_ip", "at_least": 1, "weight": 1, "reason": "{who}"}]},
            "reason may use only {value}",
        ),
    ],
)
def test_a_policy_that_cannot_be_used_is_refused_with_what_and_where(change, message):
    with pytest.raises(
        PolicyError, match=f"^p.toml: .*{message.replace('(', '.').replace(')', '.')}"
    ):
        read_policy(body(**change), FEATURES, "p.toml")


def test_a_policy_file_that_is_not_toml_names_the_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("version = \n")
    with pytest.raises(PolicyError, match=r"broken\.toml"):
        load_policy(path, FEATURES)
