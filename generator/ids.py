"""Identifiers drawn from the simulation's own rng, so the same seed gives the same ids."""

from __future__ import annotations

import uuid
from random import Random


def random_uuid(rng: Random) -> str:
    """A version-4-shaped UUID whose 122 random bits come from `rng`."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def random_token(rng: Random, prefix: str, hex_digits: int = 12) -> str:
    """`<prefix>-<hex>`, e.g. u-3f9a1c2b7d0e, for users, devices and sessions."""
    return f"{prefix}-{rng.getrandbits(4 * hex_digits):0{hex_digits}x}"
