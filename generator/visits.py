"""An ordinary shopping visit: enter from a referrer, walk pages by a Markov transition table,
think between clicks, fill and trim a cart, and maybe check out and pay (OrderCreated).

Funnel: page_view -> add_to_cart -> checkout -> OrderCreated a few seconds later (75% pay).
"""

from __future__ import annotations

import math
from itertools import accumulate
from random import Random

from generator.catalog import Catalog, Product
from generator.population import Shopper, device_for_visit
from generator.world import PlannedEvent, Visit, World
from streams.records import ClickType, Payment

HOME, CATEGORY, PRODUCT, SEARCH = "home", "category", "product", "search"
ADD, CART, REMOVE, CHECKOUT, EXIT = "add_to_cart", "cart", "remove_from_cart", "checkout", "exit"

# step -> (next step, weight): what a visitor does after each step
TRANSITIONS: dict[str, tuple[tuple[str, float], ...]] = {
    HOME: ((CATEGORY, 35), (SEARCH, 20), (PRODUCT, 20), (CART, 3), (EXIT, 22)),
    CATEGORY: ((PRODUCT, 55), (CATEGORY, 10), (SEARCH, 10), (HOME, 5), (EXIT, 20)),
    SEARCH: ((PRODUCT, 60), (SEARCH, 15), (CATEGORY, 5), (EXIT, 20)),
    PRODUCT: ((ADD, 25), (PRODUCT, 25), (CATEGORY, 15), (SEARCH, 10), (CART, 5), (EXIT, 20)),
    ADD: ((PRODUCT, 30), (CART, 35), (CATEGORY, 10), (SEARCH, 10), (EXIT, 15)),
    CART: ((CHECKOUT, 45), (REMOVE, 10), (PRODUCT, 15), (HOME, 5), (EXIT, 25)),
    REMOVE: ((CART, 40), (PRODUCT, 20), (CHECKOUT, 20), (EXIT, 20)),
}
_NEXT = {step: tuple(s for s, _ in moves) for step, moves in TRANSITIONS.items()}
_CUM = {step: tuple(accumulate(w for _, w in moves)) for step, moves in TRANSITIONS.items()}
MAX_CLICKS = 60
PAYMENT_RATE = 0.75  # share of checkouts that end in an order

# (share of visits, referrers, entry steps): where a visit comes from and where it lands
ENTRIES: tuple[tuple[float, tuple[str | None, ...], tuple[str, ...]], ...] = (
    (0.35, (None,), (HOME,)),  # typed the address, bookmark
    (
        0.28,
        ("https://www.google.com/", "https://www.bing.com/", "https://duckduckgo.com/"),
        (PRODUCT, PRODUCT, CATEGORY),
    ),
    (
        0.15,
        ("https://www.facebook.com/", "https://www.instagram.com/", "https://t.co/"),
        (PRODUCT,),
    ),
    (0.12, ("https://mail.google.com/", "https://www.googleadservices.com/"), (PRODUCT, CATEGORY)),
    (0.10, ("https://www.reddit.com/", "https://www.techradar.com/"), (PRODUCT, HOME)),
)
_ENTRY_CUM = tuple(accumulate(share for share, _, _ in ENTRIES))
CAMPAIGN_ENTRY = 3  # index in ENTRIES whose landing url carries utm parameters
CAMPAIGN_TAGS = (
    "?utm_source=newsletter&utm_medium=email&utm_campaign=spring_sale",
    "?utm_source=google&utm_medium=cpc&utm_campaign=brand",
)


def think_ms(rng: Random, median_ms: float, spread: float = 0.8) -> int:
    """Log-normal pause between two clicks, clamped to [0.4 s, 5 min]."""
    return min(max(int(rng.lognormvariate(math.log(median_ms), spread)), 400), 300_000)


def plan_shopping_visit(world: World, start_ms: int) -> list[PlannedEvent]:
    rng = world.rng
    shopper = world.population.visitor()
    visit = world.visit(shopper.user_id, device_for_visit(rng, shopper), shopper.currency)
    walk = _Walk(world.catalog, rng, visit)
    referrer, step, tag = _entry(rng)
    at_ms = start_ms
    for _ in range(MAX_CLICKS):
        walk.take(step, at_ms, referrer, tag)
        referrer, tag = None, ""
        if step == CHECKOUT:
            if rng.random() < PAYMENT_RATE:
                visit.order(
                    walk.cart_lines(), payment_of(rng, shopper), at_ms + think_ms(rng, 8000, 0.5)
                )
            break
        step = walk.next_step(step)
        if step == EXIT:
            break
        at_ms += think_ms(rng, 4000 if step in (ADD, REMOVE) else 9000)
    return visit.events


def payment_of(rng: Random, shopper: Shopper) -> Payment:
    if shopper.pays_by_paypal:
        return Payment("paypal", None, None)
    card = rng.choice(shopper.cards)
    return Payment("card", card.fingerprint, card.country)


def _entry(rng: Random) -> tuple[str | None, str, str]:
    """(referrer, first step, utm tag for the landing url)."""
    index = rng.choices(range(len(ENTRIES)), cum_weights=_ENTRY_CUM)[0]
    _, referrers, steps = ENTRIES[index]
    tag = rng.choice(CAMPAIGN_TAGS) if index == CAMPAIGN_ENTRY else ""
    return rng.choice(referrers), rng.choice(steps), tag


class _Walk:
    """Where the visitor is (category, product) and what is in the cart."""

    def __init__(self, catalog: Catalog, rng: Random, visit: Visit) -> None:
        self.catalog = catalog
        self.rng = rng
        self.visit = visit
        self.category: str | None = None
        self.product: Product | None = None
        self.cart: dict[str, tuple[Product, int]] = {}

    def next_step(self, step: str) -> str:
        while True:
            candidate = self.rng.choices(_NEXT[step], cum_weights=_CUM[step])[0]
            if candidate in (CHECKOUT, REMOVE) and not self.cart:
                continue
            if candidate == ADD and self.product is None:
                continue
            return candidate

    def take(self, step: str, at_ms: int, referrer: str | None, tag: str) -> None:
        rng, click = self.rng, self.visit.click
        if step == HOME:
            click(ClickType.PAGE_VIEW, "/" + tag, at_ms, referrer)
        elif step == CATEGORY:
            self.category = self.catalog.category(rng)
            click(ClickType.PAGE_VIEW, f"/c/{self.category}{tag}", at_ms, referrer)
        elif step == PRODUCT:
            self.product = self._browse_product()
            self.category = self.product.category
            click(ClickType.PAGE_VIEW, self.product.url + tag, at_ms, referrer)
        elif step == SEARCH:
            self.category, url = self.catalog.search(rng)
            click(ClickType.SEARCH, url, at_ms, referrer)
        elif step == ADD and self.product is not None:
            _, held = self.cart.get(self.product.sku, (self.product, 0))
            self.cart[self.product.sku] = (self.product, held + rng.choice((1, 1, 1, 1, 2, 3)))
            click(ClickType.ADD_TO_CART, self.product.url, at_ms, referrer)
        elif step == CART:
            click(ClickType.PAGE_VIEW, "/cart", at_ms, referrer)
        elif step == REMOVE:
            del self.cart[rng.choice(sorted(self.cart))]
            click(ClickType.REMOVE_FROM_CART, "/cart", at_ms, referrer)
        elif step == CHECKOUT:
            click(ClickType.CHECKOUT, "/checkout", at_ms, referrer)

    def cart_lines(self) -> list[tuple[Product, int]]:
        return list(self.cart.values())

    def _browse_product(self) -> Product:
        if self.category is not None and self.rng.random() < 0.7:
            return self.catalog.product_in(self.rng, self.category)
        return self.catalog.popular_product(self.rng)
