"""Which country an IPv4 address is in, by its first octet: a stand-in for a GeoIP database,
and the address plan of the simulated world (the generator draws addresses from it).

Every first octet belongs to at most one country, so the lookup is exact for the simulation.
DC is cloud address space (crawlers and bots).
"""

from __future__ import annotations

FIRST_OCTETS: dict[str, tuple[int, ...]] = {
    "DE": (46, 79, 84, 91, 217),
    "FR": (78, 82, 90, 176),
    "NL": (77, 83, 145),
    "ES": (80, 88, 213),
    "IT": (87, 93, 151),
    "GB": (51, 81, 86, 109),
    "US": (24, 50, 73, 98, 173),
    "JP": (60, 126, 133, 153),
    "BR": (177, 179, 189, 201),
    "IN": (49, 103, 117),
    "VN": (14, 113, 171),
    "NG": (102, 105, 197),
    "RO": (5, 89, 188),
    "ID": (36, 110, 114),
    "DC": (34, 35, 52, 54, 104, 138, 159),
}
COUNTRY_OF_OCTET = {octet: c for c, octets in FIRST_OCTETS.items() for octet in octets}
assert len(COUNTRY_OF_OCTET) == sum(map(len, FIRST_OCTETS.values())), "an octet in two countries"


def country_of_ip(ip: str) -> str | None:
    """The country of a dotted IPv4 address, or None (not IPv4, or not in the plan)."""
    first, dot, _ = ip.partition(".")
    return COUNTRY_OF_OCTET.get(int(first)) if dot and first.isdigit() else None
