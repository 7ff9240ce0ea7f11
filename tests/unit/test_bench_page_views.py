"""The bench's page-view query: the oracle's page views and lateness, the check of a contender's
counts, the contenders' output formats, and the Quix and Bytewax peers' own steps (no Kafka)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from bench.aiokafka_loop import write_counts
from bench.outputs import (
    faust_minute_rows,
    faust_window_rows,
    loop_rows,
    pageviews_topic_rows,
    window_result_rows,
)
from bench.page_view_oracle import (
    CountRow,
    Expected,
    PageView,
    SourceRecord,
    Window,
    check,
    expected_pageviews,
    page_views_of,
    window_counts,
)
from bench.report import RunResult, render_table, summarize, verdict
from streams.codec import dumps
from streams.eventtime import format_timestamp
from tests.builders import T0, click_bytes, click_json

MIN = 60_000  # T0 starts a minute
SEC = 1_000


def views(*pairs: tuple[int, str]) -> list[PageView]:
    """(ms after T0, page) -> page views in that order."""
    return [PageView(T0 + at, page) for at, page in pairs]


def record(value: bytes, partition: int = 0, timestamp_ms: int = T0) -> SourceRecord:
    return SourceRecord(partition, timestamp_ms, value)


# which records are page views


def test_a_valid_page_view_counts_under_its_url_path():
    got = page_views_of([record(click_bytes(url="/p/42?utm_source=mail#top"), partition=3)])
    assert got == {3: [PageView(T0, "/p/42")]}


def test_a_repeated_event_id_counts_once_per_partition():
    again = click_bytes(event_id="e-1")
    got = page_views_of([record(again), record(again), record(again, partition=1)])
    assert got == {0: [PageView(T0, "/p/42")], 1: [PageView(T0, "/p/42")]}


@pytest.mark.parametrize(
    "value",
    [
        click_bytes(type="search"),  # another click type
        b'{"schema": "click", "type": "page_vi',  # cut off
        orjson.dumps([click_json()]),  # not an object
        orjson.dumps({**click_json(), "user_id": 40213}),  # a field of the wrong type
        orjson.dumps({**click_json(), "occurred_at": "2999-12-31T23:59:59.999Z"}),  # absurd
        dumps({k: v for k, v in click_json().items() if k != "session_id"}),  # missing field
    ],
)
def test_what_validation_rejects_is_no_page_view(value: bytes):
    assert page_views_of([record(value)]) == {}


def test_a_page_view_far_ahead_of_its_record_is_rejected():
    # occurred_at more than 5 min after the record's timestamp: a skewed clock, not an event
    assert page_views_of([record(click_bytes(), timestamp_ms=T0 - 6 * MIN)]) == {}


# the oracle's windows and lateness


def test_page_views_count_per_page_and_window_in_each_partition():
    got = expected_pageviews(
        {
            0: views((1 * SEC, "/a"), (2 * SEC, "/a"), (3 * SEC, "/b"), (MIN + 31 * SEC, "/c")),
            1: views((5 * SEC, "/a")),
        }
    )
    assert got.closed == {Window(0, T0): {"/a": 2, "/b": 1}}
    assert got.still_open == {Window(0, T0 + MIN): {"/c": 1}, Window(1, T0): {"/a": 1}}
    assert got.late == 0


def test_a_window_closes_when_the_clock_reaches_its_end_plus_grace():
    just_before = expected_pageviews({0: views((0, "/a"), (MIN + 30 * SEC - 1, "/b"))})
    assert Window(0, T0) in just_before.still_open
    at_close = expected_pageviews({0: views((0, "/a"), (MIN + 30 * SEC, "/b"))})
    assert at_close.closed == {Window(0, T0): {"/a": 1}}


def test_a_page_view_within_the_grace_still_counts_in_its_window():
    got = expected_pageviews({0: views((MIN + 29 * SEC, "/b"), (59 * SEC, "/a"))})
    assert got.still_open[Window(0, T0)] == {"/a": 1} and got.late == 0


def test_a_page_view_whose_window_has_closed_counts_nowhere():
    got = expected_pageviews(
        {0: views((10 * SEC, "/a"), (MIN + 30 * SEC, "/b"), (59 * SEC, "/late"))}
    )
    assert got.closed == {Window(0, T0): {"/a": 1}} and got.late == 1


def test_the_clock_is_the_largest_time_so_far_not_the_last():
    # /c is behind /b, so the clock stays at /b's time: /late is still late after /c
    got = expected_pageviews(
        {0: views((0, "/a"), (2 * MIN, "/b"), (MIN + 10 * SEC, "/c"), (30 * SEC, "/late"))}
    )
    assert got.late == 1 and got.closed == {Window(0, T0): {"/a": 1}}


def test_each_partition_has_its_own_clock():
    # partition 1's clock is far ahead; partition 0's page view is on time by its own clock
    got = expected_pageviews({0: views((0, "/a")), 1: views((10 * MIN, "/b"))})
    assert got.still_open[Window(0, T0)] == {"/a": 1} and got.late == 0


def test_windows_follow_the_size_and_grace_given():
    got = expected_pageviews({0: views((0, "/a"), (15 * SEC, "/b"))}, window_s=10, grace_s=5)
    assert got.closed == {Window(0, T0): {"/a": 1}}
    assert got.still_open == {Window(0, T0 + 10 * SEC): {"/b": 1}}


# the check


EXPECTED = Expected(
    closed={Window(0, T0): {"/a": 2, "/b": 1}, Window(1, T0): {"/a": 1}},
    still_open={Window(0, T0 + MIN): {"/c": 1}},
    late=0,
)


def test_counts_equal_on_every_closed_window_are_exact():
    got = {Window(0, T0): {"/a": 2, "/b": 1}, Window(1, T0): {"/a": 1}}
    assert check(EXPECTED, got) == "exact (2 windows)"


def test_a_window_left_open_may_be_missing_or_emitted_exactly():
    got = {
        Window(0, T0): {"/a": 2, "/b": 1},
        Window(1, T0): {"/a": 1},
        Window(0, T0 + MIN): {"/c": 1},  # an idle tick closed it
    }
    assert check(EXPECTED, got) == "exact (3 windows)"


def test_a_different_count_names_the_window_and_page():
    got = {Window(0, T0): {"/a": 3, "/b": 1}, Window(1, T0): {"/a": 1}}
    when = format_timestamp(T0)[11:19]
    assert check(EXPECTED, got) == (
        f"WRONG: 1 of 2 windows differ (e.g. p0 {when} '/a': 2 expected, 3 counted "
        "(1 pages differ))"
    )


def test_a_missing_closed_window_is_wrong():
    assert check(EXPECTED, {Window(0, T0): {"/a": 2, "/b": 1}}).startswith(
        "WRONG: 1 of 2 windows differ (e.g. p1"
    )


def test_a_missing_page_or_an_extra_window_is_wrong():
    got = {Window(0, T0): {"/a": 2}, Window(1, T0): {"/a": 1}, Window(2, T0): {"/x": 1}}
    verdict = check(EXPECTED, got)
    assert verdict.startswith("WRONG: 2 of 3 windows differ") and "'/b': 1 expected, 0" in verdict


def test_a_window_emitted_early_with_other_counts_is_wrong():
    got = {
        Window(0, T0): {"/a": 2, "/b": 1},
        Window(1, T0): {"/a": 1},
        Window(0, T0 + MIN): {"/c": 2},
    }
    assert check(EXPECTED, got).startswith("WRONG: 1 of 3 windows differ")


def test_window_counts_keep_the_last_row_and_drop_empty_pages_and_windows():
    rows = [
        CountRow(0, T0, "/a", 1),
        CountRow(0, T0, "/a", 2),  # repeated after a crash: the same or a later count
        CountRow(0, T0, "/none", 0),
        CountRow(1, T0, "/b", 0),
    ]
    assert window_counts(rows) == {Window(0, T0): {"/a": 2}}


# the report


def test_one_wrong_run_makes_the_contender_wrong():
    wrong = "WRONG: 1 of 4 windows differ (e.g. ...)"
    assert verdict(["exact (4 windows)", wrong, "exact (4 windows)"]) == f"1/3 runs {wrong}"
    assert verdict([wrong]) == wrong
    assert verdict(["exact (4 windows)", None]) == "exact (4 windows)"
    assert verdict([None, None]) is None


def test_the_table_says_exact_or_wrong_and_the_verdicts_follow_in_full():
    def run(contender: str, output: str | None) -> RunResult:
        return RunResult(contender, 1, 10_000, 3.0, 2.0, 8_000, output=output)

    runs = [
        run("quix", "exact (4 windows)"),
        run("aiokafka-loop", "WRONG: 4 of 4 windows differ (e.g. p0)"),
        run("clickstream-with-fraud", None),
    ]
    lines = render_table(summarize(runs, [r.contender for r in runs]), []).splitlines()
    assert lines[2].split()[-2:] == ["exact", "1/1"]
    assert lines[3].split()[-2:] == ["WRONG", "1/1"]
    assert lines[4].split()[-2:] == ["-", "1/1"]
    assert lines[-2:] == [
        "  quix           exact (4 windows)",
        "  aiokafka-loop  WRONG: 4 of 4 windows differ (e.g. p0)",
    ]


# the contenders' output formats


def test_window_results_give_their_clicks_tumbling_page_views():
    result = {
        "stream": "clicks", "kind": "tumbling", "start": format_timestamp(T0), "partition": 2,
        "pageviews": {"/": 12, "/p/42": 3},
    }  # fmt: skip
    others = [
        {**result, "kind": "hopping"},
        {**result, "stream": "orders"},
        {"stream": "clicks", "kind": "progress", "partition": 2, "watermark_ms": T0},
        {k: v for k, v in result.items() if k != "pageviews"},  # the metric off: no rows
    ]
    values = [orjson.dumps(r) for r in (result, *others)]
    assert list(window_result_rows(values)) == [
        CountRow(2, T0, "/", 12),
        CountRow(2, T0, "/p/42", 3),
    ]


def test_pageviews_topic_rows_are_read_as_written():
    value = orjson.dumps({"partition": 1, "start": T0, "page": "/p/1", "views": 4})
    assert list(pageviews_topic_rows([value])) == [CountRow(1, T0, "/p/1", 4)]


def test_a_faust_window_changelog_gives_the_last_count_per_key():
    key = orjson.dumps(["/p/1?utm=x", [T0 / 1000, T0 / 1000 + 59.9]])
    other = orjson.dumps(["/gone", [T0 / 1000, T0 / 1000 + 59.9]])
    records = [(0, key, b"1"), (0, key, b"2"), (1, key, b"5"), (0, other, b"1"), (0, other, None)]
    assert sorted(faust_window_rows(records)) == [
        CountRow(0, T0, "/p/1?utm=x", 2),
        CountRow(1, T0, "/p/1?utm=x", 5),
    ]


def test_a_faust_minute_table_changelog_gives_the_last_count_per_key():
    key = orjson.dumps(f"{T0 // 1000}|/p/1")
    assert faust_minute_rows([(3, key, b"1"), (3, key, b"7")]) == [CountRow(3, T0, "/p/1", 7)]


def test_the_loops_counts_file_round_trips(tmp_path: Any):
    path = tmp_path / "counts.json"
    write_counts(path, {(2, "/p/1?x=1", T0 // MIN): 3})  # type: ignore[arg-type]
    assert list(loop_rows(path.read_bytes())) == [CountRow(2, T0, "/p/1?x=1", 3)]


# the Quix peer's steps


class FakeState:
    """What first_sight uses of a Quix State: get with a default, set."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.values[key] = value


def test_the_quix_peer_keeps_valid_page_views_with_their_path_and_event_time():
    quix = pytest.importorskip("bench.quix_pageviews")
    view = quix.page_view_of(click_bytes(url="/p/42?utm=x", event_id="e-9"), b"u-1", T0, [])
    assert view == quix.PageView("e-9", "/p/42", T0)
    assert quix.page_view_of(click_bytes(type="search"), b"u-1", T0, []) is None
    assert quix.page_view_of(b"{", b"u-1", T0, []) is None


def test_the_quix_peer_counts_an_event_id_once_and_forgets_it_an_hour_later():
    quix = pytest.importorskip("bench.quix_pageviews")
    state = FakeState()
    first = quix.PageView("e-1", "/a", T0)
    assert quix.first_sight(first, state) is True
    assert quix.first_sight(first, state) is False
    later = quix.PageView("e-2", "/a", T0 + quix.DEDUP_HORIZON_MS + 1)
    assert quix.first_sight(later, state) is True
    assert state.values[quix.SEEN] == {"e-2": later.occurred_at_ms}  # e-1 forgotten


# the Bytewax peer's steps


def test_the_bytewax_peer_keys_valid_page_views_by_their_source_partition():
    bw = pytest.importorskip("bench.bytewax_pageviews")
    from bytewax.connectors.kafka import KafkaSourceMessage

    def message(value: bytes) -> Any:
        return KafkaSourceMessage(b"u-1", value, partition=2, timestamp=(1, T0))

    view = bw.page_view_of(message(click_bytes(url="/p/42?utm=x", event_id="e-9")))
    assert view == ("2", bw.PageView("e-9", "/p/42", T0))
    assert bw.page_view_of(message(click_bytes(type="search"))) is None
    assert bw.page_view_of(message(b"[")) is None


def test_the_bytewax_peer_counts_an_event_id_once_per_partition():
    bw = pytest.importorskip("bench.bytewax_pageviews")
    view = bw.PageView("e-1", "/a", T0)
    seen, out = bw.first_sight(None, view)
    assert out == [view]
    assert bw.first_sight(seen, view) == (seen, [])
    later = bw.PageView("e-2", "/a", T0 + bw.DEDUP_HORIZON_MS + 1)
    seen, out = bw.first_sight(seen, later)
    assert out == [later] and seen.at == {"e-2": later.occurred_at_ms}  # e-1 forgotten


def test_the_bytewax_peer_writes_a_row_per_page_of_a_closed_window():
    bw = pytest.importorskip("bench.bytewax_pageviews")
    from collections import Counter

    window_id = T0 // MIN  # windows counted in minutes from 1970
    messages = list(bw.result_messages(("3", (window_id, Counter({"/a": 2, "/b": 1})))))
    assert [m.key for m in messages] == [b"/a", b"/b"]
    assert list(pageviews_topic_rows(m.value for m in messages)) == [
        CountRow(3, T0, "/a", 2),
        CountRow(3, T0, "/b", 1),
    ]
