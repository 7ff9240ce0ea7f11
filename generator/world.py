"""The simulation's mutable state (rng, shop, shoppers, order numbers) and a visit that records
what one visitor did as planned events, in the order they occurred."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from random import Random
from typing import Literal

from generator.catalog import Catalog, Product, build_catalog
from generator.ids import random_token, random_uuid
from generator.population import Population
from streams.records import ClickEvent, ClickType, Device, OrderCreated, OrderItem, Payment

Scenario = Literal["bot", "card_testing", "account_takeover", "no_session"]


@dataclass(frozen=True, slots=True)
class PlannedEvent:
    """An event as it happened, before the network and producers add faults."""

    record: ClickEvent | OrderCreated
    scenario: Scenario | None


class World:
    def __init__(self, rng: Random, users: int, shifted: bool = False) -> None:
        """`shifted`: every fraud scenario stealthier (generator.fraud)."""
        self.rng, self.shifted = rng, shifted
        self.catalog: Catalog = build_catalog()
        self.population = Population(rng, users)
        self._next_order_id = rng.randrange(10_000_000, 90_000_000)

    def visit(
        self,
        user_id: str,
        device: Device,
        currency: str,
        scenario: Scenario | None = None,
        with_session: bool = True,
    ) -> Visit:
        session_id = random_token(self.rng, "s", 16) if with_session else None
        return Visit(self, user_id, session_id, device, currency, scenario)

    def order_id(self) -> int:
        self._next_order_id += 1
        return self._next_order_id


@dataclass
class Visit:
    world: World
    user_id: str
    session_id: str | None  # None: an order placed without any session (API, script)
    device: Device
    currency: str
    scenario: Scenario | None
    events: list[PlannedEvent] = field(default_factory=list)

    def click(self, kind: ClickType, url: str, at_ms: int, referrer: str | None = None) -> None:
        if self.session_id is None:
            raise ValueError("a visit without a session has no clicks")
        click = ClickEvent(
            event_id=random_uuid(self.world.rng),
            type=kind,
            user_id=self.user_id,
            session_id=self.session_id,
            url=url,
            referrer=referrer,
            device=self.device,
            occurred_at_ms=at_ms,
        )
        self.events.append(PlannedEvent(click, self.scenario))

    def order(self, lines: Sequence[tuple[Product, int]], payment: Payment, at_ms: int) -> None:
        """OrderCreated for `lines` of (product, quantity); amount = sum of quantity * price."""
        items = tuple(
            OrderItem(product.sku, quantity, product.prices[self.currency])
            for product, quantity in lines
        )
        order = OrderCreated(
            event_id=random_uuid(self.world.rng),
            order_id=self.world.order_id(),
            user_id=self.user_id,
            session_id=self.session_id,
            amount_cents=sum(item.quantity * item.unit_price_cents for item in items),
            currency=self.currency,
            items=items,
            payment=payment,
            device=self.device,
            occurred_at_ms=at_ms,
        )
        self.events.append(PlannedEvent(order, self.scenario))
