"""aggregate_clicks: what one click adds to its pane, per source partition.

pageviews  | <page>       +1 per page_view (a page is its URL path)
clicktypes | <type>       +1 per click of that type (the funnel's event counts)
referrers  | <host>       +1 per click that entered from another site (a referred visit)
uniques    | users        HyperLogLog of user_id, every click
uniques    | <step>       HyperLogLog of user_id per funnel step (page_view, add_to_cart,
                          checkout; the last step, buyers, comes from the orders stream)
"""

from __future__ import annotations

from agents.windowed import EventKind
from serving import keys
from streams.records import ClickEvent, ClickType
from streams.topics import CLICK_TABLE
from streams.validation import parse_click
from tables import sketch
from tables.window_state import Increments, Uniques

ONE = (1,)
FUNNEL_CLICKS = (ClickType.PAGE_VIEW, ClickType.ADD_TO_CART, ClickType.CHECKOUT)
_TYPE_DIMENSION = {t: f"{keys.CLICK_TYPES}|{t.value}" for t in ClickType}
_STEP_DIMENSION = {t: f"{keys.UNIQUES}|{t.value}" for t in FUNNEL_CLICKS}
USERS = f"{keys.UNIQUES}|users"


def page_of(url: str) -> str:
    """A page is its URL path: query strings (campaign tags) and fragments are dropped."""
    return url.split("?", 1)[0].split("#", 1)[0] or "/"


def host_of(url: str) -> str:
    """'https://www.google.com/search?q=x' -> 'www.google.com'."""
    rest = url.split("://", 1)[-1]
    return rest.split("/", 1)[0].split("?", 1)[0].lower() or "(unknown)"


def click_measures(click: ClickEvent) -> tuple[Increments, Uniques]:
    increments: list[tuple[str, tuple[int, ...]]] = [(_TYPE_DIMENSION[click.type], ONE)]
    if click.type is ClickType.PAGE_VIEW:
        increments.append((f"{keys.PAGE_VIEWS}|{page_of(click.url)}", ONE))
    if click.referrer:
        increments.append((f"{keys.REFERRERS}|{host_of(click.referrer)}", ONE))
    register, rank = sketch.position(click.user_id)
    step = _STEP_DIMENSION.get(click.type)
    uniques = (
        ((USERS, register, rank),)
        if step is None
        else (
            (USERS, register, rank),
            (step, register, rank),
        )
    )
    return tuple(increments), uniques


AGGREGATE_CLICKS = EventKind(
    agent="aggregate_clicks",
    table=CLICK_TABLE,
    stream="clicks",
    parse=parse_click,
    measure=click_measures,
)
