"""The bench's page-view query worked out from the clicks topic itself, and a contender's final
counts checked against it (pure: records in, verdict out).

The query (bench/quix_pageviews.py states it in Quix, bench/bytewax_pageviews.py in Bytewax;
`clickstream` computes it as its `pageviews` metric):

  a page view  a clicks record our validation accepts (streams.validation: a JSON object of a
               known schema, every field of the right type, `occurred_at` inside 2000..2100 and
               at most 5 min after the record's timestamp) of type page_view whose event_id its
               partition has not counted before; its page is page_of(url), the URL path
  window       [start, start + 60 s) of `occurred_at`, per source partition (no repartition)
  clock        per source partition: the largest `occurred_at` among its page views so far
  late         a page view is counted nowhere when the clock before it has reached its
               window's end + the 30 s grace; a window is closed once the clock reaches that

Each partition's page views are taken in offset order, the order they were produced in. Every
closed window must come out exactly: each page's count equal, no page missing or extra. A
window the data leaves open (its partition's clock never reached its close) may be missing
(`.final()` emits nothing without a later event), but one a contender emits anyway (an idle
tick closed it) must hold exactly the page views on time so far; any other window is extra.

Our worker forgets an event_id after an hour of event time and moves its clock with every
valid click, page view or not; on the bench's data (less than 40 min of event time, events out
of order by at most 10 s, late ones by 2 to 10 min, page views every few ms per partition)
neither changes a verdict, and if one did the check would say so.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from agents.clicks import page_of
from streams.eventtime import format_timestamp
from streams.records import ClickType
from streams.validation import InvalidEvent, parse_click_fields

WINDOW_S = 60
GRACE_S = 30
PAGE_VIEW = ClickType.PAGE_VIEW


class SourceRecord(NamedTuple):
    """A clicks-topic record as a contender reads it."""

    partition: int
    timestamp_ms: int  # the record's own timestamp (validation bounds occurred_at by it)
    value: bytes


class PageView(NamedTuple):
    occurred_at_ms: int
    page: str


class Window(NamedTuple):
    partition: int  # the source partition
    start_ms: int


class CountRow(NamedTuple):
    """One line of a contender's output: a page's views in one window of one partition."""

    partition: int
    start_ms: int
    page: str
    views: int


WindowCounts = dict[Window, dict[str, int]]  # -> page -> views


@dataclass(frozen=True)
class Expected:
    """What the query gives on the data: windows closed by it, windows it leaves open."""

    closed: WindowCounts
    still_open: WindowCounts
    late: int  # page views counted nowhere

    def summary(self) -> str:
        views = sum(sum(pages.values()) for pages in self.closed.values())
        return (
            f"{len(self.closed)} closed windows ({views:,} page views), "
            f"{len(self.still_open)} left open, {self.late} late page views"
        )


def page_views_of(records: Iterable[SourceRecord]) -> dict[int, list[PageView]]:
    """partition -> its page views in offset order: valid page_view clicks, each event_id once."""
    views: dict[int, list[PageView]] = {}
    seen: dict[int, set[str]] = {}
    for record in records:
        try:
            click = parse_click_fields(record.value, record.timestamp_ms)
        except InvalidEvent:
            continue
        counted = seen.setdefault(record.partition, set())
        if click.type is not PAGE_VIEW or click.event_id in counted:
            continue
        counted.add(click.event_id)
        page_view = PageView(click.occurred_at_ms, page_of(click.url))
        views.setdefault(record.partition, []).append(page_view)
    return views


def expected_pageviews(
    page_views: Mapping[int, Iterable[PageView]], window_s: int = WINDOW_S, grace_s: int = GRACE_S
) -> Expected:
    """Counts per window and page, each partition's page views taken in their order (above)."""
    window_ms, grace_ms = window_s * 1000, grace_s * 1000
    closed: WindowCounts = {}
    still_open: WindowCounts = {}
    late = 0
    for partition, views in page_views.items():
        clock: int | None = None
        counts: dict[int, Counter[str]] = {}
        for view in views:
            start = view.occurred_at_ms - view.occurred_at_ms % window_ms
            if clock is not None and clock >= start + window_ms + grace_ms:
                late += 1
            else:
                counts.setdefault(start, Counter())[view.page] += 1
            clock = view.occurred_at_ms if clock is None else max(clock, view.occurred_at_ms)
        for start, pages in counts.items():
            done = clock is not None and clock >= start + window_ms + grace_ms
            (closed if done else still_open)[Window(partition, start)] = dict(pages)
    return Expected(closed, still_open, late)


def window_counts(rows: Iterable[CountRow]) -> WindowCounts:
    """Rows -> counts; a row for a window and page seen before replaces it (a repeat after a
    crash carries the same count); pages with no views are left out, like empty windows."""
    counts: WindowCounts = {}
    for row in rows:
        counts.setdefault(Window(row.partition, row.start_ms), {})[row.page] = row.views
    return {
        window: {page: n for page, n in pages.items() if n}
        for window, pages in counts.items()
        if any(pages.values())
    }


def _difference(window: Window, want: Mapping[str, int], got: Mapping[str, int]) -> str:
    """The window and its first page whose count differs, e.g. "p2 10:01:00 '/p/42' 3 != 4"."""
    page = min(page for page in want.keys() | got.keys() if want.get(page) != got.get(page))
    when = format_timestamp(window.start_ms)[11:19]
    pages = sum(1 for p in want.keys() | got.keys() if want.get(p) != got.get(p))
    return (
        f"p{window.partition} {when} {page!r}: {want.get(page, 0)} expected, "
        f"{got.get(page, 0)} counted ({pages} pages differ)"
    )


def check(expected: Expected, got: WindowCounts) -> str:
    """'exact (N windows)' or 'WRONG: n of N windows differ (e.g. ...)', by the rules above."""
    checked = dict(expected.closed)
    for window in got.keys() - expected.closed.keys():
        checked[window] = expected.still_open.get(window, {})  # emitted early: must be exact
    wrong = sorted(w for w, pages in checked.items() if got.get(w, {}) != pages)
    if not wrong:
        return f"exact ({len(checked)} windows)"
    example = _difference(wrong[0], checked[wrong[0]], got.get(wrong[0], {}))
    return f"WRONG: {len(wrong)} of {len(checked)} windows differ (e.g. {example})"
