"""count_page_views: page views per page (URL path) per event-time window; other click types
only advance the watermark and the dedup state."""

from __future__ import annotations

from agents.windowed import EventKind, Increments
from serving import keys
from serving.projection import MetricLayout
from streams.records import ClickEvent, ClickType
from streams.topics import PAGE_VIEW_TABLE
from streams.validation import parse_click

ONE_VIEW = (1,)


def page_of(url: str) -> str:
    """A page is its URL path: query strings (campaign tags) and fragments are dropped."""
    return url.split("?", 1)[0].split("#", 1)[0] or "/"


def page_view_increments(click: ClickEvent) -> Increments:
    return ((page_of(click.url), ONE_VIEW),) if click.type is ClickType.PAGE_VIEW else ()


COUNT_PAGE_VIEWS = EventKind(
    agent="count_page_views",
    table=PAGE_VIEW_TABLE,
    parse=parse_click,
    increments=page_view_increments,
    layout=MetricLayout(keys.PAGE_VIEWS, stream="clicks"),
)
