"""combine_window_parts under Faust's test_context (memory store, a fake log): parts of one
window and the partitions' progress in, its total out once; nothing kept of it afterwards."""

from __future__ import annotations

import orjson

from agents.window_results import progress_record
from streams.eventtime import format_timestamp
from tests.agent.conftest import until


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


def passed(partition: int, watermark_ms: int) -> bytes:
    return orjson.dumps(progress_record("clicks", partition, 2, watermark_ms, 10_000))


async def test_parts_and_progress_of_a_window_give_one_total_and_nothing_stays(
    app_and_log, monkeypatch
):
    app, settings, log = app_and_log

    async def started_producer():
        return app.producer  # its send is the log's: the total is sent with the record's ack

    monkeypatch.setattr(app, "maybe_start_producer", started_producer)
    totals = settings.topics.window_totals.name
    table = app.tables["window_parts"]
    async with app.agents["combine_window_parts"].test_context() as agent:
        await agent.put(part(0, 0, 2), key=b"tumbling/0", partition=1)
        await agent.put(part(1, 0, 3), key=b"tumbling/0", partition=1)
        await agent.put(passed(0, 70_000), key=None, partition=1)
        await agent.put(part(1, 0, 3), key=b"tumbling/0", partition=1)  # sent again
        await agent.put(passed(1, 75_000), key=None, partition=1)
        await until(lambda: len(log.topic(totals)) >= 1)
        await agent.put(passed(1, 80_000), key=None, partition=1)

    ((key, value, _),) = log.topic(totals)
    total = orjson.loads(value)
    assert key == b"clicks/tumbling/0" and total["pageviews"] == {"/a": 5}
    assert total["top_pages"] == [{"name": "/a", "count": 5}]
    # only the streams' progress and the funnel awaiting the orders stream are kept
    assert sorted(k for k in table.data.data) == [
        b"M|1|clicks",
        b"T|1|00000000000000000000|funnel|tumbling|",
    ]
