"""combine_window_parts under Faust's test_context (memory store, a fake log): parts of one
window in, its total out once; windows older than the retention are dropped from the table."""

from __future__ import annotations

import orjson

from streams.eventtime import format_timestamp
from tests.agent.conftest import until

HOUR = 3_600_000


def part(partition: int, start_ms: int, views: int) -> bytes:
    return orjson.dumps(
        {
            "id": f"clicks/tumbling/{start_ms}/p{partition}",
            "stream": "clicks",
            "kind": "tumbling",
            "start": format_timestamp(start_ms),
            "end": format_timestamp(start_ms + 60_000),
            "partition": partition,
            "partitions": 2,
            "pageviews": {"/a": views},
        }
    )


async def test_parts_of_a_window_give_one_total_and_old_windows_are_dropped(
    app_and_log, monkeypatch
):
    app, settings, log = app_and_log

    async def started_producer():
        return app.producer  # its send is the log's: the total is sent with the part's ack

    monkeypatch.setattr(app, "maybe_start_producer", started_producer)
    totals = settings.topics.window_totals.name
    table = app.tables["window_parts"]
    async with app.agents["combine_window_parts"].test_context() as agent:
        await agent.put(part(0, 0, 2), key=b"clicks/tumbling/0", partition=1)
        await agent.put(part(1, 0, 3), key=b"clicks/tumbling/0", partition=1)
        await agent.put(part(1, 0, 3), key=b"clicks/tumbling/0", partition=1)  # sent again
        await until(lambda: len(log.topic(totals)) >= 1)
        await agent.put(part(0, 30 * HOUR, 1), key=b"clicks/tumbling/later", partition=1)

    ((key, value, _),) = log.topic(totals)
    total = orjson.loads(value)
    assert key == b"clicks/tumbling/0" and total["pageviews"] == {"/a": 5}
    assert total["top_pages"] == [{"name": "/a", "count": 5}]
    assert [k for k in table.data.data if k.startswith(b"1|")] == [
        b"1|%020d|clicks|tumbling" % (30 * HOUR)
    ]  # the first window is past the retention (24 h) and gone
