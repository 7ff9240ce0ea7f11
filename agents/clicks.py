"""aggregate_clicks: what one click adds to its pane, per source partition.

pageviews  | <page>       +1 per page_view (a page is its URL path)
clicktypes | <type>       +1 per click of that type (the funnel's event counts)
referrers  | <host>       +1 per click that entered from another site (a referred visit)
uniques    | users        HyperLogLog of user_id, every click
uniques    | <step>       HyperLogLog of user_id per funnel step (page_view, add_to_cart,
                          checkout; the last step, buyers, comes from the orders stream)
sessions   | ended        [sessions, bounces, total duration ms] of the user sessions that
                          expired in the pane (tables.sessions; every click is a Visit)
CLICKSTREAM_METRICS chooses among these five metrics; the click counters always run.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache, partial

from agents.windowed import EventKind
from serving import keys
from streams.records import ClickEvent, ClickType
from streams.topics import CLICK_TABLE
from streams.validation import ClickFields, parse_click_fields
from tables import sketch
from tables.panes import Increments, Uniques
from tables.sessions import Visit

ONE = (1,)
PAGE_VIEW = ClickType.PAGE_VIEW  # a module constant: enum member lookups cost per click
FUNNEL_CLICKS = (ClickType.PAGE_VIEW, ClickType.ADD_TO_CART, ClickType.CHECKOUT)
_TYPE_DIMENSION = {t: f"{keys.CLICK_TYPES}|{t.value}" for t in ClickType}
_STEP_DIMENSION = {t: f"{keys.UNIQUES}|{t.value}" for t in FUNNEL_CLICKS}
USERS = f"{keys.UNIQUES}|users"
ALL_METRICS = frozenset(keys.CLICK_METRICS)
Measures = tuple[Increments, Uniques, Visit | None]
Click = ClickEvent | ClickFields  # a measure reads type, user_id, url and referrer


def page_of(url: str) -> str:
    """A page is its URL path: query strings (campaign tags) and fragments are dropped."""
    return url.split("?", 1)[0].split("#", 1)[0] or "/"


def host_of(url: str) -> str:
    """'https://www.google.com/search?q=x' -> 'www.google.com'."""
    rest = url.split("://", 1)[-1]
    return rest.split("/", 1)[0].split("?", 1)[0].lower() or "(unknown)"


def _uniques(click: Click) -> Uniques:
    register, rank = sketch.position(click.user_id)
    step = _STEP_DIMENSION.get(click.type)
    if step is None:
        return ((USERS, register, rank),)
    return ((USERS, register, rank), (step, register, rank))


def _visit(click: Click) -> Visit:
    host = _referrer_host(click.referrer) if click.referrer else ""
    return Visit(click.user_id, click.type is PAGE_VIEW, host)


@lru_cache(maxsize=1 << 16)
def _referrer_host(referrer: str) -> str:
    return host_of(referrer)


def measures_of(metrics: frozenset[str]) -> Callable[[Click], Measures]:
    """What a click adds, for the chosen `metrics` (names from ALL_METRICS)."""
    types, pages, referrers = (
        m in metrics for m in (keys.CLICK_TYPES, keys.PAGE_VIEWS, keys.REFERRERS)
    )
    uniques, sessions = keys.UNIQUES in metrics, keys.SESSIONS in metrics
    # few distinct (type, url, referrer): the hot path looks their increments up
    increments_of = lru_cache(maxsize=1 << 16)(partial(_increments, types, pages, referrers))

    def measure(click: Click) -> Measures:
        return (
            increments_of(click.type, click.url, click.referrer),
            _uniques(click) if uniques else (),
            _visit(click) if sessions else None,
        )

    return measure


def _increments(
    types: bool, pages: bool, referrers: bool, kind: ClickType, url: str, referrer: str | None
) -> Increments:
    increments: list[tuple[str, tuple[int, ...]]] = []
    if types:
        increments.append((_TYPE_DIMENSION[kind], ONE))
    if pages and kind is PAGE_VIEW:
        increments.append((f"{keys.PAGE_VIEWS}|{page_of(url)}", ONE))
    if referrers and referrer:
        increments.append((f"{keys.REFERRERS}|{_referrer_host(referrer)}", ONE))
    return tuple(increments)


click_measures = measures_of(ALL_METRICS)


def aggregate_clicks(metrics: frozenset[str] = ALL_METRICS) -> EventKind:
    return EventKind(
        agent="aggregate_clicks",
        table=CLICK_TABLE,
        stream="clicks",
        parse=parse_click_fields,
        measure=measures_of(metrics),
        reads_facts=keys.ATTRIBUTED in metrics and keys.SESSIONS in metrics,
    )
