"""The README's main job, `clickstream up`: Kafka, Redis, worker, generator and dashboard come up
and the dashboard serves live numbers; Ctrl-C stops every process it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import orjson
import pytest

from clickstream.local.process import free_port, port_open
from tests.rig import wait_until

pytestmark = pytest.mark.integration


def page_view_rows(port: int) -> list:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/page-views", timeout=2) as r:
            return list(orjson.loads(r.read())["rows"])
    except OSError:
        return []


def test_up_serves_live_numbers_and_ctrl_c_stops_everything(tmp_path):
    ports = {name: free_port() for name in ("KAFKA", "REDIS", "WORKER", "DASHBOARD")}
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CLICKSTREAM_")},
        "CLICKSTREAM_VAR_DIR": str(tmp_path / "var"),
        "CLICKSTREAM_LOCAL_KAFKA_PORT": str(ports["KAFKA"]),
        "CLICKSTREAM_LOCAL_REDIS_PORT": str(ports["REDIS"]),
        "CLICKSTREAM_WORKER_PORT": str(ports["WORKER"]),
        "CLICKSTREAM_DASHBOARD_PORT": str(ports["DASHBOARD"]),
        "CLICKSTREAM_LOG_LEVEL": "warn",
    }
    up = subprocess.Popen(
        [sys.executable, "-m", "clickstream", "up", "--rate", "200"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(
            lambda: page_view_rows(ports["DASHBOARD"]),
            within=180,
            why="live page views on the dashboard API",
            alive=lambda: up.poll() is None,
        )
    finally:
        up.send_signal(signal.SIGINT)
        output = up.communicate(timeout=120)[0].decode()
    assert f"http://127.0.0.1:{ports['DASHBOARD']}" in output
    assert "stopped worker, generator and dashboard" in output
    deadline = time.monotonic() + 30
    while any(port_open(port) for port in ports.values()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not [name for name, port in ports.items() if port_open(port)], "a process is left"
    assert not list((tmp_path / "var").rglob("*.pid")), "a pid file is left"
