"""Where shoppers are: home countries with their currency, and IPv4s per country (from the
address plan in fraud.geoip)."""

from __future__ import annotations

from itertools import accumulate
from random import Random

from fraud.geoip import FIRST_OCTETS

# country -> (share of shoppers, currency)
HOME_COUNTRIES: dict[str, tuple[float, str]] = {
    "DE": (0.22, "EUR"),
    "FR": (0.12, "EUR"),
    "NL": (0.06, "EUR"),
    "ES": (0.07, "EUR"),
    "IT": (0.07, "EUR"),
    "GB": (0.16, "GBP"),
    "US": (0.22, "USD"),
    "JP": (0.08, "JPY"),
}
# Countries shoppers do not live in: where a taken-over account is suddenly used from.
ELSEWHERE = ("BR", "IN", "VN", "NG", "RO", "ID")
DATA_CENTER = "DC"  # cloud address space that crawlers and bots run from (fraud.geoip)

_COUNTRY_NAMES = tuple(HOME_COUNTRIES)
_COUNTRY_CUM_WEIGHTS = tuple(accumulate(share for share, _ in HOME_COUNTRIES.values()))


def random_home_country(rng: Random) -> str:
    return rng.choices(_COUNTRY_NAMES, cum_weights=_COUNTRY_CUM_WEIGHTS)[0]


def currency_of(country: str) -> str:
    return HOME_COUNTRIES[country][1] if country in HOME_COUNTRIES else "USD"


def random_foreign_country(rng: Random, home: str) -> str:
    """A country other than `home`, mostly one where none of our shoppers live."""
    if rng.random() < 0.8:
        return rng.choice(ELSEWHERE)
    return rng.choice([country for country in _COUNTRY_NAMES if country != home])


def random_ip(rng: Random, country: str) -> str:
    first = rng.choice(FIRST_OCTETS[country])
    return f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
