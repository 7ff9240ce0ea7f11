"""docker-compose.yml is checked here (no Docker engine runs on our machines): it parses, runs
the services the product needs, and speaks only the settings and commands that exist."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import yaml

from clickstream.cli import cli
from clickstream.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
OURS = ("worker", "generator", "dashboard")


def known_commands() -> set[str]:
    from generator.command import generate

    return {*cli.commands, generate.name}


def test_compose_runs_kafka_redis_worker_generator_and_dashboard():
    assert {"kafka", "redis", *OURS} <= SERVICES.keys()
    assert re.fullmatch(r"apache/kafka:4\.\d+\.\d+", SERVICES["kafka"]["image"])
    assert "broker,controller" in SERVICES["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]


def test_every_variable_is_a_setting_and_services_point_at_compose_kafka_and_redis():
    variables = {f.metadata["env"] for f in fields(Settings)}
    for name in OURS:
        env = SERVICES[name]["environment"]
        assert set(env) <= variables, f"{name}: unknown {set(env) - variables}"
        assert env["CLICKSTREAM_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert env["CLICKSTREAM_REDIS_URL"].startswith("redis://redis:")


def test_service_commands_are_cli_commands():
    for name in OURS:
        assert SERVICES[name]["command"][0] in known_commands()


def test_published_ports_bind_loopback_only():
    for service in SERVICES.values():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), port


def test_dockerfile_installs_every_package_of_the_project():
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in (
        "clickstream",
        "streams",
        "agents",
        "tables",
        "serving",
        "dashboard",
        "generator",
    ):
        assert f"COPY {package} {package}" in dockerfile
