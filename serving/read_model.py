"""The read model: typed rows summed over source partitions, read from the layout in serving.keys.

Rule: a reader's number = the sum of the per-partition partials (the worker writes each partial
as an absolute value). Reads are pipelined: the window lists in one round trip, then every window
hash in a second one; `snapshot()` reads everything the dashboard shows in those same two trips.
Hash fields of a kind this module does not know are skipped, so newer workers may add fields.
Every function raises `Unavailable` (one readable line) when Redis cannot be reached.
"""

from __future__ import annotations

import base64
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import orjson
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from serving import keys
from serving.keys import SEP
from streams.fraud import SCORE_BUCKETS
from tables import sketch
from tables.windows import MAX_COUNT

MAX_WINDOWS = 1440
"""The most windows one read may ask for (a day of 1-minute windows)."""

PIPELINE_STREAMS = ("clicks", "orders")
PIPELINE_COUNTERS = ("accepted", "duplicates", "late", "dead_letters", "open_sessions")
WATERMARK = "watermark_ms"

Row = TypeVar("Row")
Hash = Mapping[Any, Any]  # a raw HGETALL reply: str or bytes keys and values


class Unavailable(RuntimeError):
    """Redis could not be reached or answered with an error."""


@dataclass(frozen=True)
class Meta:
    window_ms: int | None
    grace_ms: int | None
    session_gap_ms: int | None = None


@dataclass(frozen=True)
class PageViewRow:
    window_start_ms: int
    url: str
    views: int


@dataclass(frozen=True)
class OrderRow:
    window_start_ms: int
    currency: str
    orders: int
    revenue_cents: int


@dataclass(frozen=True)
class CountRow:
    """One dimension of a counted metric in one window: a click type, a referrer host."""

    window_start_ms: int
    name: str
    count: int


@dataclass(frozen=True)
class UniqueRow:
    """Distinct users of one sketch in one window (HyperLogLog estimate, see tables.sketch)."""

    window_start_ms: int
    sketch: str  # users | page_view | add_to_cart | checkout | buyers
    users: int


@dataclass(frozen=True)
class FunnelStep:
    step: str  # page_view -> add_to_cart -> checkout -> buyers (OrderCreated)
    users: int  # distinct users who did this step in the span (sketch estimate)
    # users / users of the previous step; None for the first, and after a step of no users
    conversion: float | None


FUNNEL = ("page_view", "add_to_cart", "checkout", "buyers")


@dataclass(frozen=True)
class SessionRow:
    """The user sessions that ended (expired) in one window (tables.sessions)."""

    window_start_ms: int
    sessions: int
    bounces: int  # single-click sessions
    duration_ms: int  # summed over the sessions
    bounce_rate: float  # bounces / sessions
    mean_duration_ms: float


@dataclass(frozen=True)
class AttributionRow:
    """Orders placed in one window, by the entry referrer of the session they were placed in
    (tables.attribution): a host, "(direct)" or "(no session)"."""

    window_start_ms: int
    referrer: str
    currency: str
    orders: int
    revenue_cents: int


@dataclass(frozen=True)
class FraudRow:
    """The orders scored in one window (by their event time), over the scorer's partitions."""

    window_start_ms: int
    orders: int
    alerts: int
    alert_rate: float  # alerts / orders
    scores: tuple[int, ...]  # orders per score bucket: [0, 0.1), [0.1, 0.2), ..., [0.9, 1]


@dataclass(frozen=True)
class FraudSummary:
    windows: list[FraudRow]  # oldest first, windows with orders only
    orders: int  # over those windows
    alerts: int
    alert_rate: float | None  # None: no orders
    scores: tuple[int, ...]


@dataclass(frozen=True)
class PartitionRow:
    partition: int
    watermark_ms: int | None
    accepted: int
    duplicates: int
    late: int
    dead_letters: int
    open_sessions: int = 0


@dataclass(frozen=True)
class PipelineRow:
    """One input stream: counters summed over its partitions, and each partition's own numbers."""

    stream: str
    accepted: int
    duplicates: int
    late: int
    dead_letters: int
    low_watermark_ms: int | None  # the smallest partition watermark: event time fully seen
    partitions: tuple[PartitionRow, ...]
    open_sessions: int = 0  # clicks: user sessions not yet expired, now
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)  # summed over partitions


@dataclass(frozen=True)
class Snapshot:
    """Everything the dashboard shows, read in two round trips."""

    meta: Meta
    page_views: list[PageViewRow]
    orders: list[OrderRow]
    pipeline: list[PipelineRow]
    referrers: list[CountRow]
    uniques: list[UniqueRow]
    funnel: list[FunnelStep]  # over every window of the snapshot
    sessions: list[SessionRow]
    attributed: list[AttributionRow]


def connect(url: str, timeout: float = 1.5) -> redis.Redis:
    """A client that fails fast (short timeouts, no backoff): a page never hangs on a dead Redis,
    and a hung one (no answer) costs one timeout, not two."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # one retry on a broken connection (survives a restarted Redis), none on a timeout
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        retry_on_timeout=False,
    )


def ping(client: redis.Redis) -> None:
    with reachable(client):
        client.ping()


def served(client: redis.Redis, base: str) -> str:
    """The version (app id) that the dashboard and API of `base` serve (clickstream.versions)."""
    with reachable(client):
        name = client.get(keys.active(base))
    return str(name) if name else base


@dataclass(frozen=True)
class VersionRow:
    name: str
    served: bool
    state: str  # base | replaying | following | replayed
    replayed: str  # "<from> .. <to>" as asked, "" for the base
    diff: str  # the latest `clickstream diff` of it against another version, "" if none


def versions(client: redis.Redis, base: str) -> list[VersionRow]:
    """The base and the versions replayed beside it (clickstream.versions), the served marked,
    each with its latest diff against another version."""
    with reachable(client):
        served = str(client.get(keys.active(base)) or base)  # a decode_responses client
        registered = client.hgetall(keys.versions(base))
        diffs = client.hgetall(keys.diffs(base))
    latest: dict[str, str] = {}
    for pair, raw in sorted(diffs.items()):
        live, shadow = str(pair).split("/", 1)
        latest[shadow] = f"{_diff_summary(orjson.loads(raw))} vs {live}"
    rows = [VersionRow(base, served == base, "base", "", latest.get(base, ""))]
    for name, raw in sorted((str(n), r) for n, r in registered.items()):
        about = orjson.loads(raw)
        asked = f"{about.get('from')} .. {about.get('to') or 'following'}"
        state = about.get("state", "?")
        rows.append(VersionRow(name, served == name, state, asked, latest.get(name, "")))
    if not any(row.served for row in rows):  # promoted, never registered here
        rows.append(VersionRow(served, True, "?", "", latest.get(served, "")))
    return rows


def latest_diff(client: redis.Redis, base: str) -> dict[str, Any] | None:
    """The diff report saved last (`clickstream diff`), or None."""
    with reachable(client):
        reports = [orjson.loads(raw) for raw in client.hvals(keys.diffs(base))]
    return max(reports, key=lambda r: r.get("saved_at_ms", 0), default=None)


def _diff_summary(report: dict[str, Any]) -> str:
    if report.get("identical"):
        return "identical"
    totals = {"different": 0, "only_live": 0, "only_shadow": 0}
    for metric in report.get("metrics", {}).values():
        for name in totals:
            totals[name] += metric.get(name, 0)
    return (
        f"{totals['different']} different, {totals['only_live']} only live, "
        f"{totals['only_shadow']} only here"
    )


def meta(client: redis.Redis, app: str) -> Meta:
    with reachable(client):
        return _meta(client.hgetall(keys.meta(app)))


def page_views(client: redis.Redis, app: str, last_windows: int) -> list[PageViewRow]:
    """Views per URL per window, for the newest `last_windows` windows, oldest first."""
    (windows,), _ = _read_windows(client, app, [keys.PAGE_VIEWS], last_windows)
    return _page_view_rows(windows)


def orders(client: redis.Redis, app: str, last_windows: int) -> list[OrderRow]:
    """Orders and revenue per currency per window, for the newest windows, oldest first."""
    (windows,), _ = _read_windows(client, app, [keys.ORDERS], last_windows)
    return _order_rows(windows)


def counts(client: redis.Redis, app: str, metric: str, last_windows: int) -> list[CountRow]:
    """Per window, one row per dimension of a single-count metric (clicktypes, referrers)."""
    (windows,), _ = _read_windows(client, app, [metric], last_windows)
    return _count_rows(windows)


def uniques(client: redis.Redis, app: str, last_windows: int) -> list[UniqueRow]:
    """Distinct users per window and sketch, the partitions' sketches merged."""
    (windows,), _ = _read_windows(client, app, [keys.UNIQUES], last_windows)
    return _unique_rows(windows)


def funnel(client: redis.Redis, app: str, last_windows: int) -> list[FunnelStep]:
    """Distinct users per funnel step over the newest windows (sketches merged over them)."""
    (windows,), _ = _read_windows(client, app, [keys.UNIQUES], last_windows)
    return _funnel(windows)


def sessions(client: redis.Redis, app: str, last_windows: int) -> list[SessionRow]:
    """Sessions that ended per window, with bounces and summed durations."""
    (windows,), _ = _read_windows(client, app, [keys.SESSIONS], last_windows)
    return _session_rows(windows)


def attribution(client: redis.Redis, app: str, last_windows: int) -> list[AttributionRow]:
    """Orders and revenue per window by session referrer and currency (final windows only:
    a window appears once both streams have passed it)."""
    (windows,), _ = _read_windows(client, app, [keys.ATTRIBUTED], last_windows)
    return _attribution_rows(windows)


def fraud_summary(client: redis.Redis, app: str, last_windows: int) -> FraudSummary:
    """The alert rate and the score distribution per window, and over the newest windows."""
    (windows,), _ = _read_windows(client, app, [keys.FRAUD], last_windows)
    rows = _fraud_rows(windows)
    orders, alerts = sum(r.orders for r in rows), sum(r.alerts for r in rows)
    scores = tuple(map(sum, zip(*(r.scores for r in rows), strict=True))) if rows else ()
    return FraudSummary(
        rows, orders, alerts, alerts / orders if orders else None, scores or (0,) * SCORE_BUCKETS
    )


def fraud_alerts(client: redis.Redis, app: str, limit: int) -> list[dict[str, Any]]:
    """The newest `limit` fraud alerts (streams.fraud's FraudAlert), newest first."""
    check_limit(limit)
    with reachable(client):
        newest = [_text(m) for m in client.zrevrange(keys.fraud(app, "alerts"), 0, limit - 1)]
        bodies = client.hmget(keys.fraud(app, "alert"), newest) if newest else []
    return [orjson.loads(body) for body in bodies if body is not None]


def fraud_order(client: redis.Redis, app: str, order_id: str) -> dict[str, Any] | None:
    """One order's scored record (its features, contributions and reasons), while Redis keeps
    it (the newest keys.FRAUD_EXPLAINED orders); None otherwise."""
    with reachable(client):
        body = client.hget(keys.fraud(app, "explained"), order_id)
    return None if body is None else orjson.loads(body)


def pipeline(client: redis.Redis, app: str) -> list[PipelineRow]:
    """Per input stream: totals over partitions and per-partition watermarks and counters."""
    with reachable(client):
        pipe = client.pipeline()
        for stream in PIPELINE_STREAMS:
            pipe.hgetall(keys.pipeline(app, stream))
            pipe.hgetall(keys.dead_letter_reasons(app, stream))
        replies = pipe.execute()
    rows = []
    for stream, counters, reasons in zip(
        PIPELINE_STREAMS, replies[::2], replies[1::2], strict=True
    ):
        summed: dict[str, int] = defaultdict(int)
        for _partition, parts, value in _fields(reasons):
            summed[keys.SEP.join(parts)] += value
        row = _pipeline_row(stream, counters)
        rows.append(replace(row, dead_letter_reasons=dict(sorted(summed.items()))))
    return rows


def snapshot(client: redis.Redis, app: str, last_windows: int) -> Snapshot:
    plain = [keys.meta(app), *(keys.pipeline(app, s) for s in PIPELINE_STREAMS)]
    metrics = [keys.PAGE_VIEWS, keys.ORDERS, keys.REFERRERS, keys.UNIQUES, keys.SESSIONS]
    (views, orders_, referrers, sketches, ended, attributed), (meta_hash, *pipeline_hashes) = (
        _read_windows(client, app, [*metrics, keys.ATTRIBUTED], last_windows, plain)
    )
    return Snapshot(
        sessions=_session_rows(ended),
        attributed=_attribution_rows(attributed),
        referrers=_count_rows(referrers),
        uniques=_unique_rows(sketches),
        funnel=_funnel(sketches),
        meta=_meta(meta_hash),
        page_views=_page_view_rows(views),
        orders=_order_rows(orders_),
        pipeline=[
            _pipeline_row(stream, raw)
            for stream, raw in zip(PIPELINE_STREAMS, pipeline_hashes, strict=True)
        ],
    )


def check_limit(limit: int) -> int:
    if not 1 <= limit <= keys.FRAUD_ALERTS:
        raise ValueError(f"limit must be between 1 and {keys.FRAUD_ALERTS}, got {limit}")
    return limit


def check_windows(last_windows: int) -> int:
    if not 1 <= last_windows <= MAX_WINDOWS:
        raise ValueError(f"windows must be between 1 and {MAX_WINDOWS}, got {last_windows}")
    return last_windows


# --- reading -------------------------------------------------------------------------------------


@contextmanager
def reachable(client: redis.Redis) -> Iterator[None]:
    """Redis errors inside become Unavailable (a 503, a "Redis unreachable" status)."""
    try:
        yield
    except redis.RedisError as exc:
        where = client.get_connection_kwargs()
        host = where.get("path") or f"{where.get('host')}:{where.get('port')}"
        lost = isinstance(exc, redis.ConnectionError | redis.TimeoutError)
        problem = "is unreachable" if lost else "answered with an error"
        raise Unavailable(f"Redis at {host} {problem}: {exc}") from exc


def _read_windows(
    client: redis.Redis,
    app: str,
    metrics: Sequence[str],
    last_windows: int,
    plain_hashes: Sequence[str] = (),
) -> tuple[list[list[tuple[int, Hash]]], list[Hash]]:
    """Per metric, (window start, raw hash) for its newest windows, oldest first; and the raw
    `plain_hashes`, read in the first of the two round trips."""
    check_windows(last_windows)
    with reachable(client):
        first = client.pipeline()
        for metric in metrics:
            first.zrevrange(keys.windows(app, metric), 0, last_windows - 1)
        for key in plain_hashes:
            first.hgetall(key)
        replies = first.execute()
        starts = [sorted(int(_text(s)) for s in reply) for reply in replies[: len(metrics)]]
        second = client.pipeline()
        for metric, metric_starts in zip(metrics, starts, strict=True):
            for start in metric_starts:
                second.hgetall(keys.window(app, metric, start))
        hashes = iter(second.execute())
    windows = [[(start, next(hashes)) for start in metric_starts] for metric_starts in starts]
    return windows, replies[len(metrics) :]


# --- parsing: raw hashes -> rows -----------------------------------------------------------------


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _fields(raw: Hash) -> Iterator[tuple[int, list[str], int]]:
    """(partition, remaining field parts, integer value) for each field of a partials hash."""
    for name, value in raw.items():
        partition, parts = keys.split_field(_text(name))
        yield partition, parts, int(_text(value))


def _meta(raw: Hash) -> Meta:
    values = {_text(k): int(_text(v)) for k, v in raw.items()}
    return Meta(
        window_ms=values.get("window_ms"),
        grace_ms=values.get("grace_ms"),
        session_gap_ms=values.get("session_gap_ms"),
    )


def _capped(count: int) -> int:
    """Partials summed over partitions saturate as the workers' own sums do."""
    return min(count, MAX_COUNT)


def _per_window(
    windows: list[tuple[int, Hash]], rows_of: Callable[[int, Hash], list[Row]]
) -> list[Row]:
    return [row for start, raw in windows for row in rows_of(start, raw)]


def _page_view_rows(windows: list[tuple[int, Hash]]) -> list[PageViewRow]:
    def rows_of(start: int, raw: Hash) -> list[PageViewRow]:
        views: dict[str, int] = defaultdict(int)
        for _partition, parts, value in _fields(raw):
            if len(parts) == 1:
                views[parts[0]] += value
        return [PageViewRow(start, url, _capped(n)) for url, n in sorted(views.items())]

    return _per_window(windows, rows_of)


def _order_rows(windows: list[tuple[int, Hash]]) -> list[OrderRow]:
    def rows_of(start: int, raw: Hash) -> list[OrderRow]:
        totals: dict[str, dict[str, int]] = defaultdict(lambda: {"orders": 0, "cents": 0})
        for _partition, parts, value in _fields(raw):
            if len(parts) == 2 and parts[1] in ("orders", "cents"):
                totals[parts[0]][parts[1]] += value
        return [
            OrderRow(start, currency, _capped(t["orders"]), _capped(t["cents"]))
            for currency, t in sorted(totals.items())
        ]

    return _per_window(windows, rows_of)


def _count_rows(windows: list[tuple[int, Hash]]) -> list[CountRow]:
    def rows_of(start: int, raw: Hash) -> list[CountRow]:
        totals: dict[str, int] = defaultdict(int)
        for _partition, parts, value in _fields(raw):
            if len(parts) == 1:
                totals[parts[0]] += value
        return [CountRow(start, name, _capped(n)) for name, n in sorted(totals.items())]

    return _per_window(windows, rows_of)


def _session_rows(windows: list[tuple[int, Hash]]) -> list[SessionRow]:
    names = keys.COUNT_NAMES[keys.SESSIONS]

    def rows_of(start: int, raw: Hash) -> list[SessionRow]:
        totals = dict.fromkeys(names, 0)
        for _partition, parts, value in _fields(raw):
            if len(parts) == 2 and parts[1] in totals:
                totals[parts[1]] += value
        n, bounces, duration = (_capped(totals[name]) for name in names)
        return [SessionRow(start, n, bounces, duration, bounces / n, duration / n)] if n else []

    return _per_window(windows, rows_of)


def _attribution_rows(windows: list[tuple[int, Hash]]) -> list[AttributionRow]:
    def rows_of(start: int, raw: Hash) -> list[AttributionRow]:
        totals: dict[tuple[str, str], dict[str, int]] = defaultdict(
            lambda: {"orders": 0, "cents": 0}
        )
        for _partition, parts, value in _fields(raw):
            if len(parts) == 3 and parts[2] in ("orders", "cents"):
                totals[parts[0], parts[1]][parts[2]] += value
        return [
            AttributionRow(start, referrer, currency, _capped(t["orders"]), _capped(t["cents"]))
            for (referrer, currency), t in sorted(totals.items())
        ]

    return _per_window(windows, rows_of)


def _fraud_rows(windows: list[tuple[int, Hash]]) -> list[FraudRow]:
    def rows_of(start: int, raw: Hash) -> list[FraudRow]:
        totals: dict[str, int] = defaultdict(int)
        for _partition, parts, value in _fields(raw):
            totals[SEP.join(parts)] += value
        orders, alerts = totals["orders"], totals["alerts"]
        scores = tuple(totals[f"score|{b}"] for b in range(SCORE_BUCKETS))
        return [FraudRow(start, orders, alerts, alerts / orders, scores)] if orders else []

    return _per_window(windows, rows_of)


def _sketches(raw: Hash) -> dict[str, list[bytes]]:
    """sketch name -> the partitions' registers."""
    found: dict[str, list[bytes]] = defaultdict(list)
    for name, value in raw.items():
        _partition, parts = keys.split_field(_text(name))
        if len(parts) == 1:
            found[parts[0]].append(base64.b64decode(_text(value)))
    return found


def _unique_rows(windows: list[tuple[int, Hash]]) -> list[UniqueRow]:
    def rows_of(start: int, raw: Hash) -> list[UniqueRow]:
        return [
            UniqueRow(start, name, sketch.estimate(sketch.union(parts)))
            for name, parts in sorted(_sketches(raw).items())
        ]

    return _per_window(windows, rows_of)


def _funnel(windows: list[tuple[int, Hash]]) -> list[FunnelStep]:
    per_step: dict[str, list[bytes]] = defaultdict(list)
    for _start, raw in windows:
        for name, parts in _sketches(raw).items():
            per_step[name] += parts
    steps: list[FunnelStep] = []
    for step in FUNNEL:
        users = sketch.estimate(sketch.union(per_step[step])) if per_step[step] else 0
        previous = steps[-1].users if steps else None
        conversion = users / previous if previous else None
        steps.append(FunnelStep(step, users, conversion))
    return steps


def _pipeline_row(stream: str, raw: Hash) -> PipelineRow:
    per_partition: dict[int, dict[str, int]] = defaultdict(dict)
    for partition, parts, value in _fields(raw):
        if len(parts) == 1 and parts[0] in (WATERMARK, *PIPELINE_COUNTERS):
            per_partition[partition][parts[0]] = value
    partitions = tuple(
        PartitionRow(
            partition=p,
            watermark_ms=c.get(WATERMARK),
            accepted=c.get("accepted", 0),
            duplicates=c.get("duplicates", 0),
            late=c.get("late", 0),
            dead_letters=c.get("dead_letters", 0),
            open_sessions=c.get("open_sessions", 0),
        )
        for p, c in sorted(per_partition.items())
    )
    watermarks = [p.watermark_ms for p in partitions if p.watermark_ms is not None]
    return PipelineRow(
        stream=stream,
        accepted=sum(p.accepted for p in partitions),
        duplicates=sum(p.duplicates for p in partitions),
        late=sum(p.late for p in partitions),
        dead_letters=sum(p.dead_letters for p in partitions),
        open_sessions=sum(p.open_sessions for p in partitions),
        low_watermark_ms=min(watermarks, default=None),
        partitions=partitions,
    )
