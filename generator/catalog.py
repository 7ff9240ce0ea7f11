"""The shop: categories of products with a price in every currency, and what people search for.

Prices are integer minor units per currency (JPY has none); popularity falls off as 1/rank.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from itertools import accumulate
from random import Random

from streams.validation import CURRENCY_DIGITS

CATALOG_SEED = 20_240_601  # one shop for every run, whatever the traffic seed
PRODUCTS_PER_CATEGORY = 30
EUR_PER = {"EUR": 1.0, "USD": 1.08, "GBP": 0.86, "JPY": 162.0}  # units of currency per 1 EUR

# category -> (sku prefix, cheapest and dearest price in EUR, search terms)
CATEGORIES: dict[str, tuple[str, float, float, tuple[str, ...]]] = {
    "electronics": ("EL", 19, 1499, ("headphones", "usb c charger", "laptop", "4k monitor")),
    "books": ("BK", 3, 39, ("crime novel", "cookbook", "python programming", "atlas")),
    "home": ("HM", 6, 299, ("coffee maker", "bed linen", "desk lamp", "knife set")),
    "fashion": ("FA", 9, 199, ("running shoes", "rain jacket", "wool scarf", "jeans")),
    "sports": ("SP", 7, 399, ("yoga mat", "tent", "bike helmet", "dumbbells")),
    "toys": ("TY", 3, 129, ("lego", "board game", "puzzle 1000", "plush bear")),
    "beauty": ("BE", 2, 89, ("sunscreen", "shampoo", "lipstick", "face cream")),
}


@dataclass(frozen=True, slots=True)
class Product:
    sku: str
    category: str
    prices: dict[str, int]  # currency -> unit price in minor units

    @property
    def url(self) -> str:
        return f"/p/{self.sku}"


@dataclass(frozen=True, slots=True)
class Catalog:
    products: tuple[Product, ...]  # most popular first
    cum_popularity: tuple[float, ...]
    by_category: dict[str, tuple[Product, ...]]  # most popular first
    cheapest: tuple[Product, ...]  # what card testers buy
    dearest: tuple[Product, ...]  # what account takeovers buy

    def popular_product(self, rng: Random) -> Product:
        return rng.choices(self.products, cum_weights=self.cum_popularity)[0]

    def product_in(self, rng: Random, category: str) -> Product:
        shelf = self.by_category[category]
        return shelf[min(int(len(shelf) * rng.random() ** 2), len(shelf) - 1)]

    def category(self, rng: Random) -> str:
        return self.popular_product(rng).category

    def search(self, rng: Random) -> tuple[str, str]:
        """(category searched for, search page url)."""
        category = self.category(rng)
        term = rng.choice(CATEGORIES[category][3])
        return category, "/search?q=" + term.replace(" ", "+")


@cache
def build_catalog() -> Catalog:
    rng = Random(CATALOG_SEED)
    products = []
    for category, (prefix, cheapest, dearest, _) in CATEGORIES.items():
        for number in rng.sample(range(10_000, 100_000), PRODUCTS_PER_CATEGORY):
            eur = math.exp(rng.uniform(math.log(cheapest), math.log(dearest)))
            prices = {currency: _price(eur * rate, currency) for currency, rate in EUR_PER.items()}
            products.append(Product(f"{prefix}-{number}", category, prices))
    rng.shuffle(products)
    by_price = sorted(products, key=lambda product: product.prices["EUR"])
    weights = [1 / rank for rank in range(1, len(products) + 1)]
    return Catalog(
        products=tuple(products),
        cum_popularity=tuple(accumulate(weights)),
        by_category={
            category: tuple(p for p in products if p.category == category)
            for category in CATEGORIES
        },
        cheapest=tuple(by_price[:8]),
        dearest=tuple(by_price[-20:]),
    )


def _price(amount: float, currency: str) -> int:
    """A shop price in minor units: x.99 in cent currencies, whole tens of yen in JPY."""
    if CURRENCY_DIGITS.get(currency, 2) == 0:
        return max(10, round(amount / 10) * 10)
    return max(1, round(amount)) * 100 - 1
