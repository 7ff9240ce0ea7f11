"""aggregate_orders: what one OrderCreated adds to its pane, per source partition.

orders  | <currency>      +[1 order, amount in minor units]; currencies are never converted
                          or mixed: each is its own dimension
uniques | buyers          HyperLogLog of user_id: the funnel's last step
"""

from __future__ import annotations

from agents.windowed import EventKind
from serving import keys
from streams.records import OrderCreated
from streams.topics import ORDER_TABLE
from streams.validation import parse_order
from tables import sketch
from tables.window_state import Increments, Uniques

BUYERS = f"{keys.UNIQUES}|buyers"


def order_measures(order: OrderCreated) -> tuple[Increments, Uniques, None]:
    register, rank = sketch.position(order.user_id)
    increments = ((f"{keys.ORDERS}|{order.currency}", (1, order.amount_cents)),)
    return increments, ((BUYERS, register, rank),), None


AGGREGATE_ORDERS = EventKind(
    agent="aggregate_orders",
    table=ORDER_TABLE,
    stream="orders",
    parse=parse_order,
    measure=order_measures,
)
