"""What the page-view contenders counted, read back once a run has stopped, as CountRows
(bench.page_view_oracle checks them); and the clicks topic itself, for the oracle.

  clickstream*      <app>-window-results: the clicks tumbling results, `pageviews` per source
                    partition (a result repeated after a crash carries the same counts)
  quix, quix-eos,   <run id>-pageviews: {"partition", "start", "page", "views"} per closed window
  bytewax           and page
  faust-naive       <app>-views-changelog: key [url, [start s, end s]], value the views so far;
                    a changelog partition is the source partition; the last value per key
  faust-naive-full  <app>-page_views-changelog: key "<minute s>|<page>", value the views so far
  aiokafka-loop     the JSON file it writes when stopped: [[partition, start ms, url, views], ...]

Topics are read committed: records of a transaction that was aborted are no one's output.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeAlias

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.page_view_oracle import CountRow, SourceRecord
from streams.eventtime import parse_timestamp

Record: TypeAlias = "ConsumerRecord[bytes, bytes]"


async def _read(bootstrap: str, topic: str) -> list[Record]:
    """Every committed record of `topic` up to its end, in offset order per partition; none when
    there is no such topic (asking for it creates nothing)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed"
    )
    await admin.start()
    await consumer.start()
    records: list[Record] = []
    try:
        if topic not in await admin.list_topics():
            return records
        (described,) = await admin.describe_topics([topic])
        parts = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
        consumer.assign(parts)
        for tp, offset in (await consumer.beginning_offsets(parts)).items():
            consumer.seek(tp, offset)
        ends = await consumer.end_offsets(parts)  # read committed: the last stable offsets
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            batch = await consumer.getmany(timeout_ms=500)
            records.extend(r for part in batch.values() for r in part)
    finally:
        await consumer.stop()
        await admin.close()
    return records


def read_topic(bootstrap: str, topic: str) -> list[Record]:
    return asyncio.run(_read(bootstrap, topic))


def source_records(bootstrap: str, topic: str) -> list[SourceRecord]:
    """The clicks topic as the contenders read it."""
    return [
        SourceRecord(r.partition, r.timestamp, r.value or b"") for r in read_topic(bootstrap, topic)
    ]


def window_result_rows(values: Iterable[bytes]) -> Iterator[CountRow]:
    """Our worker's window results -> the page views of each clicks tumbling window."""
    for value in values:
        result = orjson.loads(value)
        if result.get("stream") != "clicks" or result.get("kind") != "tumbling":
            continue  # progress records, orders and hopping windows
        start = parse_timestamp(result["start"])
        for page, views in result.get("pageviews", {}).items():
            yield CountRow(result["partition"], start, page, views)


def pageviews_topic_rows(values: Iterable[bytes]) -> Iterator[CountRow]:
    for value in values:
        row = orjson.loads(value)
        yield CountRow(row["partition"], row["start"], row["page"], row["views"])


def faust_window_rows(records: Iterable[tuple[int, bytes | None, bytes | None]]) -> list[CountRow]:
    """(partition, key, value) of a windowed Faust table's changelog, in offset order ->
    the last count per key (a tombstone deletes it)."""
    last: dict[tuple[int, bytes], CountRow] = {}
    for partition, key, value in records:
        if key is None:
            continue
        if value is None:
            last.pop((partition, key), None)
            continue
        url, (start_s, _end_s) = orjson.loads(key)
        last[partition, key] = CountRow(partition, round(start_s * 1000), url, orjson.loads(value))
    return list(last.values())


def faust_minute_rows(records: Iterable[tuple[int, bytes | None, bytes | None]]) -> list[CountRow]:
    """The same for the full-set peer's plain table keyed "<minute s>|<page>"."""
    last: dict[tuple[int, bytes], CountRow] = {}
    for partition, key, value in records:
        if key is None:
            continue
        if value is None:
            last.pop((partition, key), None)
            continue
        minute, page = orjson.loads(key).split("|", 1)
        last[partition, key] = CountRow(partition, int(minute) * 1000, page, orjson.loads(value))
    return list(last.values())


def loop_rows(text: bytes) -> Iterator[CountRow]:
    for partition, start_ms, url, views in orjson.loads(text):
        yield CountRow(partition, start_ms, url, views)


def _values(records: Iterable[Record]) -> list[bytes]:
    return [r.value for r in records if r.value is not None]


def _keyed(records: Iterable[Record]) -> list[tuple[int, bytes | None, bytes | None]]:
    return [(r.partition, r.key, r.value) for r in records]


def clickstream_counts(bootstrap: str, app_id: str) -> list[CountRow]:
    return list(window_result_rows(_values(read_topic(bootstrap, f"{app_id}-window-results"))))


def pageviews_topic_counts(bootstrap: str, group: str) -> list[CountRow]:
    return list(pageviews_topic_rows(_values(read_topic(bootstrap, f"{group}-pageviews"))))


def faust_naive_counts(bootstrap: str, app_id: str, metrics: str) -> list[CountRow]:
    if metrics == "pageviews":
        return faust_window_rows(_keyed(read_topic(bootstrap, f"{app_id}-views-changelog")))
    return faust_minute_rows(_keyed(read_topic(bootstrap, f"{app_id}-page_views-changelog")))


def loop_counts(path: Path) -> list[CountRow]:
    return list(loop_rows(path.read_bytes()))
