"""sum_revenue: orders and revenue (minor units) per currency per event-time window.

Currencies are never converted or mixed: each is its own dimension.
"""

from __future__ import annotations

from agents.windowed import EventKind, Increments
from serving import keys
from serving.projection import MetricLayout
from streams.records import OrderCreated
from streams.topics import REVENUE_TABLE
from streams.validation import parse_order


def revenue_increments(order: OrderCreated) -> Increments:
    return ((order.currency, (1, order.amount_cents)),)


SUM_REVENUE = EventKind(
    agent="sum_revenue",
    table=REVENUE_TABLE,
    parse=parse_order,
    increments=revenue_increments,
    layout=MetricLayout(keys.ORDERS, stream="orders", count_names=("orders", "cents")),
)
