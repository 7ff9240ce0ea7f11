"""aggregate_orders: what one OrderCreated adds to its pane, per source partition.

orders  | <currency>      +[1 order, amount in minor units]; currencies are never converted
                          or mixed: each is its own dimension
uniques | buyers          HyperLogLog of user_id: the funnel's last step
Accepted orders are forwarded to the clicks side for attribution (tables/attribution.py) when
the click metrics include `attributed`.
"""

from __future__ import annotations

from agents.windowed import EventKind
from serving import keys
from streams.records import OrderCreated
from streams.topics import ORDER_TABLE
from streams.validation import parse_order
from tables import sketch
from tables.attribution import OrderFact
from tables.panes import Increments, Uniques

BUYERS = f"{keys.UNIQUES}|buyers"


def order_measures(order: OrderCreated) -> tuple[Increments, Uniques, None, OrderFact]:
    register, rank = sketch.position(order.user_id)
    increments = ((f"{keys.ORDERS}|{order.currency}", (1, order.amount_cents)),)
    fact = OrderFact(order.user_id, order.currency, order.amount_cents)
    return increments, ((BUYERS, register, rank),), None, fact


def aggregate_orders(forward_facts: bool = False) -> EventKind:
    return EventKind(
        agent="aggregate_orders",
        table=ORDER_TABLE,
        stream="orders",
        parse=parse_order,
        measure=order_measures,
        forwards_facts=forward_facts,
    )
