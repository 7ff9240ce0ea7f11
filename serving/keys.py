"""The Redis key layout: the one source of truth for the projection, the dashboard and the API.

Every number is a per-source-partition partial, written as an absolute value (HSET, never INCR),
so replays and redeliveries rewrite the same value. Readers sum (sketches: merge) the partials
over partitions, and merge panes into wider windows the same way.

  {app}:meta                     HASH  window_ms, grace_ms, hop_ms, retention_ms, session_gap_ms
  {app}:windows:{metric}         ZSET  member = score = pane start (epoch ms)
  {app}:{metric}:{start}         HASH  one pane's partials, by metric:
      pageviews     "{partition}|{page}"            -> page views
      clicktypes    "{partition}|{click type}"      -> clicks
      referrers     "{partition}|{referrer host}"   -> clicks entering from that site
      orders        "{partition}|{currency}|orders" -> orders
                    "{partition}|{currency}|cents"  -> revenue (minor units)
      uniques       "{partition}|{sketch}"          -> HyperLogLog registers, base64
                    (tables/sketch.py); names: users, page_view, add_to_cart, checkout
                    (clicks), buyers (orders)
      sessions      "{partition}|ended|sessions"    -> user sessions that expired in the pane
                    "{partition}|ended|bounces"     -> of which single-click sessions
                    "{partition}|ended|duration_ms" -> their summed durations
      attributed    "{partition}|{host}|{currency}|orders" -> orders placed in the pane, by the
                    "{partition}|{host}|{currency}|cents"     entry referrer of their session
                    (tables/attribution.py; written once the pane's attribution is final)
      fraud         "{partition}|orders"            -> orders scored, by their event time
                    "{partition}|alerts"            -> of which alerts
                    "{partition}|score|{b}"         -> of which scored in [b/10, (b+1)/10),
                    (partition: score_orders' one)     b = 0..9 (streams.fraud.score_bucket)
  {app}:fraud-scored             ZSET  member = order id, score = order time: the newest
                                       FRAUD_EXPLAINED orders kept explained
  {app}:fraud-explained          HASH  order id -> its scored order (streams.fraud)
  {app}:fraud-alerts             ZSET  member = order id, score = order time: the newest
                                       FRAUD_ALERTS alerts
  {app}:fraud-alert              HASH  order id -> its fraud alert (streams.fraud)
  {app}:pipeline:{stream}        HASH  "{partition}|{counter}" -> value
        stream: clicks | orders; counter: watermark_ms, accepted, duplicates, late,
        dead_letters, ticks, retried (re-injected copies applied, streams.retries),
        open_sessions (clicks: sessions not yet expired), order_facts,
        late_orders (clicks: order facts records forwarded by the orders side; orders whose
        facts came after their pane's attribution closed)
  {app}:dead-letter-reasons:{stream}  HASH  "{partition}|{reason}" -> dead letters for it
Panes older than the newest watermark minus the retention are deleted (by event time).
  {app}:epoch                    STRING a token: missing or new, the workers restate what they
                                       own (serving.epoch; clickstream projection rebuild)
  {app}:restated                 HASH  "{partition}|{stream}" -> the epoch mark (token and
                                       Redis run id) its restate answered (stream: clicks |
                                       orders | fraud)
  {app}:read-back                STRING the mark whose closed panes were read back
                                       (clickstream.rebuild)
  {app}:reading-back             STRING held (with a TTL) by the one reading them back now
  {app}:workers                  ZSET  member = worker (host:pid), score = its last report (ms)
  {app}:worker-health            HASH  worker -> its health report, JSON (clickstream.health)

Versions (clickstream.versions), under the app id the dashboard is configured with:
  {base}:active                  STRING the app id served (clickstream promote); unset: base
  {base}:versions                HASH   app id -> how it was replayed (clickstream.replay)
  {base}:diffs                   HASH   "{live}/{shadow}" -> their latest diff report
"""

from __future__ import annotations

PAGE_VIEWS = "pageviews"
CLICK_TYPES = "clicktypes"
REFERRERS = "referrers"
ORDERS = "orders"
UNIQUES = "uniques"
SESSIONS = "sessions"
ATTRIBUTED = "attributed"
FRAUD = "fraud"
METRICS = (PAGE_VIEWS, CLICK_TYPES, REFERRERS, ORDERS, UNIQUES, SESSIONS, ATTRIBUTED, FRAUD)
CLICK_METRICS = (PAGE_VIEWS, CLICK_TYPES, REFERRERS, UNIQUES, SESSIONS, ATTRIBUTED)  # settable
# metrics whose cells hold several counts
COUNT_NAMES = {
    ORDERS: ("orders", "cents"),
    SESSIONS: ("sessions", "bounces", "duration_ms"),
    ATTRIBUTED: ("orders", "cents"),
}
SEP = "|"
FRAUD_EXPLAINED = 20_000  # a scored order is ~2.2 KB: ~45 MB of Redis at most
FRAUD_ALERTS = 1_000


def meta(app: str) -> str:
    return f"{app}:meta"


def windows(app: str, metric: str) -> str:
    return f"{app}:windows:{metric}"


def window(app: str, metric: str, start_ms: int) -> str:
    return f"{app}:{metric}:{start_ms}"


def pipeline(app: str, stream: str) -> str:
    return f"{app}:pipeline:{stream}"


def dead_letter_reasons(app: str, stream: str) -> str:
    return f"{app}:dead-letter-reasons:{stream}"


def fraud(app: str, name: str) -> str:
    """name: scored | explained | alerts | alert."""
    return f"{app}:fraud-{name}"


def epoch(app: str) -> str:
    return f"{app}:epoch"


def restated(app: str) -> str:
    return f"{app}:restated"


def read_back(app: str) -> str:
    return f"{app}:read-back"


def reading_back(app: str) -> str:
    return f"{app}:reading-back"


def workers(app: str) -> str:
    return f"{app}:workers"


def worker_health(app: str) -> str:
    return f"{app}:worker-health"


def active(base: str) -> str:
    return f"{base}:active"


def versions(base: str) -> str:
    return f"{base}:versions"


def diffs(base: str) -> str:
    return f"{base}:diffs"


def field(partition: int, *parts: str) -> str:
    return SEP.join((str(partition), *parts))


def split_field(name: str) -> tuple[int, list[str]]:
    """Inverse of field(): the partition and the remaining parts. Pages may not contain '|'."""
    partition, *parts = name.split(SEP)
    return int(partition), parts
