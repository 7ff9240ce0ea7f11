"""A worker's static member id: the same across its restarts, new when what its kept
assignment was computed from changes (web address, subscription), legal for Kafka."""

from __future__ import annotations

import re
import socket

from clickstream.membership import group_instance_id
from clickstream.settings import load

TOPICS = ["clicks", "orders", "click_windows"]


def member_id(topics: list[str] = TOPICS, **env: str) -> str:
    return group_instance_id(load(env, dotenv=None), topics)


def test_same_worker_same_subscription_same_id():
    assert member_id(CLICKSTREAM_WORKER_PORT="6067") == member_id(CLICKSTREAM_WORKER_PORT="6067")
    assert member_id(["orders", "click_windows", "clicks"]) == member_id()  # order is no change


def test_id_names_the_host_and_the_web_address_by_default():
    assert member_id().startswith(f"{socket.gethostname()}-127.0.0.1-6066-")
    assert member_id(CLICKSTREAM_WORKER_ID="w1").startswith("w1-127.0.0.1-6066-")


def test_another_web_address_or_subscription_is_another_member():
    ids = {
        member_id(),
        member_id(CLICKSTREAM_WORKER_PORT="6067"),
        member_id(CLICKSTREAM_WORKER_HOST="10.0.0.5"),
        member_id(CLICKSTREAM_PARTITIONS="8"),
        member_id([*TOPICS, "order_facts"]),
    }
    assert len(ids) == 5


def test_id_holds_only_what_kafka_allows():
    found = member_id(CLICKSTREAM_WORKER_HOST="::1")
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,249}", found)
