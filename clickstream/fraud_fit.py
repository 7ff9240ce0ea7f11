"""`clickstream fraud fit`: the policy's weights fitted offline on labelled training traffic.

The signals (feature, threshold, reason) stay as the base policy has them; what is fitted is
the bias and each signal's weight: an L2-regularised logistic regression of the generator's
label (fraud or not) on which signals fire, solved by Newton's method, each weight kept at 0
or more (a signal fitted below 0 is left out and the rest refitted). The threshold is the
one of the fitted scores that maximises F1 on the training orders. Scoring at run time stays
the same plain arithmetic (fraud.policy.score_order); the result is a policy file under the
next version, to review and `clickstream fraud policy publish`.

Training orders come from the real fraud processors on the engine's harness
(clickstream.fraud_evaluate), so their features are exactly what a worker computes.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from clickstream.fraud_evaluate import LEGIT, scored_orders
from fraud.policy import Policy, Signal
from generator.config import GeneratorConfig

L2 = 1.0  # the penalty on each weight (not the bias): a signal that never fires gets ~0
ROUNDS = 50


def fired(signals: Sequence[Signal], features: dict[str, float]) -> tuple[int, ...]:
    """Which signals fire for these features (fraud.policy.score_order's rule)."""
    out = []
    for s in signals:
        value = features.get(s.feature, 0)
        out.append(int(value < s.at if s.below else value >= s.at))
    return tuple(out)


def fit_weights(rows: Counter[tuple[tuple[int, ...], int]], l2: float = L2) -> list[float]:
    """[bias, weight per signal] maximising the penalised log-likelihood of the labels.

    `rows`: (signals fired, label 0/1) -> how many orders; identical rows are one term."""
    k = len(next(iter(rows))[0]) + 1
    w = [0.0] * k
    for _ in range(ROUNDS):
        gradient = [l2 * w[j] if j else 0.0 for j in range(k)]
        hessian = [[(l2 if i == j and i else 0.0) for j in range(k)] for i in range(k)]
        for (x, y), n in rows.items():
            xs = (1, *x)
            p = _logistic(sum(a * b for a, b in zip(w, xs, strict=True)))
            on = [j for j in range(k) if xs[j]]
            for j in on:
                gradient[j] += n * (p - y)
            curvature = n * p * (1 - p)
            for i in on:
                for j in on:
                    hessian[i][j] += curvature
        step = _solve(hessian, gradient)
        w = [a - b for a, b in zip(w, step, strict=True)]
        if max(abs(s) for s in step) < 1e-7:
            break
    return w


def non_negative_weights(rows: Counter[tuple[tuple[int, ...], int]]) -> list[float]:
    """fit_weights with every signal weight >= 0 (a signal is a risk indicator, and its reason
    text a reason for suspicion): a signal fitted below 0 is left out (0) and the rest refitted,
    until none is."""
    out: set[int] = set()
    while True:
        kept: Counter[tuple[tuple[int, ...], int]] = Counter()
        for (x, y), n in rows.items():
            kept[tuple(0 if j in out else on for j, on in enumerate(x)), y] += n
        w = fit_weights(kept)
        negative = {j for j, weight in enumerate(w[1:]) if weight < 0}
        if not negative:
            return w
        out |= negative


def best_threshold(scores: Sequence[tuple[float, int]]) -> float:
    """The score cut (alert at or over it) with the highest F1 over (score, label) pairs,
    kept in [0.05, 0.95]."""
    best, best_f1 = 0.5, -1.0
    positives = sum(y for _, y in scores)
    for cut in sorted({round(s, 4) for s, _ in scores if 0.05 <= s <= 0.95}):
        alerted = [y for s, y in scores if s >= cut]
        true = sum(alerted)
        f1 = 2 * true / (len(alerted) + positives) if alerted or positives else 0.0
        if f1 > best_f1:
            best, best_f1 = cut, f1
    return best


def fit(configs: Sequence[GeneratorConfig], base: Policy) -> Policy:
    """The base policy with its bias, weights and threshold fitted on the configs' traffic."""
    rows: Counter[tuple[tuple[int, ...], int]] = Counter()
    for config in configs:
        scored, labels = scored_orders(config, base)
        for event_id, body in scored.items():
            label = int((labels.get(event_id) or LEGIT) != LEGIT)
            rows[fired(base.signals, body["features"]), label] += 1
    bias, *weights = non_negative_weights(rows)
    signals = tuple(
        replace(s, weight=round(w, 3)) for s, w in zip(base.signals, weights, strict=True)
    )
    fitted = replace(base, version=base.version + 1, bias=round(bias, 3), signals=signals)
    scores = []
    for (x, y), n in rows.items():
        log_odds = fitted.bias + sum(s.weight for s, on in zip(signals, x, strict=True) if on)
        scores += [(_logistic(log_odds), y)] * n
    return replace(fitted, threshold=best_threshold(scores))


def policy_toml(policy: Policy, comment: str) -> str:
    """A policy file (fraud/policies/default.toml's form) for `policy`."""

    def number(x: float) -> str:
        return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))

    lines = [f"# {line}" if line else "#" for line in comment.splitlines()]
    lines += [
        f"version = {policy.version}",
        f"bias = {number(policy.bias)}",
        f"threshold = {number(policy.threshold)}",
        f"small_order_eur_cents = {policy.small_order_eur_cents}",
        "",
        "[rates]  # EUR cents per minor unit, for comparing amounts only",
        *(f"{currency} = {rate!r}" for currency, rate in policy.rates.items()),
    ]
    for s in policy.signals:
        lines += [
            "",
            "[[signals]]",
            f"feature = {json.dumps(s.feature)}",
            f"{'below' if s.below else 'at_least'} = {number(s.at)}",
            f"weight = {number(s.weight)}",
            f"reason = {json.dumps(s.reason, ensure_ascii=False)}",
        ]
    return "\n".join(lines) + "\n"


def _logistic(log_odds: float) -> float:
    return 1 / (1 + math.exp(-max(-50.0, min(50.0, log_odds))))


def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    """x with a·x = b (Gaussian elimination with partial pivoting; a is positive definite)."""
    n = len(b)
    m = [[*row, b[i]] for i, row in enumerate(a)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        m[col], m[pivot] = m[pivot], m[col]
        if abs(m[col][col]) < 1e-12:
            continue  # a signal and the bias never on: its weight stays
        for r in range(col + 1, n):
            factor = m[r][col] / m[col][col]
            for c in range(col, n + 1):
                m[r][c] -= factor * m[col][c]
    x = [0.0] * n
    for r in range(n - 1, -1, -1):
        if abs(m[r][r]) < 1e-12:
            continue
        x[r] = (m[r][n] - sum(m[r][c] * x[c] for c in range(r + 1, n))) / m[r][r]
    return x
