"""Fraud policy records: the versions of the scoring policy (fraud.policy), in the control
topic `<app>-fraud-policy`, written by `clickstream fraud policy publish`.

  key: "v<version>"
  value: {"version": v, "effective_ms": T, "policy": {the policy's parsed form}, "by": app id}

Every partition holds every version (the command writes one copy to each), so each partition's
readers see them all. A version's content never changes. An order is scored under the newest
version released before it in the fraud topic's release order (agents.fraud): by event time,
the orders at or after T, once on time. Before any, the policy CLICKSTREAM_FRAUD_POLICY names.
"""

from __future__ import annotations

from typing import NamedTuple

import orjson

from fraud.features import FEATURES
from fraud.policy import Policy, PolicyError, policy_body, read_policy


class PolicyRecord(NamedTuple):
    policy: Policy
    effective_ms: int


def policy_key(version: int) -> bytes:
    return b"v%d" % version


def policy_record_value(policy: Policy, effective_ms: int, app_id: str) -> bytes:
    body = {
        "version": policy.version,
        "effective_ms": effective_ms,
        "policy": policy_body(policy),
        "by": app_id,
    }
    return orjson.dumps(body)


def read_policy_record(value: bytes | None) -> PolicyRecord | None:
    """The version and when it takes effect, or None when the value is not a usable one."""
    try:
        body = orjson.loads(value or b"")
        version, effective_ms = body["version"], body["effective_ms"]
        policy = read_policy(body["policy"], FEATURES, where=f"policy record v{version}")
    except (orjson.JSONDecodeError, KeyError, TypeError, PolicyError):
        return None
    if type(effective_ms) is not int or effective_ms < 0 or policy.version != version:
        return None
    return PolicyRecord(policy, effective_ms)
