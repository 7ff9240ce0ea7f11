"""No record stops a partition: whatever raises while a batch is folded or encoded, the records
to blame become dead letters `processing_error` and their neighbours are counted.

The clicks processor is driven as the worker's fast path drives it (whole fetched lists), with a
click kind whose measure misbehaves for marked users: one raises, one adds a count no
encoding holds (found only when the batch's state is encoded, so the batch is split to find
it), and one adds sums that saturate.
"""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import orjson
from faust.types import TP

from agents.clicks import aggregate_clicks
from agents.window_results import window_result
from tables.panes import ClosedWindow, cell_key
from tables.window_state import Progress, progress_key
from tables.windows import MAX_COUNT
from tests.agent.test_aggregate_agents import clicks_runner
from tests.builders import T0, click_bytes

PANE = T0 - T0 % 60_000
clicks_kind = aggregate_clicks()


def misbehaving_measure(click):
    if click.user_id == "raises":
        raise RuntimeError("a bug in a measure")
    if click.user_id == "unencodable":  # a count no JSON integer holds
        return ((("pageviews|/huge", (2**70,)),), (), None)
    if click.user_id == "saturates":
        return ((("orders|EUR", (1, MAX_COUNT - 1)),), (), None)
    return clicks_kind.measure(click)


POISONED = replace(clicks_kind, measure=misbehaving_measure)


def fetched(topic: str, users: list[str], first_offset: int = 0) -> dict:
    records = [
        SimpleNamespace(
            topic=topic,
            partition=0,
            offset=first_offset + i,
            timestamp=T0,
            key=user.encode(),
            value=click_bytes(event_id=f"e{first_offset + i}", user_id=user, occurred_at_ms=T0),
            headers=(),
        )
        for i, user in enumerate(users)
    ]
    return {TP(topic, 0): records}


async def test_records_that_raise_or_are_unencodable_are_dead_letters_and_neighbours_count(
    app_and_log,
):
    app, settings, log = app_and_log
    runner = clicks_runner(app, settings, 0, kind=POISONED)
    users = ["u1", "raises", "u2", "u3", "unencodable", "u4", "u5"]
    await runner.deliver(fetched(settings.clicks_topic, users))
    # the partition moves on: the next fetch is processed as usual
    await runner.deliver(fetched(settings.clicks_topic, ["u6"], len(users)))

    table = app.tables["click_windows"]
    assert orjson.loads(table.data[cell_key(0, PANE, "pageviews|/p/42")])["v"] == [6]
    assert table.data.get(cell_key(0, PANE, "pageviews|/huge")) is None
    progress = Progress.decode(table.data[progress_key(0)])
    assert (progress.accepted, progress.dead_letters, progress.offset) == (6, 2, len(users))
    letters = {
        dict(headers)["source_offset"]: dict(headers)
        for _, _, headers in log.topic(settings.topics.dead_letters.name)
    }
    assert set(letters) == {b"1", b"4"}
    assert letters[b"1"]["reason"] == letters[b"4"]["reason"] == b"processing_error"
    assert letters[b"1"]["detail"] == b"RuntimeError: a bug in a measure"
    assert letters[b"4"]["detail"] == b"TypeError: Integer exceeds 64-bit range"


async def test_sums_saturate_and_the_result_says_which(app_and_log):
    app, settings, _ = app_and_log
    runner = clicks_runner(app, settings, 0, kind=POISONED)
    users = ["saturates", "u1", "saturates", "saturates"]
    await runner.deliver(fetched(settings.clicks_topic, users))

    table = app.tables["click_windows"]
    assert orjson.loads(table.data[cell_key(0, PANE, "orders|EUR")])["v"] == [3, MAX_COUNT]
    assert Progress.decode(table.data[progress_key(0)]).dead_letters == 0
    window = ClosedWindow(PANE, PANE + 60_000, {"orders|EUR": [3, MAX_COUNT]}, {})
    result = window_result("orders", 0, 4, window, 60_000)
    assert result["saturated"] == ["orders|EUR"]
    assert orjson.loads(orjson.dumps(result))["orders"]["EUR"]["cents"] == MAX_COUNT
