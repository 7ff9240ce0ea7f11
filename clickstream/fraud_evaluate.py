"""`clickstream fraud evaluate`: the scorer's quality on seeded traffic it was not tuned on.

The real fraud processors (agents.fraud) run on the engine's broker-free harness
(engine.testing) over the generator's traffic; each scored order's alert is compared with the
generator's label of that order (a fraud scenario, or none):

  precision = fraud alerts / alerts          recall = fraud orders alerted / fraud orders
  alert rate = alerts / orders               per scenario: its orders and their recall
  precision@k = the share of fraud among the k highest scores of each day (ties: by order id)
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from tqdm import tqdm

from agents.fraud import (
    ProfileOrders,
    ScoreOrders,
    click_forwarder,
    order_forwarder,
    policy_forwarder,
)
from engine.processor import Processor
from engine.repartition import partition_of
from engine.testing import TestDriver
from fraud.policy import Policy
from generator.config import GeneratorConfig
from generator.emission import Emission
from generator.simulate import simulate
from streams.eventtime import parse_timestamp
from streams.ticks import tick_value
from streams.topics import topology
from streams.validation import Limits

APP, PARTITIONS = "evaluate", 4
CHUNK = 5_000  # records produced, then processed, at a time
DAY_MS = 86_400_000
LEGIT = "legit"


@dataclass
class Evaluation:
    orders: int = 0
    alerts: int = 0
    true_alerts: int = 0
    fraud_orders: int = 0
    by_scenario: dict[str, list[int]] = field(default_factory=dict)  # -> [orders, alerted]
    precision_at_k: dict[int, float] = field(default_factory=dict)
    versions: list[int] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.true_alerts / self.alerts if self.alerts else 0.0

    @property
    def recall(self) -> float:
        return self.true_alerts / self.fraud_orders if self.fraud_orders else 0.0

    @property
    def alert_rate(self) -> float:
        return self.alerts / self.orders if self.orders else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "orders": self.orders,
            "alerts": self.alerts,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "alert_rate": round(self.alert_rate, 4),
            "confusion": self.confusion(),
            "by_scenario": {
                name: {"orders": n, "alerted": hit, "recall": round(hit / n, 4) if n else None}
                for name, (n, hit) in sorted(self.by_scenario.items())
            },
            "precision_at_k_per_day": self.precision_at_k,
            "policy_versions": self.versions,
        }

    def confusion(self) -> dict[str, int]:
        legit = self.orders - self.fraud_orders
        false_alerts = self.alerts - self.true_alerts
        return {
            "fraud alerted": self.true_alerts,
            "fraud missed": self.fraud_orders - self.true_alerts,
            "legit alerted": false_alerts,
            "legit passed": legit - false_alerts,
        }


def evaluate(config: GeneratorConfig, policy: Policy, ks: tuple[int, ...] = (10, 50)) -> Evaluation:
    """Score the traffic of `config` under `policy`; compare with the generator's labels."""
    scored, labels = scored_orders(config, policy)
    out = Evaluation()
    per_day: dict[int, list[tuple[float, str]]] = defaultdict(list)
    for event_id, body in scored.items():
        scenario = labels.get(event_id) or LEGIT
        fraud = scenario != LEGIT
        out.orders += 1
        out.alerts += body["alert"]
        out.fraud_orders += fraud
        out.true_alerts += fraud and body["alert"]
        counts = out.by_scenario.setdefault(scenario, [0, 0])
        counts[0] += 1
        counts[1] += body["alert"]
        per_day[parse_timestamp(body["occurred_at"]) // DAY_MS].append((body["score"], event_id))
    for k in ks:
        shares = []
        for day in per_day.values():
            top = sorted(day, key=lambda s: (-s[0], s[1]))[:k]
            shares.append(sum(labels.get(i) not in (None, LEGIT) for _, i in top) / len(top))
        out.precision_at_k[k] = round(sum(shares) / len(shares), 4) if shares else 0.0
    out.versions = sorted({body["policy_version"] for body in scored.values()})
    return out


def scored_orders(
    config: GeneratorConfig, policy: Policy
) -> tuple[dict[str, dict], dict[str, str | None]]:
    """Event id -> scored order of the traffic of `config`, and event id -> its label."""
    return asyncio.run(_score(config, policy))


async def _score(
    config: GeneratorConfig, policy: Policy
) -> tuple[dict[str, dict], dict[str, str | None]]:
    topics = topology(APP, "clicks", "orders", PARTITIONS)
    limits = Limits()
    scorer = ScoreOrders(topics, policy)
    processors: list[Processor] = [
        click_forwarder(topics, limits, APP),
        order_forwarder(topics, limits, APP),
        policy_forwarder(topics, limits, APP),
        ProfileOrders(topics),
        scorer,
    ]
    driver = TestDriver(processors, partitions=PARTITIONS, commit_s=3600.0)
    labels: dict[str, str | None] = {}
    last = 0
    everyone = list(range(PARTITIONS))
    with tqdm(
        desc="scoring", unit=" records", total=config.count, leave=False, disable=None
    ) as bar:  # disable=None: drawn on a terminal only
        for chunk in _chunks(simulate(config)):
            for e in chunk:
                topic = topics.clicks.name if e.stream == "clicks" else topics.orders.name
                p = partition_of(e.key, PARTITIONS) if e.key else 0
                driver.produce(topic, e.value, p, key=e.key, timestamp_ms=e.emit_at_ms)
                last = max(last, e.emit_at_ms)
                if e.stream == "orders" and e.label["event_id"]:
                    labels[e.label["event_id"]] = e.label["scenario"]
            await driver.pump()
            await driver.commit()
            bar.update(len(chunk))
    end = last + DAY_MS  # every partition of every input past everything: all released
    for spec, ticks in (
        (topics.clicks, topics.clicks_ticks),
        (topics.orders, topics.orders_ticks),
        (topics.fraud_policy, topics.fraud_policy_ticks),
    ):
        for p in everyone:
            after = len(driver.broker.log(spec.name, p)) - 1
            driver.produce(ticks.name, tick_value(end, after, APP), p, timestamp_ms=end)
    await driver.settle()
    scored = {}
    for record in driver.outputs("scored", processor=scorer):
        body = orjson.loads(record.value or b"")
        scored[body["event_id"]] = body
    return scored, labels


def _chunks(emissions: Iterator[Emission]) -> Iterator[list[Emission]]:
    chunk: list[Emission] = []
    for emission in emissions:
        chunk.append(emission)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def report(name: str, result: Evaluation) -> str:
    """The evaluation as a few lines of text (a Markdown table for the README)."""
    lines = [
        f"{name}: {result.orders} orders, {result.alerts} alerts (rate {result.alert_rate:.3f}); "
        f"precision {result.precision:.3f}, recall {result.recall:.3f}; "
        + ", ".join(f"P@{k}/day {v:.3f}" for k, v in result.precision_at_k.items()),
        "",
        "| scenario | orders | alerted | recall |",
        "|---|---|---|---|",
    ]
    for scenario, (n, hit) in sorted(result.by_scenario.items()):
        lines.append(f"| {scenario} | {n} | {hit} | {hit / n:.3f} |")
    confusion = result.confusion()
    lines += ["", "| | alerted | passed |", "|---|---|---|"]
    lines.append(f"| fraud | {confusion['fraud alerted']} | {confusion['fraud missed']} |")
    lines.append(f"| legit | {confusion['legit alerted']} | {confusion['legit passed']} |")
    return "\n".join(lines)
