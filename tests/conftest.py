"""Shared fixtures: throwaway Kafka and Redis on free loopback ports, removed afterwards.

The Kafka jars are fetched once into the one jar cache (var/kafka/jars, git-ignored) and reused.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from clickstream.local.kafka import LocalKafka, jar_cache
from clickstream.local.process import free_port
from clickstream.local.redis import LocalRedis

# Tests control the environment: nothing from the developer's shell leaks into a test.
for name in list(os.environ):
    if name.startswith("CLICKSTREAM_"):
        del os.environ[name]


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    broker = LocalKafka(tmp_path_factory.mktemp("kafka"), free_port(), jars=jar_cache())
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    server = LocalRedis(tmp_path_factory.mktemp("redis"), free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def app_id() -> str:
    """A fresh app id (and so fresh topics, changelogs and Redis keys) per test."""
    return f"t{uuid.uuid4().hex[:10]}"


from tests.rig import pipeline_env, settings, start_worker  # noqa: E402, F401  (fixtures)
