"""Bad settings stop a command with one line naming the problem and the fix, no traceback."""

from __future__ import annotations

import socket
import subprocess

import pytest

from clickstream.local.process import free_port
from tests.rig import clickstream


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return clickstream(env, *args, timeout=60)


def assert_one_line(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0]


@pytest.mark.parametrize("command", [("worker",), ("generate", "--fast", "--count", "10")])
def test_unreachable_broker_is_one_line(command, tmp_path):
    closed = f"127.0.0.1:{free_port()}"
    result = run(*command, CLICKSTREAM_KAFKA_BOOTSTRAP=closed, CLICKSTREAM_VAR_DIR=str(tmp_path))
    assert_one_line(result, closed, "CLICKSTREAM_KAFKA_BOOTSTRAP")


def test_bad_value_is_one_line_naming_the_variable():
    result = run("worker", CLICKSTREAM_PARTITIONS="lots")
    assert_one_line(result, "CLICKSTREAM_PARTITIONS", "lots")


@pytest.mark.parametrize(
    ("command", "variable"),
    [(("worker",), "CLICKSTREAM_WORKER_PORT"), (("dashboard",), "CLICKSTREAM_DASHBOARD_PORT")],
)
def test_port_in_use_is_one_line(command, variable, tmp_path, redis_server):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = str(holder.getsockname()[1])
        env = {
            variable: port,
            "CLICKSTREAM_VAR_DIR": str(tmp_path),
            "CLICKSTREAM_REDIS_URL": redis_server.url,
        }
        result = run(*command, **env)
    assert_one_line(result, variable, port)


def test_a_policy_file_that_cannot_be_used_is_one_line_naming_it(tmp_path):
    broken = tmp_path / "p.toml"
    broken.write_text('version = 2\nbias = -1.0\nthreshold = 0.5\nsmall_order_eur_cents = 1\n'
                      '[rates]\nEUR = 1.0\n[[signals]]\nfeature = "shoe_size"\nat_least = 1\n'
                      'weight = 1.0\nreason = "x"\n')  # fmt: skip
    result = run("fraud", "policy", "publish", str(broken))
    assert_one_line(result, "p.toml", "unknown feature 'shoe_size'")
    result = run("worker", CLICKSTREAM_FRAUD_POLICY=str(tmp_path / "missing.toml"))
    assert_one_line(result, "CLICKSTREAM_FRAUD_POLICY", "missing.toml")


def test_a_version_effective_too_soon_and_a_bad_fraud_switch_are_one_line(tmp_path):
    result = run("fraud", "policy", "publish", "fraud/policies/default.toml", "--effective",
                 "2020-01-01T00:00:00Z")  # fmt: skip
    assert_one_line(result, "--effective", "too soon")
    result = run("fraud", "policy", "publish", "fraud/policies/default.toml", "--effective", "x")
    assert_one_line(result, "--effective", "ISO time")
    result = run("worker", CLICKSTREAM_FRAUD="maybe")
    assert_one_line(result, "CLICKSTREAM_FRAUD", "maybe")
