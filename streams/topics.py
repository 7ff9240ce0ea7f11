"""Every topic of the topology on one screen.

Inputs belong to their producers and are shared by every version of the app: it only reads
them. Everything it writes is prefixed with the app id (CLICKSTREAM_APP_ID), so a shadow version
can run beside the live one on the same cluster. Every topic has the inputs' partition count,
and partition p of each holds what input partition p derives (co-partitioned). Faust names
table changelogs `<app id>-<table>-changelog` itself.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    key: str  # what the record key is
    value: str  # what the record value is
    partitions: int
    compacted: bool = False


CLICK_TABLE = "click_windows"
ORDER_TABLE = "order_windows"
PARTS_TABLE = "window_parts"
# fraud (agents.fraud): the forwarders' positions, the feature state, the scorer's collectors
FRAUD_TABLES = (
    "rekey_clicks_for_fraud_position",
    "rekey_orders_for_fraud_position",
    "rekey_policy_for_fraud_position",
    "fraud_profiles",
    "fraud_scores",
)
TABLES = (CLICK_TABLE, ORDER_TABLE, PARTS_TABLE, *FRAUD_TABLES)


@dataclass(frozen=True, slots=True)
class Topology:
    clicks: TopicSpec
    orders: TopicSpec
    dead_letters: TopicSpec
    late_events: TopicSpec
    window_results: TopicSpec
    window_totals: TopicSpec
    sessions: TopicSpec
    clicks_ticks: TopicSpec  # time logs: read from the app that CLICKSTREAM_CLOCK_APP_ID names
    orders_ticks: TopicSpec
    order_facts: TopicSpec
    fraud_repartition: TopicSpec
    fraud_parts: TopicSpec
    scored_orders: TopicSpec
    fraud_alerts: TopicSpec
    fraud_policy: TopicSpec  # control log, like the time logs: of CLICKSTREAM_CLOCK_APP_ID
    fraud_policy_ticks: TopicSpec
    replay: TopicSpec  # a replayed version's bounds (clickstream.replay); one partition
    retry: TopicSpec  # dead letters re-injected (streams.retries)
    changelogs: tuple[TopicSpec, ...]

    def inputs(self) -> tuple[TopicSpec, ...]:
        """The topics the app reads and never writes."""
        return (self.clicks, self.orders)

    def all(self) -> tuple[TopicSpec, ...]:
        return (
            self.clicks,
            self.orders,
            self.dead_letters,
            self.late_events,
            self.window_results,
            self.window_totals,
            self.sessions,
            self.clicks_ticks,
            self.orders_ticks,
            self.order_facts,
            self.fraud_repartition,
            self.fraud_parts,
            self.scored_orders,
            self.fraud_alerts,
            self.fraud_policy,
            self.fraud_policy_ticks,
            self.replay,
            self.retry,
            *self.changelogs,
        )

    def owned(self, app_id: str) -> tuple[TopicSpec, ...]:
        """The topics that app `app_id` writes (not the inputs, nor another app's logs)."""
        inputs = self.inputs()
        return tuple(
            spec for spec in self.all() if spec not in inputs and spec.name.startswith(f"{app_id}-")
        )


def topology(
    app_id: str, clicks: str, orders: str, partitions: int, clock_app_id: str = ""
) -> Topology:
    # Clicks and orders are both keyed by user_id with equal partition counts, so one user's
    # clicks and orders meet in the same partition (sessions, attribution).
    return Topology(
        clicks=TopicSpec(clicks, "user_id", "click event JSON (ClickEvent)", partitions),
        orders=TopicSpec(orders, "user_id", "OrderCreated JSON, v1 or v2", partitions),
        dead_letters=TopicSpec(
            f"{app_id}-dead-letters",
            "original key",
            "original bytes; headers: reason, detail, source topic/partition/offset",
            partitions,
        ),
        late_events=TopicSpec(
            f"{app_id}-late-events",
            "original key",
            "LateEvent JSON: event, window, watermark, source topic/partition/offset",
            partitions,
        ),
        window_results=TopicSpec(
            f"{app_id}-window-results",
            "<tumbling|hopping>/<window start ms>",
            "WindowResult JSON: a window's final content in one source partition",
            partitions,
        ),
        window_totals=TopicSpec(
            f"{app_id}-window-totals",
            "<stream>/<tumbling|hopping>/<window start ms>",
            "WindowTotal JSON: a window over every source partition, with exact top-K",
            partitions,
        ),
        sessions=TopicSpec(
            f"{app_id}-sessions",
            "user_id",
            "SessionSummary JSON: one closed user session",
            partitions,
        ),
        clicks_ticks=_time_log(clock_app_id or app_id, clicks, partitions),
        orders_ticks=_time_log(clock_app_id or app_id, orders, partitions),
        order_facts=TopicSpec(
            f"{app_id}-order-facts",
            "none (partition p: from orders partition p, for clicks partition p)",
            "order facts JSON (streams.order_facts): accepted orders and the orders watermark",
            partitions,
        ),
        # clicks and orders by user, orders by card, IP and device (agents.fraud)
        fraud_repartition=repartition_topic(
            app_id, "fraud", "u|<user>, c|<card>, i|<ip> or d|<device>", partitions
        ),
        fraud_parts=TopicSpec(
            f"{app_id}-fraud-parts",
            "the order's event_id (partition: murmur2 of it)",
            "fraud part JSON (streams.fraud): one key's features of one order",
            partitions,
        ),
        scored_orders=TopicSpec(
            f"{app_id}-scored-orders",
            "the order's event_id",
            "ScoredOrder JSON: score, policy version, features, contributions, reasons",
            partitions,
        ),
        fraud_alerts=TopicSpec(
            f"{app_id}-fraud-alerts",
            "the order's event_id",
            "FraudAlert JSON: an order scored at or above the policy's threshold",
            partitions,
        ),
        fraud_policy=TopicSpec(
            f"{clock_app_id or app_id}-fraud-policy",
            "v<version> (every partition holds every version)",
            "fraud policy JSON (streams.fraud_policy): a version, when it takes effect, the policy",
            partitions,
        ),
        fraud_policy_ticks=_time_log(clock_app_id or app_id, "fraud-policy", partitions),
        replay=TopicSpec(
            f"{app_id}-replay",
            "bounds",
            "replay bounds JSON (clickstream.replay): the input offsets read, the clock followed",
            1,
            compacted=True,
        ),
        retry=TopicSpec(
            f"{app_id}-retry",
            "original key (partition: the original's)",
            "original bytes; headers: retry_of, source_timestamp, reason (streams.retries)",
            partitions,
        ),
        # Created by us before Faust starts (Faust would create them too, racing its own
        # metadata); named as Faust names them. Partition p holds source partition p's state.
        changelogs=tuple(
            TopicSpec(f"{app_id}-{table}-changelog", "state key", "state value", partitions, True)
            for table in TABLES
        ),
    )


def repartition_topic(app_id: str, name: str, key: str, partitions: int) -> TopicSpec:
    """A stream re-keyed by `key` (engine.repartition, streams.repartition): the inputs' partition
    count, partition = Kafka's default partitioner of the new key."""
    return TopicSpec(
        f"{app_id}-{name}-repartition",
        f"{key} (partition: murmur2 of it, as Kafka's default partitioner)",
        "the entry's bytes, headers id and at; and marks (source partition, watermark)",
        partitions,
    )


def _time_log(app_id: str, stream: str, partitions: int) -> TopicSpec:
    return TopicSpec(
        f"{app_id}-{stream}-ticks",
        f"none (partition p: ticks of {stream} partition p)",
        "tick JSON (streams.ticks): event time T reached after input offset N",
        partitions,
    )
