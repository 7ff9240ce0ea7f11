"""The Redis key layout: the one source of truth for the projection, the dashboard and the API.

Every number is a per-source-partition partial, written as an absolute value (HSET, never INCR),
so replays and redeliveries rewrite the same value. Readers sum the partials over partitions.

  {app}:meta                         HASH  window_ms, grace_ms
  {app}:windows:{metric}             ZSET  member = score = window start (epoch ms)
  {app}:pageviews:{start}            HASH  "{partition}|{url}"                  -> views
  {app}:orders:{start}               HASH  "{partition}|{currency}|orders"      -> order count
                                           "{partition}|{currency}|cents"       -> revenue (cents)
  {app}:pipeline:{stream}            HASH  "{partition}|{counter}"              -> value
        stream: clicks | orders; counter: watermark_ms, accepted, duplicates, late, dead_letters
"""

from __future__ import annotations

PAGE_VIEWS = "pageviews"
ORDERS = "orders"
SEP = "|"


def meta(app: str) -> str:
    return f"{app}:meta"


def windows(app: str, metric: str) -> str:
    return f"{app}:windows:{metric}"


def window(app: str, metric: str, start_ms: int) -> str:
    return f"{app}:{metric}:{start_ms}"


def pipeline(app: str, stream: str) -> str:
    return f"{app}:pipeline:{stream}"


def field(partition: int, *parts: str) -> str:
    return SEP.join((str(partition), *parts))


def split_field(name: str) -> tuple[int, list[str]]:
    """Inverse of field(): the partition and the remaining parts. URLs may not contain '|'."""
    partition, *parts = name.split(SEP)
    return int(partition), parts
