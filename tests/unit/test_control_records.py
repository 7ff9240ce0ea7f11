"""Control records are taken only from this app and within the future skew of their record."""

from __future__ import annotations

import orjson

from streams.control import control_verdict
from streams.ticks import TickRecord, read_tick, tick_value

NOW = 1_767_225_600_000
SKEW = 300_000


def test_our_own_control_record_within_the_skew_is_taken():
    assert control_verdict("tick", "shop", NOW + SKEW, "shop", NOW, SKEW) is None


def test_a_control_record_of_another_app_is_foreign():
    reason, detail = control_verdict("tick", "shadow", NOW, "shop", NOW, SKEW)
    assert reason == "foreign_tick" and "'shadow'" in detail


def test_a_control_record_ahead_of_its_record_time_is_bad():
    reason, detail = control_verdict("order_facts", "shop", NOW + SKEW + 1, "shop", NOW, SKEW)
    assert reason == "bad_order_facts" and "300 s after its record's timestamp" in detail


def test_an_absurd_time_still_gets_a_readable_detail():
    reason, detail = control_verdict("tick", "shop", 10**30, "shop", NOW, SKEW)
    assert reason == "bad_tick" and str(10**30) in detail


def test_a_tick_reads_back_with_its_place_and_writer():
    assert read_tick(tick_value(NOW, 41, "shop")) == TickRecord(NOW, 41, "shop")
    for broken in (
        b"",
        b"[]",
        b'{"tick_ms": true, "after": 1, "by": "shop"}',
        b'{"tick_ms": 1, "by": "shop"}',
        b'{"tick_ms": 1, "after": -2, "by": "shop"}',
        b'{"tick_ms": 1}',
    ):
        assert read_tick(broken) is None
    assert read_tick(orjson.dumps({"tick_ms": 1.5, "after": 1, "by": "shop"})) is None
