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
