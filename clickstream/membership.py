"""A worker's static member id in its consumer group (Kafka's group.instance.id).

id = <worker name>-<web host>-<web port>-<subscription fingerprint>

A worker restarted under the same id within the session timeout gets its own partitions back at
once: the broker hands it the assignment it had, with no rebalance and no wait for the dead
member to time out. So the id must change whenever what that kept assignment was computed from
changes: the worker's web address (Faust's assignor asserts it in every assignment) and the
topics and partitions it subscribes (the broker keeps a static member's old assignment even if it
now subscribes more topics; measured on Kafka 4.1).
"""

from __future__ import annotations

import hashlib
import re
import socket
from collections.abc import Iterable

from clickstream.settings import Settings


def group_instance_id(settings: Settings, subscription: Iterable[str]) -> str:
    name = settings.worker_id or socket.gethostname()
    fingerprint = hashlib.sha1(
        "\n".join([*sorted(subscription), str(settings.partitions)]).encode()
    ).hexdigest()[:8]
    return _legal(f"{name}-{settings.worker_host}-{settings.worker_port}-{fingerprint}")


def _legal(text: str) -> str:
    """Kafka allows [a-zA-Z0-9._-], at most 249 characters (an IPv6 host has ':')."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)[:249]
