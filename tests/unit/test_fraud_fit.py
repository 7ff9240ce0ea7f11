"""Fitting the policy's weights (clickstream.fraud_fit): the regression recovers known weights,
the threshold maximises F1, the file written reads back as the same policy, and a fit on
generated traffic scores its own training orders at least as well as the hand-set weights."""

from __future__ import annotations

import math
import random
import tomllib
from collections import Counter

from clickstream.fraud_evaluate import evaluate
from clickstream.fraud_fit import (
    best_threshold,
    fired,
    fit,
    fit_weights,
    non_negative_weights,
    policy_toml,
)
from fraud.features import FEATURES
from fraud.policy import DEFAULT_POLICY, Signal, load_policy, read_policy
from generator.config import GeneratorConfig

POLICY = load_policy(DEFAULT_POLICY, FEATURES)


def test_the_regression_recovers_the_weights_that_made_the_labels():
    rng, truth = random.Random(3), [-3.0, 2.5, 0.0, 1.2]
    rows: Counter = Counter()
    for _ in range(60_000):
        x = tuple(int(rng.random() < 0.3) for _ in range(3))
        log_odds = truth[0] + sum(w for w, on in zip(truth[1:], x, strict=True) if on)
        rows[x, int(rng.random() < 1 / (1 + math.exp(-log_odds)))] += 1
    fitted = fit_weights(rows, l2=0.01)
    assert all(abs(a - b) < 0.15 for a, b in zip(fitted, truth, strict=True)), fitted


def test_a_signal_that_never_fires_keeps_a_zero_weight():
    rows = Counter({((1, 0), 1): 30, ((1, 0), 0): 10, ((0, 0), 0): 60})
    bias, fires, never = fit_weights(rows)
    assert never == 0.0 and fires > 0 > bias


def test_the_threshold_is_the_cut_with_the_best_f1():
    scores = [(0.9, 1)] * 5 + [(0.7, 1)] * 3 + [(0.6, 0)] * 4 + [(0.2, 0)] * 50 + [(0.3, 1)]
    assert best_threshold(scores) == 0.7


def test_which_signals_fire_follows_the_scoring_rule():
    signals = (Signal("a", 2, False, 1.0, "r"), Signal("b", 2, True, 1.0, "r"))
    assert fired(signals, {"a": 2, "b": 2}) == (1, 0)
    assert fired(signals, {"a": 1.5}) == (0, 1)  # a feature it lacks counts as 0


def test_the_file_written_reads_back_as_the_same_policy():
    text = policy_toml(POLICY, "a comment\nover two lines")
    assert text.startswith("# a comment\n# over two lines\n")
    assert read_policy(tomllib.loads(text), FEATURES, "fitted") == POLICY


def test_weights_fitted_on_training_traffic_do_no_worse_on_it_than_the_hand_set_ones():
    training = GeneratorConfig(seed=3, count=30_000, fraud_rate=0.05)
    fitted = fit([training], POLICY)
    assert fitted.version == POLICY.version + 1
    assert [s.feature for s in fitted.signals] == [s.feature for s in POLICY.signals]
    assert [s.weight for s in fitted.signals] != [s.weight for s in POLICY.signals]
    before, after = evaluate(training, POLICY), evaluate(training, fitted)
    f1 = [2 * e.precision * e.recall / (e.precision + e.recall) for e in (before, after)]
    assert f1[1] >= f1[0] - 0.01, (before.as_json(), after.as_json())


def test_a_signal_that_lowers_the_odds_is_left_out_not_given_a_negative_weight():
    # signal 2 fires mostly with signal 1 on legit orders: unconstrained, its weight is < 0
    rows = Counter({((1, 0), 1): 50, ((1, 1), 0): 40, ((1, 1), 1): 5, ((0, 0), 0): 200})
    assert fit_weights(rows)[2] < 0
    _, first, second = non_negative_weights(rows)
    assert second == 0.0 and first > 0


def test_the_shipped_fitted_policy_loads_and_raises_the_odds_only():
    fitted = load_policy(DEFAULT_POLICY.with_name("fitted.toml"), FEATURES)
    assert fitted.version == POLICY.version + 1
    assert all(s.weight >= 0 for s in fitted.signals)
