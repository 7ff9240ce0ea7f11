"""The upcaster registry (streams/upcast.py): each registered step takes a version one up, and
validation accepts an old version once its steps ship, and rejects it as unknown before."""

from __future__ import annotations

import orjson
import pytest

from streams import upcast as registry
from streams import validation
from streams.records import CLICK_SCHEMA, ORDER_SCHEMA
from streams.validation import InvalidEvent, parse_click, parse_order
from tests.builders import click_json, legacy_order_json, order_json

NOW = 1_767_225_600_000


def test_an_old_version_is_rejected_until_its_upcaster_ships(monkeypatch):
    """As if a release made clicks v2: a v1 click is an unknown
    version, a dead letter, until the release also registers the v1 -> v2 step."""
    monkeypatch.setattr(validation, "CLICK_VERSION", 2)
    raw = orjson.dumps(click_json(occurred_at_ms=NOW))  # a v1 click
    with pytest.raises(InvalidEvent) as rejected:
        parse_click(raw, NOW)
    assert rejected.value.reason == "unknown_schema_version"

    def click_v1_to_v2(body: dict) -> dict:
        return {**body, "version": 2}

    monkeypatch.setitem(registry.UPCASTERS, (CLICK_SCHEMA, 1), click_v1_to_v2)
    click = parse_click(raw, NOW)
    assert click.url == click_json()["url"]


def test_steps_chain_from_any_registered_version(monkeypatch):
    monkeypatch.setitem(registry.UPCASTERS, ("thing", 1), lambda b: {**b, "version": 2, "a": 1})
    monkeypatch.setitem(registry.UPCASTERS, ("thing", 2), lambda b: {**b, "version": 3, "b": 2})
    body, came_in = registry.upcast("thing", {"schema": "thing", "version": 1})
    assert body == {"schema": "thing", "version": 3, "a": 1, "b": 2} and came_in == 1
    body, came_in = registry.upcast("thing", {"schema": "thing", "version": 3})
    assert came_in is None and body["version"] == 3


def test_the_legacy_order_is_v1_and_a_body_saying_v1_is_unknown():
    assert registry.upcast_order(legacy_order_json())[1] == 1
    assert parse_order(orjson.dumps(legacy_order_json(occurred_at_ms=NOW)), NOW).upcast_from == 1
    said_v1 = {**order_json(occurred_at_ms=NOW), "version": 1}
    assert registry.upcast_order(said_v1) == (said_v1, None)
    with pytest.raises(InvalidEvent) as rejected:
        parse_order(orjson.dumps(said_v1), NOW)
    assert rejected.value.reason == "unknown_schema_version"
    assert ORDER_SCHEMA in rejected.value.detail
