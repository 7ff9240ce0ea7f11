"""`clickstream` command line: Faust-style subcommands; every failure is one line, exit 2."""

from __future__ import annotations

import asyncio
import logging
import shutil
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from clickstream import settings as settings_module
from clickstream.kafka_admin import KafkaUnreachable
from clickstream.local.kafka import LocalKafka
from clickstream.local.process import LocalServiceError
from clickstream.local.redis import LocalRedis
from clickstream.settings import Settings, SettingsError

F = TypeVar("F", bound=Callable[..., Any])
EXPECTED = (SettingsError, LocalServiceError, KafkaUnreachable)


def one_line_errors(command: F) -> F:
    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except EXPECTED as exc:
            click.echo(f"clickstream: {exc}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def load_settings() -> Settings:
    try:
        return settings_module.load()
    except SettingsError as exc:
        click.echo(f"clickstream: {exc}", err=True)
        sys.exit(2)


def local_kafka(s: Settings) -> LocalKafka:
    return LocalKafka(s.var_dir / "kafka", s.local_kafka_port)


def local_redis(s: Settings) -> LocalRedis:
    return LocalRedis(s.var_dir / "redis", s.local_redis_port)


@click.group()
def cli() -> None:
    """Real-time clickstream and order analytics (Faust + Kafka + Redis + Dash)."""
    # Until a command configures logging, keep aiokafka's connection errors from printing
    # beside our one-line message (they still reach handlers configured later).
    logging.getLogger("aiokafka").addHandler(logging.NullHandler())


@cli.command("settings")
def show_settings() -> None:
    """Print every setting: variable, effective value, meaning."""
    for name, value, help_text in load_settings().describe():
        click.echo(f"{name}={value}\n    {help_text}")


@cli.command()
@one_line_errors
def worker() -> None:
    """Start a Faust worker (join the consumer group; run it N times to scale out)."""
    from clickstream.worker import run_worker

    run_worker(load_settings())


@cli.command()
@one_line_errors
def dashboard() -> None:
    """Serve the Dash dashboard and the JSON API."""
    from dashboard.app import StartupError, serve

    try:
        serve(load_settings())
    except StartupError as exc:
        raise LocalServiceError(str(exc)) from None


@cli.command("dead-letters")
@click.option("-n", "--last", default=20, show_default=True, help="per partition")
@one_line_errors
def dead_letters(last: int) -> None:
    """Show the newest dead letters: reason, source record, detail, payload preview."""
    from clickstream.dead_letters import NoDeadLetterTopic, read_dead_letters

    s = load_settings()
    try:
        letters = asyncio.run(read_dead_letters(s.bootstrap, s.topics.dead_letters.name, last))
    except NoDeadLetterTopic as exc:
        click.echo(f"clickstream: {exc}", err=True)
        sys.exit(2)
    for letter in letters:
        preview = letter.payload[:80].decode(errors="replace")
        click.echo(f"{letter.reason:<24} {letter.source:<28} {letter.detail}\n    {preview!r}")
    click.echo(f"{len(letters)} dead letters in {s.topics.dead_letters.name}", err=True)


@cli.group()
def fraud() -> None:
    """Fraud scoring: the policy's versions, its evaluation and fitting."""


@fraud.group()
def policy() -> None:
    """The scoring policy (fraud/policies/default.toml shows its form)."""


@fraud.command("evaluate")
@click.option("--seed", default=101, show_default=True, help="Of the traffic (not a tuning seed).")
@click.option("--count", default=200_000, show_default=True, help="Records of traffic.")
@click.option("--fraud-rate", default=0.02, show_default=True, help="Share of fraud events.")
@click.option("--shifted", is_flag=True, help="Every fraud scenario stealthier (a drift test).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write the report.")
@one_line_errors
def fraud_evaluate(
    seed: int, count: int, fraud_rate: float, shifted: bool, json_path: Path | None
) -> None:
    """Precision, recall and alert rate of the configured policy on generated traffic."""
    import orjson

    from clickstream.fraud_evaluate import evaluate, report
    from generator.config import GeneratorConfig

    s = load_settings()
    config = GeneratorConfig(seed=seed, count=count, fraud_rate=fraud_rate, shifted_fraud=shifted)
    result = evaluate(config, s.fraud_policy)
    name = f"seed {seed}, {count} records{', shifted' if shifted else ''}"
    click.echo(report(name, result))
    if json_path:
        json_path.write_bytes(orjson.dumps(result.as_json(), option=orjson.OPT_INDENT_2))


@fraud.command("fit")
@click.option("--seeds", default="1,2", show_default=True, help="Training seeds, comma-separated.")
@click.option("--count", default=200_000, show_default=True, help="Records of traffic per seed.")
@click.option("--fraud-rate", default=0.02, show_default=True, help="Share of fraud events.")
@click.option("--out", "out", type=click.Path(path_type=Path), required=True, help="Policy file.")
@one_line_errors
def fraud_fit(seeds: str, count: int, fraud_rate: float, out: Path) -> None:
    """Fit the configured policy's weights on training traffic; write them as its next version."""
    from clickstream.fraud_fit import fit, policy_toml
    from generator.config import GeneratorConfig

    try:
        numbers = [int(seed) for seed in seeds.split(",")]
    except ValueError:
        raise SettingsError(f"--seeds {seeds!r} is not a comma list of whole numbers") from None
    s = load_settings()
    configs = [GeneratorConfig(seed=n, count=count, fraud_rate=fraud_rate) for n in numbers]
    fitted = fit(configs, s.fraud_policy)
    comment = (
        f"Fitted by `clickstream fraud fit --seeds {seeds} --count {count} --fraud-rate "
        f"{fraud_rate:g}`\nfrom policy version {s.fraud_policy.version}: the bias and weights of a "
        f"logistic regression of the generator's\nlabels on the signals that fire (weights >= 0); "
        f"the threshold maximises F1 on those orders.\nPublish it with `clickstream fraud policy "
        f"publish FILE`."
    )
    out.write_text(policy_toml(fitted, comment))
    click.echo(f"wrote policy version {fitted.version} to {out} (threshold {fitted.threshold:g})")


@policy.command("publish")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--effective", help="ISO time it takes effect (event time); default: in 20 s")
@one_line_errors
def policy_publish(file: Path, effective: str | None) -> None:
    """Publish FILE as a new version to every worker, with no restart."""
    from clickstream.fraud_policy import publish
    from streams.eventtime import format_timestamp, parse_timestamp

    s = load_settings()
    try:
        effective_ms = parse_timestamp(effective) if effective else None
    except ValueError:
        raise SettingsError(
            f"--effective {effective!r} is not an ISO time with its offset, like 2026-12-01T18:00Z"
        ) from None
    record = asyncio.run(publish(s, file, effective_ms))
    click.echo(
        f"published policy version {record.policy.version} to {s.topics.fraud_policy.name}: "
        f"orders from {format_timestamp(record.effective_ms)} on are scored under it"
    )


@policy.command("show")
@one_line_errors
def policy_show() -> None:
    """The configured policy and the published versions."""
    from clickstream.fraud_policy import published
    from streams.eventtime import format_timestamp

    s = load_settings()
    click.echo(f"configured (before any published): version {s.fraud_policy.version}")
    for record in asyncio.run(published(s)):
        policy = record.policy
        when = format_timestamp(record.effective_ms)
        click.echo(f"version {policy.version}: from {when}, {len(policy.signals)} signals, "
                   f"threshold {policy.threshold}")  # fmt: skip


@cli.command()
@click.confirmation_option(prompt="Stop local Kafka/Redis and delete all local data?")
def reset() -> None:
    """Stop the local Kafka and Redis and delete CLICKSTREAM_VAR_DIR (jars are kept)."""
    s = load_settings()
    local_kafka(s).stop()
    local_redis(s).stop()
    kept = {s.var_dir / "kafka", s.var_dir / "kafka" / "jars"}
    for path in [*s.var_dir.glob("*"), *(s.var_dir / "kafka").glob("*")]:
        if path not in kept:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    click.echo(f"reset {s.var_dir}: local Kafka, Redis and worker data removed")


@cli.group()
def kafka() -> None:
    """The local single-node Kafka (KRaft) under CLICKSTREAM_VAR_DIR/kafka."""


@kafka.command("start")
@one_line_errors
def kafka_start() -> None:
    k = local_kafka(load_settings())
    k.start()
    click.echo(k.status())


@kafka.command("stop")
@one_line_errors
def kafka_stop() -> None:
    k = local_kafka(load_settings())
    k.stop()
    click.echo(k.status())


@kafka.command("status")
def kafka_status() -> None:
    click.echo(local_kafka(load_settings()).status())


@kafka.command("logs")
@click.option("-n", "--lines", default=40, show_default=True)
def kafka_logs(lines: int) -> None:
    click.echo(local_kafka(load_settings()).process.tail(lines))


@cli.group()
def redis() -> None:
    """The local Redis under CLICKSTREAM_VAR_DIR/redis, bound to 127.0.0.1."""


@redis.command("start")
@one_line_errors
def redis_start() -> None:
    r = local_redis(load_settings())
    r.start()
    click.echo(f"redis running at {r.url}")


@redis.command("stop")
def redis_stop() -> None:
    local_redis(load_settings()).stop()
    click.echo("redis stopped")


@redis.command("status")
def redis_status() -> None:
    r = local_redis(load_settings())
    click.echo(f"redis running at {r.url}" if r.process.running() else "redis stopped")


def main() -> None:
    from generator.command import generate

    cli.add_command(generate)
    from clickstream.up import up

    cli.add_command(up)
    cli(prog_name="clickstream")
