"""`clickstream up`: Kafka, Redis, worker, generator and dashboard together; Ctrl-C stops all.

Local Kafka/Redis are started only when CLICKSTREAM_KAFKA_BOOTSTRAP / CLICKSTREAM_REDIS_URL are
unset. Children run in their own sessions so shutdown goes in order: generator, worker,
dashboard, then the local servers.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from clickstream.cli import load_settings, local_kafka, local_redis, one_line_errors
from clickstream.local.process import port_open, stop_with_parent
from clickstream.settings import SettingsError


def _spawn(logs: Path, name: str, *args: str) -> subprocess.Popen[bytes]:
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / f"{name}.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "clickstream", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=stop_with_parent,  # `up` killed: its worker and dashboard stop too
        )


def _stop(child: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGINT)
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


class _Stop(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C."""


def _stop_on_signals() -> None:
    """Ctrl-C and SIGTERM both stop everything, even if SIGINT was ignored when we started."""

    def stop(_signum: int, _frame: object) -> None:
        raise _Stop

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, stop)


@click.command()
@click.option("--rate", default=100.0, show_default=True, help="generated events per second")
@click.option("--seed", default=None, type=int, help="generator seed (default: new each run)")
@one_line_errors
def up(rate: float, seed: int | None) -> None:
    """Run everything locally and print the dashboard address; Ctrl-C stops all of it."""
    s = load_settings()
    _stop_on_signals()
    for name, port in (
        ("CLICKSTREAM_DASHBOARD_PORT", s.dashboard_port),
        ("CLICKSTREAM_WORKER_PORT", s.worker_port),
    ):
        if port_open(port):
            raise SettingsError(
                f"{name}={port} is already in use; stop what holds it or set {name}"
            )
    kafka = local_kafka(s) if s.uses_local_kafka else None
    redis = local_redis(s) if s.uses_local_redis else None
    children: dict[str, subprocess.Popen[bytes]] = {}
    interrupted = False
    try:
        if kafka is not None:
            if not kafka.data.exists():  # a fresh Kafka: old worker state would not match it
                for stale in s.var_dir.glob("worker-*"):
                    shutil.rmtree(stale)
            click.echo("starting Kafka (first run fetches its jars from Maven Central)...")
            kafka.start()
        if redis is not None:
            redis.start()
        logs = s.var_dir / "logs"
        children["worker"] = _spawn(logs, "worker", "worker")
        generate = ["generate", "--pace", "--rate", str(rate), "--no-progress"]
        seeded = ["--seed", str(seed if seed is not None else time.time_ns() % 2**31)]
        children["generate"] = _spawn(logs, "generate", *generate, *seeded)
        children["dashboard"] = _spawn(logs, "dashboard", "dashboard")
        click.secho(
            f"\n  Dashboard: http://{s.dashboard_host}:{s.dashboard_port}   (Ctrl-C stops all)",
            bold=True,
        )
        click.echo(f"  Logs: {logs}/{{worker,generate,dashboard}}.log\n")
        while all(child.poll() is None for child in children.values()):
            time.sleep(0.5)
        failed = next(name for name, child in children.items() if child.poll() is not None)
        click.echo(f"clickstream: `{failed}` exited; stopping everything", err=True)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            for child in children.values():
                _stop(child)
            click.echo("stopped worker, generator and dashboard")
            for server in (kafka, redis):
                if server is not None:
                    server.stop()
    if not interrupted:
        sys.exit(1)
