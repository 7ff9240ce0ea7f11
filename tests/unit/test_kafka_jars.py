"""Every local Kafka start uses the one jar cache, whatever CLICKSTREAM_VAR_DIR says; its
storage is formatted under a cluster id the storage tool reads as one."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import clickstream.local.kafka
from clickstream.cli import cli
from clickstream.local.kafka import LocalKafka, fetch_jars, jar_cache, new_cluster_id
from clickstream.local.process import LocalServiceError

ROOT = Path(__file__).resolve().parents[2]


def test_in_a_checkout_the_cache_is_its_var_kafka_jars() -> None:
    assert jar_cache() == ROOT / "var" / "kafka" / "jars"


def test_an_installed_package_caches_jars_in_the_users_cache_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(clickstream.local.kafka, "CHECKOUT", tmp_path / "site-packages")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    assert jar_cache() == tmp_path / "home" / ".cache" / "clickstream" / "kafka-jars"


def test_a_kafka_home_anywhere_starts_from_the_shared_cache(tmp_path: Path) -> None:
    assert LocalKafka(tmp_path / "elsewhere" / "kafka", 9092).jars == jar_cache()


def test_kafka_start_with_another_var_dir_fetches_into_the_shared_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fetched: list[Path] = []

    def record(jars: Path) -> None:
        fetched.append(jars)
        raise LocalServiceError("stopped before java")  # the test needs no broker

    monkeypatch.setattr(clickstream.local.kafka, "fetch_jars", record)
    monkeypatch.setenv("CLICKSTREAM_VAR_DIR", str(tmp_path / "other-var"))

    result = CliRunner().invoke(cli, ["kafka", "start"])

    assert (result.exit_code, fetched) == (2, [jar_cache()]), result.output


def test_a_complete_cache_runs_no_maven(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".complete").write_text("ok\n")
    monkeypatch.setattr(clickstream.local.kafka.shutil, "which", pytest.fail)
    monkeypatch.setattr(clickstream.local.kafka.subprocess, "run", pytest.fail)

    fetch_jars(tmp_path)


def test_bootstrap_fetches_into_the_same_cache() -> None:
    assert "fetch_jars(jar_cache())" in (ROOT / "scripts" / "bootstrap.sh").read_text()


def test_a_cluster_id_never_starts_with_a_dash() -> None:
    # a leading "-" made `StorageTool format -t <id>` fail one start in 64 (a flaky CI test)
    ids = [new_cluster_id() for _ in range(2_000)]
    assert not any(i.startswith("-") for i in ids) and {len(i) for i in ids} == {22}
