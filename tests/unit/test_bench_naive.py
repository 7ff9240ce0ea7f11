"""bench.naive_faust's full-metric peer: what it reads from a click, and which messages it skips."""

from __future__ import annotations

import orjson
import pytest

from bench.naive_faust import Click, minute_of, parse_click
from tests.builders import T0, click_bytes, click_json


def test_a_click_gives_its_page_path_referrer_host_and_event_minute():
    click = parse_click(
        click_bytes(url="/p/42?utm=mail#top", referrer="https://Search.Example/?q=x")
    )
    assert click == Click("e-1", "page_view", "u-1", "/p/42", "search.example", T0 // 1000)


def test_a_click_without_a_referrer_has_no_referrer_host():
    click = parse_click(click_bytes(referrer=None))
    assert click is not None and click.referrer_host is None


def test_the_minute_starts_on_a_whole_minute_in_utc():
    assert minute_of("2026-01-05T10:00:59.999+01:00") == T0 // 1000 - 3600


@pytest.mark.parametrize(
    "value",
    [
        b'{"event_id": "e-1", "type": "page_vi',
        b'[{"event_id": "e-1"}]',
        orjson.dumps({**click_json(), "user_id": 40213}),
        orjson.dumps({**click_json(), "url": ["/p/42"]}),
        orjson.dumps({**click_json(), "type": "hover"}),
        orjson.dumps({**click_json(), "referrer": 7}),
        orjson.dumps({**click_json(), "occurred_at": "2026-01-05T10:00:00"}),
        orjson.dumps({**click_json(), "occurred_at": "yesterday"}),
        orjson.dumps({k: v for k, v in click_json().items() if k != "event_id"}),
    ],
)
def test_a_message_that_is_not_a_usable_click_is_skipped(value):
    assert parse_click(value) is None
