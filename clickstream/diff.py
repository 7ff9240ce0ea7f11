"""`clickstream diff LIVE SHADOW`: two versions' derived outputs, joined by their ids.

Every derived record carries a deterministic id (streams.topics), so comparing two versions is
a join by id, per metric: equal, different, or only in one of them. A record sent again after
a crash says the same (the tests prove it), so the last one read of an id stands for it.
Ids naming one of the version's own topics are compared with the app id taken out; a late
order fact is known by its event, since the offset of its facts record depends on batching.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from clickstream.kafka_admin import partitions_of, read_whole
from clickstream.replay import ReplayFailed
from clickstream.settings import Settings
from streams.dead_letters import read_dead_letter

TOP = 10  # largest differences listed per metric
IDS_LISTED = 10  # ids listed of those only in one version

Records = dict[str, dict[str, dict[str, Any]]]  # metric -> id -> content


@dataclass
class MetricDiff:
    equal: int = 0
    different: int = 0
    only_live: int = 0
    only_shadow: int = 0
    largest: list[dict[str, Any]] = field(default_factory=list)
    only_live_ids: list[str] = field(default_factory=list)
    only_shadow_ids: list[str] = field(default_factory=list)

    def identical(self) -> bool:
        return not (self.different or self.only_live or self.only_shadow)


@dataclass
class Report:
    live: str
    shadow: str
    metrics: dict[str, MetricDiff]

    def identical(self) -> bool:
        return all(m.identical() for m in self.metrics.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "live": self.live,
            "shadow": self.shadow,
            "identical": self.identical(),
            "metrics": {name: vars(m) for name, m in sorted(self.metrics.items())},
        }

    def table(self) -> str:
        head = ("metric", "equal", "different", "only live", "only shadow")
        rows = ["{:<28} {:>8} {:>9} {:>9} {:>11}".format(*head)]
        for name, m in sorted(self.metrics.items()):
            rows.append(
                f"{name:<28} {m.equal:>8} {m.different:>9} {m.only_live:>9} {m.only_shadow:>11}"
            )
            for big in m.largest[:3]:
                rows.append(f"    {big['id']}: {big['difference']:g} ({_fields(big['fields'])})")
        verdict = "identical" if self.identical() else "different"
        rows.append(f"{self.live} and {self.shadow}: {verdict}")
        return "\n".join(rows)


def _fields(changed: dict[str, list[Any]]) -> str:
    shown = [f"{path} {a!r}->{b!r}" for path, (a, b) in list(changed.items())[:3]]
    more = len(changed) - len(shown)
    return ", ".join(shown) + (f", +{more} more" if more > 0 else "")


def compare(live: Records, shadow: Records, top: int = TOP) -> dict[str, MetricDiff]:
    metrics: dict[str, MetricDiff] = {}
    for name in sorted(live.keys() | shadow.keys()):
        a, b = live.get(name, {}), shadow.get(name, {})
        m = metrics[name] = MetricDiff()
        changed: list[dict[str, Any]] = []
        for rid in a.keys() & b.keys():
            if a[rid] == b[rid]:
                m.equal += 1
            else:
                m.different += 1
                fields = differences(a[rid], b[rid])
                size = sum(_size(x, y) for x, y in fields.values())
                changed.append({"id": rid, "difference": size, "fields": fields})
        only_a, only_b = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
        m.only_live, m.only_shadow = len(only_a), len(only_b)
        m.only_live_ids, m.only_shadow_ids = only_a[:IDS_LISTED], only_b[:IDS_LISTED]
        changed.sort(key=lambda c: (-c["difference"], c["id"]))
        m.largest = changed[:top]
    return metrics


def differences(a: Any, b: Any, path: str = "") -> dict[str, list[Any]]:
    """Path -> [live value, shadow value] of every leaf that differs (missing: None)."""
    if isinstance(a, dict) and isinstance(b, dict):
        found: dict[str, list[Any]] = {}
        for name in sorted(a.keys() | b.keys(), key=str):
            found.update(differences(a.get(name), b.get(name), f"{path}.{name}" if path else name))
        return found
    return {} if a == b else {path or ".": [a, b]}


def _size(a: Any, b: Any) -> float:
    """How far apart two leaves are: numbers by their difference, anything else 1."""

    def number(x: Any) -> bool:
        return x is None or (isinstance(x, int | float) and not isinstance(x, bool))

    return abs((a or 0) - (b or 0)) if number(a) and number(b) else 1.0


def metric_of(kind: str, value: dict[str, Any]) -> str | None:
    """The metric a derived record counts under; None: not compared (progress records)."""
    if kind in ("results", "totals"):
        if value.get("kind") == "progress":
            return None
        return f"{kind} {value.get('stream', '?')} {value.get('kind', '?')}"
    return kind


def read_version(settings: Settings, seen: Callable[[int, int], None] | None = None) -> Records:
    """Every derived record of the version `settings.app_id`, by metric and canonical id;
    `seen(read, total)` as it goes."""
    return asyncio.run(_read_version(settings, seen or (lambda _read, _total: None)))


async def _read_version(settings: Settings, seen: Callable[[int, int], None]) -> Records:
    t, app = settings.topics, settings.app_id
    kinds = {
        t.window_results.name: "results",
        t.window_totals.name: "totals",
        t.sessions.name: "sessions",
        t.late_events.name: "late events",
        t.dead_letters.name: "dead letters",
        t.scored_orders.name: "scored orders",
        t.fraud_alerts.name: "fraud alerts",
    }
    inputs = {spec.name for spec in t.inputs()}
    partitions = await partitions_of(settings.bootstrap, list(kinds))
    if t.window_results.name not in partitions:
        raise ReplayFailed(
            f"version {app} has no topic {t.window_results.name} at {settings.bootstrap}: "
            f"no worker ever ran under that app id (`clickstream versions` lists them)"
        )
    found: Records = {}

    def take(topic: str, record: Any) -> None:
        for metric, rid, value in _entries(kinds[topic], record, app, inputs):
            found.setdefault(metric, {})[rid] = value

    read, total = await read_whole(settings.bootstrap, partitions, take, seen)
    if read < total:  # the derived topics are never compacted: every offset holds a record
        raise ReplayFailed(f"read {read} of the {total} derived records of {app}; run it again")
    return found


def _entries(
    kind: str, record: Any, app: str, inputs: set[str]
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    if kind == "dead letters":
        letter = read_dead_letter(record.headers, record.value)
        value = {"reason": letter.reason, "detail": letter.detail, "bytes": len(letter.payload)}
        yield kind, _canonical(letter.source, app, inputs), value
        return
    if record.value is None:
        return
    value = orjson.loads(record.value)
    metric = metric_of(kind, value)
    if metric is None:
        return
    rid = str(value.get("id"))
    if kind == "late events":
        source = value.get("source", {}).get("topic", "")
        if source not in inputs:  # a late order fact: known by its order's event
            rid = f"{value.get('reason')}/{value.get('event_id')}"
        value = {k: v for k, v in value.items() if k not in ("id", "source")}
    yield metric, _canonical(rid, app, inputs), value


def _canonical(rid: str, app: str, inputs: set[str]) -> str:
    """`rid` with the app id taken out of a topic name of its own (an input keeps its name)."""
    if rid.startswith(f"{app}-") and rid.split("/", 1)[0] not in inputs:
        return f"<app>-{rid[len(app) + 1 :]}"
    return rid
