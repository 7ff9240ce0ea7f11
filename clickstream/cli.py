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
from clickstream.replay import ReplayFailed
from clickstream.settings import Settings, SettingsError, redacted

F = TypeVar("F", bound=Callable[..., Any])
EXPECTED = (SettingsError, LocalServiceError, KafkaUnreachable, ReplayFailed)


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
    return LocalRedis(s.var_dir / "redis", s.local_redis_port, password=s.local_redis_password)


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


def redis_client(s: Settings) -> Any:
    import redis as redis_py

    client = redis_py.Redis.from_url(s.redis, socket_timeout=5, socket_connect_timeout=5)
    try:
        client.ping()
    except redis_py.RedisError:
        raise LocalServiceError(
            f"cannot reach Redis at {redacted(s.redis)}; start it with `clickstream redis start` "
            f"or set CLICKSTREAM_REDIS_URL"
        ) from None
    return client


def check_version(version: str, option: str) -> None:
    if not version.replace("-", "").replace("_", "").isalnum():
        raise SettingsError(f"{option} {version!r} may hold only letters, digits, '-' and '_'")


@cli.command()
@click.option("--app-id", "version", required=True, help="The new version's app id.")
@click.option(
    "--from",
    "asked_from",
    default="earliest",
    show_default=True,
    help="earliest, or an ISO time: each input partition from its first record then.",
)
@click.option(
    "--to",
    "asked_to",
    default=None,
    help="now (the default) or an ISO time: the last records read are those before.",
)
@click.option("--follow", is_flag=True, help="Do not stop: keep following the inputs.")
@click.option("--workers", default=1, show_default=True, help="Worker processes to run here.")
@click.option(
    "--own-clock",
    is_flag=True,
    help="Write its own time log instead of following the live version's.",
)
@one_line_errors
def replay(
    version: str,
    asked_from: str,
    asked_to: str | None,
    follow: bool,
    workers: int,
    own_clock: bool,
) -> None:  # fmt: skip
    """Recompute the input topics into a shadow version beside live (clickstream.replay)."""
    from clickstream import replay as replaying
    from clickstream.replay import parse_when

    s = load_settings()
    check_version(version, "--app-id")
    if version == s.app_id:
        raise SettingsError(
            f"--app-id {version} is the live version (CLICKSTREAM_APP_ID); pick a new id"
        )
    if follow and asked_to is not None:
        raise SettingsError("--to and --follow exclude each other: a follower never stops")
    if workers < 1:
        raise SettingsError(f"--workers {workers} must be 1 or more")
    parse_when(asked_from, "--from", ("earliest",))  # a bad time fails before anything starts
    redis_client(s)
    clock = version if own_clock else s.clock
    to = None if follow else (asked_to or "now")
    try:
        records, seconds = replaying.run(s, version, asked_from, to, clock, workers, sys.stderr)
    except KeyboardInterrupt:
        click.echo(f"replay of {version} stopped; the same command continues it", err=True)
        sys.exit(130)
    rate = records / seconds if seconds else 0.0
    click.echo(
        f"replayed {records} records into {version} in {seconds:.1f} s ({rate:,.0f} records/s, "
        f"start-up included); compare: clickstream diff {s.app_id} {version}"
    )


@cli.command()
@click.argument("live")
@click.argument("shadow")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write the report.")
@one_line_errors
def diff(live: str, shadow: str, json_path: Path | None) -> None:
    """Compare two versions' derived records by id; exit 0 only when they are identical."""
    import orjson
    from tqdm import tqdm

    from clickstream import versions
    from clickstream.diff import Report, compare, read_version
    from clickstream.replay import version_settings

    s = load_settings()
    for version in (live, shadow):
        check_version(version, "version")
    found = {}
    for version in (live, shadow):
        with tqdm(desc=f"read {version}", unit="rec", disable=None, file=sys.stderr) as bar:

            def seen(read: int, total: int) -> None:
                bar.total = total
                bar.update(read - bar.n)

            found[version] = read_version(version_settings(s, version, version), seen)
    report = Report(live, shadow, compare(found[live], found[shadow]))
    click.echo(report.table())
    if json_path:
        json_path.write_bytes(orjson.dumps(report.as_json(), option=orjson.OPT_INDENT_2))
    try:  # for the dashboard's Versions card; the verdict stands without it
        versions.save_diff(redis_client(s), s.app_id, report.as_json())
    except LocalServiceError as exc:
        click.echo(f"clickstream: report not kept for the dashboard: {exc}", err=True)
    sys.exit(0 if report.identical() else 1)


@cli.command()
@click.argument("version")
@one_line_errors
def promote(version: str) -> None:
    """Serve VERSION on the dashboard and API, now, without a restart."""
    from clickstream import versions

    s = load_settings()
    check_version(version, "version")
    client = redis_client(s)
    if version != s.app_id and version not in versions.registered(client, s.app_id):
        raise SettingsError(
            f"{version} is no version replayed beside {s.app_id} (`clickstream versions` "
            f"lists them)"
        )
    before = versions.promote(client, s.app_id, version)
    click.echo(f"the dashboard and API of {s.app_id} now serve {version} (before: {before})")


@cli.command()
@click.argument("version")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@one_line_errors
def retire(version: str, yes: bool) -> None:
    """Delete a version's consumer group, topics, local state and Redis keys."""
    from clickstream.retire import plan
    from clickstream.retire import retire as delete

    s = load_settings()
    check_version(version, "version")
    client = redis_client(s)
    retirement = plan(s, client, version)
    click.echo(f"retire {retirement.describe()}")
    if not yes and not click.confirm("delete all of it?"):
        click.echo("nothing deleted")
        sys.exit(1)
    keys = delete(s, client, retirement)
    click.echo(f"retired {version}: {len(retirement.topics)} topics, {keys} Redis keys deleted")


@cli.command("versions")
@one_line_errors
def list_versions() -> None:
    """The versions replayed beside this one, and the one served."""
    from clickstream import versions

    s = load_settings()
    client = redis_client(s)
    served = versions.active(client, s.app_id)
    click.echo(f"{'*' if served == s.app_id else ' '} {s.app_id} (base)")
    for name, about in versions.registered(client, s.app_id).items():
        mark = "*" if name == served else " "
        click.echo(f"{mark} {name}: {about.get('state')}, from {about.get('from')} to "
                   f"{about.get('to') or '(follow)'}, clock {about.get('clock')}")  # fmt: skip


@cli.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--csv",
    "csv_stream",
    type=click.Choice(["clicks", "orders"]),
    help="The file is CSV of this stream's events (else JSONL in the event schemas).",
)
@click.option("--map", "maps", multiple=True, help="CSV: FIELD=COLUMN (dotted: device.ip=ip).")
@click.option("--set", "sets", multiple=True, help="CSV: FIELD=VALUE for every row.")
@click.option("--dry-run", is_flag=True, help="Validate and report only; produce nothing.")
@click.option(
    "--timestamps",
    type=click.Choice(["import", "event"]),
    default="import",
    show_default=True,
    help="Record timestamps: the import time, or the events' own (needs no time retention).",
)
@one_line_errors
def import_history(
    file: Path,
    csv_stream: str | None,
    maps: tuple[str, ...],
    sets: tuple[str, ...],
    dry_run: bool,
    timestamps: str,
) -> None:
    """Load history from FILE into the input topics, validated and sorted by event time."""
    from clickstream.import_history import Mapping, import_file
    from generator.produce import progress_meter

    s = load_settings()
    if (maps or sets) and csv_stream is None:
        raise SettingsError("--map and --set are for CSV files: give --csv clicks|orders too")
    mapping = None
    if csv_stream is not None:
        mapping = Mapping(csv_stream, _pairs(maps, "--map"), _pairs(sets, "--set"))
    checked = import_file(
        s,
        file,
        mapping,
        dry_run,
        timestamps == "event",
        click.echo,
        lambda total, doing: progress_meter(total, True, sys.stderr, f"import: {doing}"),
        closed_before_ms=_closed_before(s),
    )
    if not dry_run and checked.valid.total():
        click.echo(f"imported {checked.valid.total()} events into {s.clicks_topic}, "
                   f"{s.orders_topic}")  # fmt: skip


def _pairs(options: tuple[str, ...], option: str) -> dict[str, str]:
    pairs = {}
    for text in options:
        name, sep, value = text.partition("=")
        if not sep or not name:
            raise SettingsError(f"{option} {text!r} must be FIELD=VALUE, e.g. user_id=customer")
        pairs[name.strip()] = value.strip()
    return pairs


def _closed_before(s: Settings) -> int | None:
    """Where the windows every partition of this app id still holds open start: events before
    are late (None: nothing known, Redis away or no worker ran yet)."""
    from serving import keys

    try:
        client = redis_client(s)
    except LocalServiceError:
        return None
    marks = [
        int(value)
        for stream in ("clicks", "orders")
        for name, value in client.hgetall(keys.pipeline(s.app_id, stream)).items()
        if name.endswith(b"|watermark_ms") and int(value) >= 0
    ]
    if not marks:
        return None
    spec = s.window_spec
    return spec.start_of(min(marks) - spec.size_ms - spec.grace_ms) + spec.size_ms


@cli.group()
def projection() -> None:
    """The Redis projection of a version's numbers."""


@projection.command("rebuild")
@click.argument("version", required=False)
@click.option(
    "--timeout", default=120.0, show_default=True, help="Seconds to wait for the workers."
)
@one_line_errors
def projection_rebuild(version: str | None, timeout: float) -> None:
    """Write VERSION's Redis numbers again (default: this app id), e.g. after Redis lost them;
    its workers must be running."""
    from tqdm import tqdm

    from clickstream.rebuild import rebuild
    from clickstream.replay import version_settings

    s = load_settings()
    version = version or s.app_id
    check_version(version, "version")
    client = redis_client(s)
    bars = {
        name: tqdm(desc=desc, unit=unit, disable=None, file=sys.stderr)
        for name, desc, unit in (
            ("waiting", "workers restate", "partition"),
            ("seen", "read back", "rec"),
        )
    }

    def progress(name: str) -> Callable[[int, int], None]:
        def update(done: int, total: int) -> None:
            bars[name].total = total
            bars[name].update(done - bars[name].n)

        return update

    try:
        out = rebuild(
            version_settings(s, version, version),
            client,
            timeout,
            progress("waiting"),
            progress("seen"),
        )
    finally:
        for bar in bars.values():
            bar.close()
    click.echo(out.describe(version))


@cli.group("dead-letters", invoke_without_command=True)
@click.option("-n", "--last", default=20, show_default=True, help="Per partition, the newest.")
@click.option("--all", "everything", is_flag=True, help="Every letter, not only the newest.")
@click.option("--reason", help="Only this reason (e.g. malformed_json, unknown_schema_version).")
@click.option("--source", help="Only letters of records from this topic.")
@click.option("--since", help="Only letters written at or after this ISO time.")
@click.option("--counts", is_flag=True, help="Count the letters per reason instead.")
@click.pass_context
@one_line_errors
def dead_letters(
    ctx: click.Context,
    last: int,
    everything: bool,
    reason: str | None,
    source: str | None,
    since: str | None,
    counts: bool,
) -> None:  # fmt: skip
    """The dead letters: reason, source record, detail, payload preview (or counts per reason)."""
    from collections import Counter

    from clickstream.dead_letters import NoDeadLetterTopic, matching, read_dead_letters
    from clickstream.replay import parse_when

    if ctx.invoked_subcommand is not None:
        given = [p.opts[-1] for p in ctx.command.params if p.name and _given(ctx, p.name)]
        if given:  # they would be ignored: the subcommand has its own
            raise click.UsageError(
                f"give {', '.join(given)} after {ctx.invoked_subcommand!r}: before it, they are "
                f"the listing's options"
            )
        return
    s = load_settings()
    since_ms = parse_when(since, "--since", ()) if since is not None else None
    topic = s.topics.dead_letters.name
    try:
        read = asyncio.run(read_dead_letters(s.bootstrap, topic, None if everything else last))
    except NoDeadLetterTopic as exc:
        click.echo(f"clickstream: {exc}", err=True)
        sys.exit(2)
    letters = matching(read, reason, source, since_ms)
    if counts:
        for name, n in Counter(letter.reason for _, letter in letters).most_common():
            click.echo(f"{n:>8}  {name}")
    else:
        for _, letter in letters:
            preview = letter.payload[:80].decode(errors="replace")
            click.echo(f"{letter.reason:<24} {letter.source:<28} {letter.detail}\n    {preview!r}")
    filtered = "" if len(letters) == len(read) else f" (of {len(read)} read)"
    click.echo(f"{len(letters)} dead letters in {topic}{filtered}", err=True)


def _given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT


@dead_letters.command("reinject")
@click.option("--reason", help="Only letters of this reason.")
@click.option("--source", help="Only originals from this input topic.")
@click.option("--since", help="Only letters written at or after this ISO time.")
@click.option("--dry-run", is_flag=True, help="Read and report only; send nothing.")
@one_line_errors
def dead_letters_reinject(
    reason: str | None, source: str | None, since: str | None, dry_run: bool
) -> None:
    """Send the letters' originals to <app>-retry.

    The workers apply each one again where it was, judged as it would have been there. Each
    original once; only those of the input topics, which are never written; one whose letter
    has a cut payload (or no source_timestamp) is read from its input topic (gone: skipped).
    """
    from clickstream.dead_letters import NoDeadLetterTopic, NoRetryTopic, reinject
    from clickstream.replay import parse_when
    from generator.produce import progress_meter

    s = load_settings()
    since_ms = parse_when(since, "--since", ()) if since is not None else None
    try:
        done = asyncio.run(
            reinject(s, reason, source, since_ms, dry_run,
                     lambda total: progress_meter(total, True, sys.stderr, "reinject: sent"))
        )  # fmt: skip
    except (NoDeadLetterTopic, NoRetryTopic) as exc:
        click.echo(f"clickstream: {exc}", err=True)
        sys.exit(2)
    click.echo(done.describe())


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
    click.echo(f"redis running at {redacted(r.url)}")


@redis.command("stop")
def redis_stop() -> None:
    local_redis(load_settings()).stop()
    click.echo("redis stopped")


@redis.command("status")
def redis_status() -> None:
    r = local_redis(load_settings())
    click.echo(f"redis running at {redacted(r.url)}" if r.process.running() else "redis stopped")


def main() -> None:
    from generator.command import generate

    cli.add_command(generate)
    from clickstream.up import up

    cli.add_command(up)
    cli(prog_name="clickstream")
