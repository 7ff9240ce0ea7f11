"""The events we consume, as they are after validation and upcasting.

Wire shapes (JSON, UTF-8) are documented in README.md#contracts; these are the in-memory forms.
Money is integer minor units (cents) with an explicit ISO-4217 currency: never floats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

CLICK_SCHEMA = "click"
CLICK_VERSION = 1
ORDER_SCHEMA = "OrderCreated"
ORDER_VERSION = 2  # version 1 is the legacy camelCase shape with `orderId`, upcast on read


class ClickType(StrEnum):
    """The steps of a visit; the funnel is page_view -> add_to_cart -> checkout -> OrderCreated."""

    PAGE_VIEW = "page_view"
    SEARCH = "search"
    ADD_TO_CART = "add_to_cart"
    REMOVE_FROM_CART = "remove_from_cart"
    CHECKOUT = "checkout"


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    kind: str  # desktop | mobile | tablet | bot
    user_agent: str
    ip: str


@dataclass(frozen=True, slots=True)
class ClickEvent:
    event_id: str
    type: ClickType
    user_id: str
    session_id: str
    url: str
    referrer: str | None
    device: Device
    occurred_at_ms: int
    version: int = CLICK_VERSION


@dataclass(frozen=True, slots=True)
class OrderItem:
    sku: str
    quantity: int
    unit_price_cents: int


@dataclass(frozen=True, slots=True)
class Payment:
    method: str  # card | paypal | ...
    card_fingerprint: str | None
    card_country: str | None


@dataclass(frozen=True, slots=True)
class OrderCreated:
    event_id: str
    order_id: int
    user_id: str
    session_id: str | None
    amount_cents: int
    currency: str
    items: tuple[OrderItem, ...]
    payment: Payment | None
    device: Device | None
    occurred_at_ms: int
    version: int = ORDER_VERSION
    upcast_from: int | None = field(default=None, compare=False)
