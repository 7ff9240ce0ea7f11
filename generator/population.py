"""Who visits: a fixed population of returning shoppers (stable devices, IPs and cards) plus
strangers (new accounts, bots). Profiles are drawn lazily, on a user's first visit.

Visits favour a few loyal users: user index = floor(size * u**2), u uniform in [0, 1).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from random import Random

from generator.geo import DATA_CENTER, currency_of, random_home_country, random_ip
from generator.ids import random_token
from streams.records import Device

USER_AGENTS: dict[str, tuple[str, ...]] = {
    "desktop": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.5 Safari/605.1.15",
        "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
    ),
    "mobile": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0.0.0 Mobile Safari/537.36",
    ),
    "tablet": (
        "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.5 Mobile/15E148 Safari/604.1",
    ),
    "bot": (
        "python-requests/2.32.3",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "HeadlessChrome/126.0.0.0 Safari/537.36",
        "Scrapy/2.11.2 (+https://scrapy.org)",
    ),
}
HUMAN_KINDS = ("desktop", "mobile", "tablet")
HUMAN_KIND_WEIGHTS = (0.45, 0.45, 0.10)


@dataclass(frozen=True, slots=True)
class Card:
    fingerprint: str
    country: str


@dataclass(frozen=True, slots=True)
class Shopper:
    user_id: str
    country: str
    currency: str
    devices: tuple[Device, ...]  # the first is the one used most
    cards: tuple[Card, ...]
    pays_by_paypal: bool


def new_device(rng: Random, country: str, kind: str | None = None) -> Device:
    if kind is None:
        kind = rng.choices(HUMAN_KINDS, HUMAN_KIND_WEIGHTS)[0]
    return Device(
        id=random_token(rng, "d"),
        kind=kind,
        user_agent=rng.choice(USER_AGENTS[kind]),
        ip=random_ip(rng, DATA_CENTER if kind == "bot" else country),
    )


def new_card(rng: Random, country: str) -> Card:
    return Card(fingerprint=random_token(rng, "fp", 16), country=country)


def new_shopper(rng: Random, country: str | None = None) -> Shopper:
    home = random_home_country(rng) if country is None else country
    return Shopper(
        user_id=random_token(rng, "u"),
        country=home,
        currency=currency_of(home),
        devices=tuple(new_device(rng, home) for _ in range(rng.choice((1, 1, 2, 3)))),
        cards=tuple(new_card(rng, home) for _ in range(rng.choice((1, 1, 2)))),
        pays_by_paypal=rng.random() < 0.2,
    )


def device_for_visit(rng: Random, shopper: Shopper) -> Device:
    """Mostly the usual device at its usual address; sometimes another one, or a new address."""
    device = shopper.devices[0] if rng.random() < 0.7 else rng.choice(shopper.devices)
    if rng.random() < 0.1:  # a mobile network or a new router
        device = replace(device, ip=random_ip(rng, shopper.country))
    return device


class Population:
    """`size` returning shoppers, created on first visit; `seen` keeps the order they appeared."""

    def __init__(self, rng: Random, size: int) -> None:
        self._rng = rng
        self._size = size
        self._by_index: dict[int, Shopper] = {}
        self.seen: list[Shopper] = []

    def visitor(self) -> Shopper:
        index = int(self._size * self._rng.random() ** 2)
        shopper = self._by_index.get(index)
        if shopper is None:
            shopper = self._by_index[index] = new_shopper(self._rng)
            self.seen.append(shopper)
        return shopper

    def known_shopper(self) -> Shopper:
        """Someone who has shopped here before (the target of an account takeover)."""
        return self._rng.choice(self.seen) if self.seen else self.visitor()
