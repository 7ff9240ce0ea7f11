"""`generate`: simulate clicks and orders and send them to Kafka (see generator.simulate).

Failures a user can fix (settings, Kafka unreachable, bad options) end with one line on stderr
naming the problem and the fix, and exit status 2.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import NoReturn

import click
from aiokafka.errors import KafkaConnectionError, KafkaError

from clickstream.kafka_admin import KafkaUnreachable
from clickstream.settings import SettingsError, load
from generator.config import GeneratorConfig
from generator.produce import PROGRESS_LINE_SECONDS, ProduceError, produce
from streams.eventtime import parse_timestamp

DEFAULTS = GeneratorConfig()
Share = click.FloatRange(0.0, 1.0)


def _fail(message: str) -> NoReturn:
    click.echo(f"generate: {message}", err=True)
    raise SystemExit(2)


@click.command("generate")
@click.option(
    "--seed", type=int, default=DEFAULTS.seed, show_default=True, help="Same seed, same records."
)
@click.option("--count", type=click.IntRange(min=0), help="Stop after this many records.")
@click.option(
    "--duration", type=click.FloatRange(min=0), help="Stop after this many simulated seconds."
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULTS.events_per_second,
    show_default=True,
    help="Records per simulated second.",
)
@click.option(
    "--start",
    default="now",
    show_default=True,
    help="Simulated start, ISO-8601 with offset, or 'now' (with --fast: early enough to end now).",
)
@click.option(
    "--pace/--fast",
    default=True,
    show_default=True,
    help="Send each record at its time (live traffic), or as fast as possible.",
)
@click.option(
    "--jsonl",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write every record sent, with its ground-truth label, to this file.",
)
@click.option(
    "--users",
    type=click.IntRange(min=1),
    default=DEFAULTS.users,
    show_default=True,
    help="Returning shoppers.",
)
@click.option(
    "--duplicates",
    type=Share,
    default=DEFAULTS.duplicate_rate,
    show_default=True,
    help="Share of records sent twice.",
)
@click.option(
    "--out-of-order",
    type=Share,
    default=DEFAULTS.out_of_order_rate,
    show_default=True,
    help="Share sent up to 10 s late.",
)
@click.option(
    "--late",
    type=Share,
    default=DEFAULTS.late_rate,
    show_default=True,
    help="Share sent 2-10 min late.",
)
@click.option(
    "--malformed",
    type=Share,
    default=DEFAULTS.malformed_rate,
    show_default=True,
    help="Share of extra broken records.",
)
@click.option(
    "--legacy",
    type=Share,
    default=DEFAULTS.legacy_order_rate,
    show_default=True,
    help="Share of orders in the v1 shape.",
)
@click.option(
    "--fraud",
    type=Share,
    default=DEFAULTS.fraud_rate,
    show_default=True,
    help="Share of records from fraud scenarios.",
)
@click.option(
    "--diurnal/--flat", default=False, show_default=True, help="Vary the rate over the UTC day."
)
@click.option(
    "--no-progress",
    is_flag=True,
    help=f"Hide the progress bar (off a terminal: the line every {PROGRESS_LINE_SECONDS:.0f} s).",
)
def generate(
    seed: int,
    count: int | None,
    duration: float | None,
    rate: float,
    start: str,
    pace: bool,
    jsonl: Path | None,
    users: int,
    duplicates: float,
    out_of_order: float,
    late: float,
    malformed: float,
    legacy: float,
    fraud: float,
    diurnal: bool,
    no_progress: bool,
) -> None:
    """Simulate shoppers, bots and fraudsters and send their clicks and orders to Kafka."""
    # aiokafka logs each failed connection; without logging configured Python would print those
    # too. Keep errors to our one line; a CLI that configures logging still receives them.
    logging.getLogger("aiokafka").addHandler(logging.NullHandler())
    try:
        settings = load()
    except SettingsError as exc:
        _fail(str(exc))
    if not pace and count is None and duration is None:
        _fail("--fast needs a bound: add --count N or --duration SECONDS")
    try:
        config = GeneratorConfig(
            seed=seed,
            start_ms=_start_ms(start, pace, count, duration, rate),
            events_per_second=rate,
            count=count,
            duration_s=duration,
            users=users,
            duplicate_rate=duplicates,
            out_of_order_rate=out_of_order,
            late_rate=late,
            malformed_rate=malformed,
            max_event_bytes=settings.max_event_bytes,
            legacy_order_rate=legacy,
            fraud_rate=fraud,
            diurnal=diurnal,
        )
    except ValueError as exc:
        _fail(str(exc))
    try:
        report = asyncio.run(produce(settings, config, jsonl, pace, not no_progress))
    except (KafkaConnectionError, KafkaUnreachable):
        _fail(
            f"cannot reach Kafka at {settings.bootstrap}; start it with `clickstream up` "
            "or set CLICKSTREAM_KAFKA_BOOTSTRAP to a running broker"
        )
    except KafkaError as exc:
        _fail(f"Kafka at {settings.bootstrap} failed: {exc!r}; check that the broker is healthy")
    except ProduceError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        click.echo("generate: interrupted; records sent so far stay in Kafka", err=True)
        raise SystemExit(130) from None
    click.echo(f"generate: {report.summary()}", err=True)


def _start_ms(
    start: str, pace: bool, count: int | None, duration: float | None, rate: float
) -> int:
    now_ms = int(time.time() * 1000)
    if start == "now":
        if pace:
            return now_ms
        span_s = duration if duration is not None else (count or 0) / rate
        return now_ms - round(span_s * 1000)  # the simulated run ends about now
    try:
        start_ms = parse_timestamp(start)
    except ValueError:
        _fail(
            f"--start {start!r} is not ISO-8601 with an offset, e.g. 2026-01-01T00:00:00Z, or 'now'"
        )
    if start_ms > now_ms:
        _fail(f"--start {start} is in the future; Kafka rejects record timestamps over 1 h ahead")
    return start_ms
