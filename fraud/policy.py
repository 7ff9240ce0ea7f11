"""A fraud scoring policy: data, not code (fraud/policies/*.toml), and the one function that
applies it.

    log-odds = bias + sum of the weights of the signals that fire
    score    = 1 / (1 + e^-log-odds)            alert when score >= threshold

A signal fires when its feature's value is at least `at_least`, or under `below` (numbers;
yes/no features are 1 and 0).
Each firing signal's weight is its contribution, and its reason text (with `{value}` filled
in, when the weight is above 0) explains it; an alert names the top reasons by contribution.
Amounts in different currencies are compared through `rates` (minor units of a currency ->
EUR cents), for scoring only: the analytics never convert money.

A policy has a version: every scored order names the version it was scored under, and a
version's content never changes (streams.fraud_policy publishes and reads them).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_POLICY = Path(__file__).with_name("policies") / "default.toml"


class PolicyError(ValueError):
    """A policy file or record that cannot be used; the message says what and where."""


@dataclass(frozen=True, slots=True)
class Signal:
    feature: str
    at: float  # the threshold
    below: bool  # fires when value < at; else when value >= at
    weight: float  # its contribution to the log-odds when it fires
    reason: str  # shown when it fires; "{value}" is the feature's value


@dataclass(frozen=True, slots=True)
class Policy:
    version: int
    bias: float
    threshold: float  # alert when score >= threshold
    small_order_eur_cents: int  # the feature `small_order`: amount in EUR cents <= this
    rates: Mapping[str, float]  # currency -> EUR cents per minor unit
    signals: tuple[Signal, ...]

    def eur_cents(self, amount: int, currency: str) -> float | None:
        rate = self.rates.get(currency)
        return None if rate is None else amount * rate


@dataclass(frozen=True, slots=True)
class Contribution:
    feature: str
    value: float
    weight: float  # 0 when the signal did not fire
    reason: str | None  # the filled-in text when it fired


@dataclass(frozen=True, slots=True)
class FraudScore:
    score: float  # 0..1
    alert: bool
    version: int
    contributions: tuple[Contribution, ...]  # one per signal, in the policy's order

    def reasons(self, top: int = 3) -> list[str]:
        fired = sorted(
            (c for c in self.contributions if c.reason), key=lambda c: (-c.weight, c.feature)
        )
        return [c.reason for c in fired[:top] if c.reason]


def score_order(features: Mapping[str, float], policy: Policy) -> FraudScore:
    """The policy applied to one order's features (a feature it lacks counts as 0)."""
    log_odds, contributions = policy.bias, []
    for signal in policy.signals:
        value = features.get(signal.feature, 0)
        fires = value < signal.at if signal.below else value >= signal.at
        weight = signal.weight if fires else 0.0
        log_odds += weight
        reason = signal.reason.format(value=_shown(value)) if weight > 0 else None
        contributions.append(Contribution(signal.feature, value, weight, reason))
    score = 1 / (1 + math.exp(-max(-50.0, min(50.0, log_odds))))
    return FraudScore(
        round(score, 6), score >= policy.threshold, policy.version, tuple(contributions)
    )


def _shown(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


def load_policy(path: Path, features: frozenset[str]) -> Policy:
    """A policy file, checked against the features the scorer computes."""
    try:
        body = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"{path}: {exc}") from None
    return read_policy(body, features, where=str(path))


def read_policy(body: Mapping[str, Any], features: frozenset[str], where: str) -> Policy:
    """A policy from its parsed form (a TOML file's, or a control record's JSON)."""
    try:
        version, bias, threshold = body["version"], body["bias"], body["threshold"]
        small, rates, signals = body["small_order_eur_cents"], body["rates"], body["signals"]
    except KeyError as exc:
        raise PolicyError(f"{where}: no {exc.args[0]!r}") from None
    if type(version) is not int or version < 1:
        raise PolicyError(f"{where}: version must be a whole number >= 1, not {version!r}")
    if not _is_number(bias) or not _is_number(threshold) or not 0 < threshold < 1:
        raise PolicyError(f"{where}: bias must be a number and threshold one in (0, 1)")
    if type(small) is not int or small < 0:
        raise PolicyError(f"{where}: small_order_eur_cents must be a whole number >= 0")
    if not isinstance(rates, Mapping) or not all(
        isinstance(c, str) and _is_number(r) and r > 0 for c, r in rates.items()
    ):
        raise PolicyError(f"{where}: rates must map currency codes to positive numbers")
    if not isinstance(signals, list) or not signals:
        raise PolicyError(f"{where}: signals must be a non-empty list")
    return Policy(
        version,
        float(bias),
        float(threshold),
        small,
        {c: float(r) for c, r in rates.items()},
        tuple(_signal(s, i, features, where) for i, s in enumerate(signals)),
    )


def policy_body(policy: Policy) -> dict[str, Any]:
    """The parsed form of a policy (read_policy's input): what the control record holds."""
    return {
        "version": policy.version,
        "bias": policy.bias,
        "threshold": policy.threshold,
        "small_order_eur_cents": policy.small_order_eur_cents,
        "rates": dict(policy.rates),
        "signals": [
            {
                "feature": s.feature,
                "below" if s.below else "at_least": s.at,
                "weight": s.weight,
                "reason": s.reason,
            }
            for s in policy.signals
        ],
    }


def _signal(raw: Any, index: int, features: frozenset[str], where: str) -> Signal:
    at = f"{where}: signals[{index}]"
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{at} must be a table")
    feature, reason = raw.get("feature"), raw.get("reason")
    weight: Any = raw.get("weight")
    if feature not in features:
        known = ", ".join(sorted(features))
        raise PolicyError(f"{at}: unknown feature {feature!r} (known: {known})")
    if ("at_least" in raw) == ("below" in raw):
        raise PolicyError(f"{at}: needs exactly one of `at_least` and `below`")
    below = "below" in raw
    threshold = raw["below" if below else "at_least"]
    if not (_is_number(threshold) and _is_number(weight) and isinstance(reason, str)):
        raise PolicyError(f"{at}: needs a number threshold, a number `weight`, a text `reason`")
    try:
        reason.format(value=1)
    except (KeyError, IndexError, ValueError):
        raise PolicyError(f"{at}: reason may use only {{value}}") from None
    return Signal(feature, float(threshold), below, float(weight), reason)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
