"""produce() and `generate` against fake Kafka clients: what is sent, where, when, and recorded."""

from __future__ import annotations

import asyncio
import io
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from click.testing import CliRunner
from tqdm import tqdm

import clickstream.kafka_admin
import generator.command
import generator.produce
from clickstream.settings import Settings
from generator.command import generate
from generator.produce import (
    ProduceError,
    ProduceReport,
    ProgressLines,
    partition_for,
    produce,
    progress_meter,
    read_jsonl,
)
from generator.simulate import GeneratorConfig, simulate

PARTITIONS = 4


@dataclass
class Sent:
    topic: str
    value: bytes
    key: bytes
    partition: int
    timestamp_ms: int
    wall_clock_ms: float


@dataclass
class FakeKafka:
    """What a broker would have seen: existing topics, topics created, records sent."""

    topics: set[str] = field(default_factory=set)
    created: list[tuple[str, int, int]] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)


def install_fake_kafka(monkeypatch: pytest.MonkeyPatch, kafka: FakeKafka) -> None:
    class FakeAdmin:
        def __init__(self, **_: Any) -> None:
            pass

        async def start(self) -> None:
            pass

        async def close(self) -> None:
            pass

        async def list_topics(self) -> list[str]:
            return sorted(kafka.topics)

        async def create_topics(self, new_topics: list[Any]) -> Any:
            for topic in new_topics:
                kafka.created.append((topic.name, topic.num_partitions, topic.replication_factor))
                kafka.topics.add(topic.name)
            return type("Response", (), {"topic_errors": [(t.name, 0, None) for t in new_topics]})

    class FakeProducer:
        def __init__(self, **options: Any) -> None:
            assert options["enable_idempotence"] is True

        async def start(self) -> None:
            pass

        async def stop(self) -> None:
            pass

        async def partitions_for(self, topic: str) -> set[int]:
            return set(range(PARTITIONS))

        async def send(self, topic: str, value: bytes, **options: Any) -> asyncio.Future[None]:
            kafka.sent.append(
                Sent(
                    topic,
                    value,
                    options["key"],
                    options["partition"],
                    options["timestamp_ms"],
                    time.time() * 1000,
                )
            )
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done

    monkeypatch.setattr(clickstream.kafka_admin, "AIOKafkaAdminClient", FakeAdmin)
    monkeypatch.setattr(generator.produce, "AIOKafkaProducer", FakeProducer)


def make_settings(**overrides: Any) -> Settings:
    return Settings(**{"partitions": PARTITIONS, **overrides})


def make_config(**overrides: Any) -> GeneratorConfig:
    return GeneratorConfig(**{"seed": 3, "count": 2_000, "malformed_rate": 0.05, **overrides})


@pytest.fixture
def kafka(monkeypatch: pytest.MonkeyPatch) -> FakeKafka:
    fake = FakeKafka()
    install_fake_kafka(monkeypatch, fake)
    return fake


def test_partition_is_kafkas_murmur2_of_the_key() -> None:
    # murmur2 values from Kafka's own UtilsTest (Java ints)
    for key, java_murmur2 in ((b"21", -973932308), (b"foobar", -790332482)):
        assert partition_for(key, list(range(7))) == (java_murmur2 & 0x7FFFFFFF) % 7


async def test_produce_sends_every_emission_in_order_with_its_key_partition_and_time(
    kafka: FakeKafka,
) -> None:
    config = make_config()
    await produce(make_settings(), config, None, pace=False, progress=False)
    expected = list(simulate(config))
    assert [(s.value, s.key, s.timestamp_ms) for s in kafka.sent] == [
        (e.value, e.key, e.emit_at_ms) for e in expected
    ]
    assert [s.topic for s in kafka.sent] == [e.stream for e in expected]
    assert all(s.partition == partition_for(s.key, list(range(PARTITIONS))) for s in kafka.sent)


async def test_jsonl_records_exactly_what_was_sent_with_its_label(
    kafka: FakeKafka, tmp_path: Path
) -> None:
    config, path = make_config(), tmp_path / "sent.jsonl"
    await produce(make_settings(), config, path, pace=False, progress=False)
    lines = list(read_jsonl(path))
    assert [
        (line["topic"], line["partition"], line["key"].encode(), line["value"].encode())
        for line in lines
    ] == [(s.topic, s.partition, s.key, s.value) for s in kafka.sent]
    assert [line["timestamp_ms"] for line in lines] == [s.timestamp_ms for s in kafka.sent]
    assert [line["label"] for line in lines] == [e.label for e in simulate(config)]


async def test_missing_input_topics_are_created_with_the_configured_partitions(
    kafka: FakeKafka,
) -> None:
    kafka.topics.add("clicks")
    await produce(make_settings(), make_config(count=10), None, pace=False, progress=False)
    assert kafka.created == [("orders", PARTITIONS, 1)]


async def test_report_counts_records_per_stream_fault_and_scenario(kafka: FakeKafka) -> None:
    config = make_config()
    report = await produce(make_settings(), config, None, pace=False, progress=False)
    emissions = list(simulate(config))
    assert report.total == len(emissions) == len(kafka.sent)
    assert report.by_stream["orders"] == sum(1 for e in emissions if e.stream == "orders")
    assert report.by_fault["malformed"] == sum(
        1 for e in emissions if e.label["fault"] == "malformed"
    )
    assert "sent 2000 records" in report.summary()


async def test_fast_mode_refuses_timestamps_kafka_would_reject_as_future(kafka: FakeKafka) -> None:
    far_future_ms = 4_000_000_000_000  # 2096
    with pytest.raises(ProduceError, match="over an hour ahead"):
        await produce(
            make_settings(), make_config(start_ms=far_future_ms), None, pace=False, progress=False
        )
    assert kafka.sent == []


async def test_paced_records_are_sent_no_earlier_than_their_timestamp(kafka: FakeKafka) -> None:
    now_ms = int(time.time() * 1000)
    config = make_config(count=None, start_ms=now_ms - 5_000, duration_s=5.5)
    await produce(make_settings(), config, None, pace=True, progress=False)
    assert any(s.timestamp_ms > now_ms for s in kafka.sent)
    assert all(s.wall_clock_ms >= s.timestamp_ms for s in kafka.sent)


def test_empty_report_summarises_as_nothing_sent() -> None:
    assert ProduceReport().summary().startswith("sent 0 records")


def run_generate(monkeypatch: pytest.MonkeyPatch, *args: str, **env: str) -> Any:
    for name in ("CLICKSTREAM_KAFKA_BOOTSTRAP", "CLICKSTREAM_PARTITIONS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return CliRunner().invoke(generate, list(args))


def test_generate_with_a_bad_setting_prints_one_line_and_exits_2(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result = run_generate(monkeypatch, "--fast", "--count", "5", CLICKSTREAM_PARTITIONS="many")
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "CLICKSTREAM_PARTITIONS" in result.output


def test_generate_without_kafka_prints_one_line_naming_the_fix_and_exits_2(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def unreachable(*_: Any, **__: Any) -> ProduceReport:
        raise KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 1)]")

    monkeypatch.setattr(generator.command, "produce", unreachable)
    result = run_generate(monkeypatch, "--fast", "--count", "5")
    assert result.exit_code == 2
    assert result.output.count("\n") == 1
    assert "cannot reach Kafka" in result.output and "CLICKSTREAM_KAFKA_BOOTSTRAP" in result.output


def test_generate_fast_needs_a_count_or_duration(monkeypatch: pytest.MonkeyPatch) -> None:
    result = run_generate(monkeypatch, "--fast")
    assert result.exit_code == 2 and "--count" in result.output


def test_generate_fast_from_now_ends_about_now(monkeypatch: pytest.MonkeyPatch) -> None:
    configs: list[GeneratorConfig] = []

    async def record(_: Settings, config: GeneratorConfig, *__: Any) -> ProduceReport:
        configs.append(config)
        return ProduceReport()

    monkeypatch.setattr(generator.command, "produce", record)
    monkeypatch.setattr(generator.command.time, "time", lambda: 1_800_000_000.0)
    result = run_generate(monkeypatch, "--fast", "--duration", "600", "--no-progress")
    assert result.exit_code == 0, result.output
    assert configs[0].start_ms == 1_800_000_000_000 - 600_000
    assert configs[0].end_ms == 1_800_000_000_000


async def test_progress_into_a_file_draws_no_bar_frames(
    kafka: FakeKafka, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "generate.log"
    with log.open("w") as stderr:
        monkeypatch.setattr(sys, "stderr", stderr)
        await produce(make_settings(), make_config(), None, pace=False, progress=True)

    assert len(kafka.sent) == 2_000
    assert log.read_text() == ""  # a quick run: not even one progress line


def test_generate_into_a_pipe_prints_no_bar_and_one_summary_line(
    kafka: FakeKafka, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run_generate(monkeypatch, "--fast", "--count", "2000")

    assert result.exit_code == 0, result.output
    assert "\r" not in result.output
    assert result.output.count("\n") == 1 and result.output.startswith("generate: sent 2000")


def test_progress_lines_come_once_per_interval_and_never_sooner() -> None:
    now = [0.0]
    stream = io.StringIO()
    lines = ProgressLines(total=100, stream=stream, every_s=30.0, clock=lambda: now[0])

    for second in range(100):  # one record per simulated second
        now[0] = float(second)
        lines.update()

    assert stream.getvalue().splitlines() == [
        "generate: sent 31 of 100 records",
        "generate: sent 61 of 100 records",
        "generate: sent 91 of 100 records",
    ]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_is_drawn_only_on_a_terminal() -> None:
    bar = progress_meter(10, True, Terminal())
    bar.close()
    assert isinstance(bar, tqdm)
    assert isinstance(progress_meter(10, True, io.StringIO()), ProgressLines)
    hidden = progress_meter(10, False, Terminal())
    hidden.update(10)
    assert isinstance(hidden, ProgressLines) and hidden.stream is None
