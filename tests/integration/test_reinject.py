"""`clickstream dead-letters reinject` against the session's Kafka: dead letters written as the
workers write them, their originals sent to `<app>-retry` as requests (each once, a cut one
read from its input topic), nothing to an input topic; its refusals in one line."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaProducer

from clickstream.kafka_admin import ensure_topics
from clickstream.local.kafka import LocalKafka
from clickstream.settings import Settings, load
from engine.processor import InputRecord
from streams.dead_letters import DEAD_LETTER_BYTES, dead_letter
from streams.retries import Request, copy_headers, request_headers
from tests.rig import clickstream, read_to_end

pytestmark = pytest.mark.integration

T1 = 1_767_225_600_000  # the originals' record timestamps
BIG = b'{"padding": "' + b"x" * DEAD_LETTER_BYTES + b'"}'  # cut in its letter


def reinject_env(kafka: LocalKafka, app_id: str) -> dict[str, str]:
    return {
        "CLICKSTREAM_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "CLICKSTREAM_APP_ID": app_id,
        "CLICKSTREAM_CLICKS_TOPIC": f"{app_id}-clicks",
        "CLICKSTREAM_ORDERS_TOPIC": f"{app_id}-orders",
        "CLICKSTREAM_PARTITIONS": "2",
    }


def create(s: Settings, *names: str) -> None:
    specs = [getattr(s.topics, name) for name in names]
    if specs:
        asyncio.run(ensure_topics(s.bootstrap, specs, replication=1))


def produce(
    bootstrap: str, topic: str, records: list[tuple[int, bytes | None, bytes, int]]
) -> list[int]:
    """(partition, key, value, timestamp) into `topic`; their offsets."""

    async def send() -> list[int]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=2 << 20)
        await producer.start()
        try:
            return [
                (await producer.send_and_wait(
                    topic, value, key=key, partition=partition, timestamp_ms=at
                )).offset
                for partition, key, value, at in records
            ]  # fmt: skip
        finally:
            await producer.stop()

    return asyncio.run(send())


def write_letters(s: Settings, letters: list[tuple[InputRecord, str]], drop: str = "") -> None:
    """The dead letters of (record, reason) as a worker writes them (`drop`: a header the
    letters of before it lack)."""

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=s.bootstrap)
        await producer.start()
        try:
            for record, reason in letters:
                key, value, headers = dead_letter(record, reason, "detail")
                kept = [(name, raw) for name, raw in headers if name != drop]
                await producer.send_and_wait(
                    s.topics.dead_letters.name, value, key=key, partition=0, headers=kept
                )
        finally:
            await producer.stop()

    asyncio.run(send())


def requests_in(s: Settings) -> list[tuple[int, bytes | None, bytes, list[tuple[str, bytes]]]]:
    records = read_to_end(s.bootstrap, s.topics.retry.name)
    return sorted((r.partition, r.key, r.value, list(r.headers)) for r in records)


def test_reinject_sends_each_original_once_to_the_retry_topic_and_never_to_an_input(
    kafka: LocalKafka, app_id: str
) -> None:
    env = reinject_env(kafka, app_id)
    s = load(env, dotenv=None)
    clicks, orders = s.topics.clicks.name, s.topics.orders.name
    create(s, "clicks", "orders", "dead_letters", "retry")
    legacy_at, big_at = produce(s.bootstrap, clicks, [
        (1, b"u-2", b'{"legacy": 1}', T1 + 2),
        (1, b"u-3", BIG, T1 + 3),
    ])  # fmt: skip
    original = Request(clicks, 0, 5, T1 + 1)
    now = round(time.time() * 1000)
    write_letters(s, [
        (InputRecord(clicks, 0, 5, T1 + 1, b"u-1", b"{oops"), "malformed_json"),
        (InputRecord(clicks, 0, 5, T1 + 1, b"u-1", b"{oops"), "malformed_json"),  # repeated
        (InputRecord(s.topics.clicks_ticks.name, 0, 3, now, b"u-1", b"{oops",
                     copy_headers(original, 2, 0, app_id)), "malformed_json"),  # its copy's
        (InputRecord(s.topics.orders_ticks.name, 1, 0, now, None, b"tick"), "malformed_json"),
        (InputRecord(clicks, 1, big_at, T1 + 3, b"u-3", BIG), "processing_error"),
        (InputRecord(clicks, 0, 99, T1 + 4, b"u-4", BIG), "processing_error"),  # gone
        (InputRecord(orders, 1, 4, T1 + 5, b"u-5", b'{"version": 99}'), "unknown_schema_version"),
    ])  # fmt: skip
    write_letters(
        s,
        [(InputRecord(clicks, 1, legacy_at, now, b"u-2", b'{"legacy": 1}'), "malformed_json")],
        drop="source_timestamp",
    )

    dry = clickstream(env, "dead-letters", "reinject", "--dry-run", timeout=90)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        f"would re-inject 4 originals of 8 dead letters into {app_id}-retry (dry run: nothing "
        f"sent)",
        "       2  malformed_json",
        "       1  processing_error",
        "       1  unknown_schema_version",
        "skipped: 1 not re-injectable (not from an input topic), 1 original gone (no longer in "
        "its input topic)",
    ]
    assert requests_in(s) == []

    malformed = clickstream(env, "dead-letters", "reinject", "--reason", "malformed_json")
    cut = clickstream(env, "dead-letters", "reinject", "--reason", "processing_error",
                      "--source", clicks)  # fmt: skip

    assert malformed.returncode == 0, malformed.stderr
    assert malformed.stdout.splitlines()[0] == (
        f"re-injected 2 originals of 5 dead letters into {app_id}-retry"
    )
    assert "skipped: 1 not re-injectable" in malformed.stdout
    assert cut.returncode == 0, cut.stderr
    assert "1 original gone" in cut.stdout
    assert requests_in(s) == sorted([
        (0, b"u-1", b"{oops", request_headers(original, "malformed_json")),
        (1, b"u-2", b'{"legacy": 1}',
         request_headers(Request(clicks, 1, legacy_at, T1 + 2), "malformed_json")),
        (1, b"u-3", BIG, request_headers(Request(clicks, 1, big_at, T1 + 3), "processing_error")),
    ])  # fmt: skip
    assert len(read_to_end(s.bootstrap, clicks)) == 2
    assert read_to_end(s.bootstrap, orders) == []


@pytest.mark.parametrize(
    ("topics", "args", "extra", "says"),
    [
        ((), (), {"CLICKSTREAM_CLOCK_APP_ID": "live"}, "re-inject into that app instead "
         "(CLICKSTREAM_APP_ID=live"),
        ((), (), {}, "topic {app}-dead-letters does not exist"),
        (("dead_letters",), (), {}, "topic {app}-retry does not exist at"),
        (("dead_letters", "retry"), ("--since", "yesterday"), {},
         "--since 'yesterday' is not an ISO time"),
    ],
)  # fmt: skip
def test_reinject_refuses_in_one_line(
    kafka: LocalKafka,
    app_id: str,
    topics: tuple[str, ...],
    args: tuple[str, ...],
    extra: dict[str, str],
    says: str,
) -> None:
    env = {**reinject_env(kafka, app_id), **extra}
    create(load(env, dotenv=None), *topics)

    result = clickstream(env, "dead-letters", "reinject", *args, timeout=90)

    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert says.format(app=app_id) in result.stderr
    assert result.stdout == ""


def test_retry_topic_missing_says_to_start_a_worker(kafka: LocalKafka, app_id: str) -> None:
    env = reinject_env(kafka, app_id)
    create(load(env, dotenv=None), "dead_letters")

    result = clickstream(env, "dead-letters", "reinject", "--dry-run", timeout=90)

    assert result.returncode == 2 and "start a worker first: it creates it" in result.stderr


def test_listing_options_before_reinject_are_refused_not_ignored(
    kafka: LocalKafka, app_id: str
) -> None:
    env = reinject_env(kafka, app_id)

    result = clickstream(env, "dead-letters", "--reason", "malformed_json", "reinject")

    assert result.returncode == 2
    assert "give --reason after 'reinject'" in result.stderr
