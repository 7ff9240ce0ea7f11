"""Rough edges a new user hits first: the real CLI against a real Kafka, and bootstrap's install."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from clickstream.kafka_admin import ensure_topics
from clickstream.local.kafka import LocalKafka
from streams.topics import TopicSpec
from tests.rig import ROOT

pytestmark = pytest.mark.integration

QUICK_SECONDS = 15.0  # far below aiokafka's 40 s metadata wait, which the old command hit


def run(*args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "clickstream", *args],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    return result, time.monotonic() - started


def dead_letter_topic(kafka: LocalKafka, app_id: str) -> str:
    topic = f"{app_id}-dead-letters"
    spec = TopicSpec(topic, "original key", "original bytes", partitions=2)
    asyncio.run(ensure_topics(kafka.bootstrap, [spec], replication=1))
    return topic


def test_dead_letters_of_a_missing_topic_is_one_line_naming_it_and_the_fix(
    kafka: LocalKafka, app_id: str
) -> None:
    result, seconds = run(
        "dead-letters", CLICKSTREAM_KAFKA_BOOTSTRAP=kafka.bootstrap, CLICKSTREAM_APP_ID=app_id
    )

    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"topic {app_id}-dead-letters does not exist" in result.stderr
    assert "CLICKSTREAM_APP_ID" in result.stderr and "start a worker" in result.stderr
    assert (result.stdout, seconds < QUICK_SECONDS) == ("", True)


def test_dead_letters_of_an_empty_topic_says_none_at_once(kafka: LocalKafka, app_id: str) -> None:
    topic = dead_letter_topic(kafka, app_id)

    result, seconds = run(
        "dead-letters", CLICKSTREAM_KAFKA_BOOTSTRAP=kafka.bootstrap, CLICKSTREAM_APP_ID=app_id
    )

    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", f"0 dead letters in {topic}\n")
    assert seconds < QUICK_SECONDS


def test_dead_letters_shows_the_newest_letters_of_every_partition(
    kafka: LocalKafka, app_id: str
) -> None:
    topic = dead_letter_topic(kafka, app_id)

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
        await producer.start()
        try:
            for partition, n in [(0, 1), (0, 2), (0, 3), (1, 1)]:
                headers = [
                    ("reason", b"malformed_json"),
                    ("id", f"clicks/{partition}/{n}".encode()),
                ]
                await producer.send_and_wait(topic, b"{oops", partition=partition, headers=headers)
        finally:
            await producer.stop()

    asyncio.run(send())

    result, _ = run(
        "dead-letters",
        "--last",
        "2",
        CLICKSTREAM_KAFKA_BOOTSTRAP=kafka.bootstrap,
        CLICKSTREAM_APP_ID=app_id,
    )

    assert result.returncode == 0, result.stderr
    assert result.stderr == f"3 dead letters in {topic}\n"
    shown = sorted(line.split()[1] for line in result.stdout.splitlines() if "malformed" in line)
    assert shown == ["clicks/0/2", "clicks/0/3", "clicks/1/1"]


def test_dead_letters_filter_by_reason_source_and_time_and_count_per_reason(
    kafka: LocalKafka, app_id: str
) -> None:
    topic = dead_letter_topic(kafka, app_id)
    letters = [
        ("malformed_json", "clicks/0/1", 1_000),
        ("malformed_json", "orders/1/1", 2_000),
        ("unknown_schema_version", "orders/0/4", 3_000),
    ]

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
        await producer.start()
        try:
            for reason, source, at in letters:
                headers = [("reason", reason.encode()), ("id", source.encode())]
                await producer.send_and_wait(
                    topic, b"{}", partition=0, headers=headers, timestamp_ms=1_767_225_600_000 + at
                )
        finally:
            await producer.stop()

    asyncio.run(send())
    env = {"CLICKSTREAM_KAFKA_BOOTSTRAP": kafka.bootstrap, "CLICKSTREAM_APP_ID": app_id}

    counts, _ = run("dead-letters", "--all", "--counts", **env)
    by_source, _ = run("dead-letters", "--all", "--source", "orders", **env)
    recent, _ = run("dead-letters", "--all", "--since", "2026-01-01T00:00:01.500Z", **env)
    one, _ = run("dead-letters", "--all", "--reason", "unknown_schema_version", **env)
    bad, _ = run("dead-letters", "--since", "yesterday", **env)

    assert counts.stdout.split() == ["2", "malformed_json", "1", "unknown_schema_version"]
    assert counts.stderr == f"3 dead letters in {topic}\n"
    assert [line.split()[1] for line in by_source.stdout.splitlines()[::2]] == [
        "orders/1/1", "orders/0/4",
    ]  # fmt: skip
    assert by_source.stderr == f"2 dead letters in {topic} (of 3 read)\n"
    assert recent.stderr == f"2 dead letters in {topic} (of 3 read)\n"
    assert one.stdout.split()[:2] == ["unknown_schema_version", "orders/0/4"]
    assert bad.returncode == 2 and "--since 'yesterday' is not an ISO time" in bad.stderr


def test_generate_into_a_log_file_writes_no_bar_only_its_summary(
    kafka: LocalKafka, app_id: str, tmp_path: Path
) -> None:
    log = tmp_path / "generate.log"
    env = {
        **os.environ,
        "CLICKSTREAM_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "CLICKSTREAM_CLICKS_TOPIC": f"{app_id}-clicks",
        "CLICKSTREAM_ORDERS_TOPIC": f"{app_id}-orders",
    }
    with log.open("w") as stderr:
        result = subprocess.run(
            [sys.executable, "-m", "clickstream", "generate", "--fast", "--count", "3000"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            timeout=90,
        )

    written = log.read_text()
    assert result.returncode == 0, written
    assert "\r" not in written and "%|" not in written
    assert written.count("\n") == 1 and written.startswith("generate: sent 3000 records"), written


TINY_PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "tiny"
version = "0"

[project.optional-dependencies]
dev = []

[tool.setuptools.packages.find]
include = ["tiny_a*", "tiny_b*"]
"""


def test_bootstrap_installs_the_project_without_the_setuptools_banner(tmp_path: Path) -> None:
    # bootstrap.sh's own pip lines (pip upgraded first: pip >= 25 shows backend warnings), run on
    # a project of two top-level packages like ours, in a fresh venv
    lines = [
        text.strip()
        for text in (ROOT / "scripts" / "bootstrap.sh").read_text().splitlines()
        if ".venv/bin/pip install" in text
    ]
    assert len(lines) == 2 and "--upgrade pip" in lines[0] and "-e" in lines[1]
    project = tmp_path / "tiny"
    for package in ("tiny_a", "tiny_b"):
        (project / package).mkdir(parents=True)
        (project / package / "__init__.py").write_text("")
    (project / "pyproject.toml").write_text(TINY_PYPROJECT)
    subprocess.run([sys.executable, "-m", "venv", ".venv"], cwd=project, check=True, timeout=120)

    result = subprocess.run(
        ["bash", "-c", " && ".join(lines)], cwd=project, capture_output=True, text=True, timeout=300
    )

    assert result.returncode == 0, result.stderr
    assert "Editable installation" not in result.stdout + result.stderr
    assert (result.stdout, result.stderr) == ("", "")
    imported = [str(project / ".venv" / "bin" / "python"), "-c", "import tiny_a, tiny_b"]
    assert subprocess.run(imported, cwd=tmp_path, timeout=60).returncode == 0


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("replay", "--app-id", "{app}"), "is the live version"),
        (
            ("replay", "--app-id", "{app}-v2", "--from", "yesterday"),
            "--from 'yesterday' is neither",
        ),
        (("replay", "--app-id", "{app}-v2", "--to", "soon"), "--to 'soon' is neither"),
        (("replay", "--app-id", "{app}-v2", "--to", "now", "--follow"), "exclude each other"),
        (("replay", "--app-id", "bad id"), "may hold only letters"),
        (("replay", "--app-id", "{app}-v2", "--workers", "0"), "--workers 0 must be 1 or more"),
        (("replay", "--app-id", "{app}-v2"), "input topic {app}-clicks does not exist"),
        (("diff", "{app}", "{app}-v2"), "no worker ever ran under that app id"),
        (("promote", "{app}-v2"), "is no version replayed beside {app}"),
        (("retire", "{app}", "--yes"), "the version the dashboard serves"),
        (("projection", "rebuild", "{app}-v2"), "no worker ever ran under that app id"),
        (("import", "/nonexistent/history.jsonl"), "cannot read /nonexistent/history.jsonl"),
        (("import", "x.csv", "--map", "user_id=c"), "--map and --set are for CSV files"),
        (("import", "x.csv", "--csv", "orders", "--map", "user_id"), "must be FIELD=VALUE"),
    ],
)
def test_versions_commands_refuse_misuse_in_one_line(
    kafka: LocalKafka, redis_server, app_id: str, args: tuple[str, ...], says: str
) -> None:
    result, _ = run(
        *(arg.format(app=app_id) for arg in args),
        CLICKSTREAM_KAFKA_BOOTSTRAP=kafka.bootstrap,
        CLICKSTREAM_REDIS_URL=redis_server.url,
        CLICKSTREAM_APP_ID=app_id,
        CLICKSTREAM_CLICKS_TOPIC=f"{app_id}-clicks",
        CLICKSTREAM_ORDERS_TOPIC=f"{app_id}-orders",
    )

    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert says.format(app=app_id) in result.stderr
