"""`clickstream import FILE`: history loaded into the input topics, in event-time order.

Events produced out of event-time order are late almost to the last one (a window closes once
the watermark passes its end plus the grace), so the import always sorts:

  1. validate: every line parsed as the workers parse it (streams.validation); invalid lines
     are counted by reason and written to FILE.rejected.jsonl with the reason, never produced;
  2. sort by event time, in runs of at most `run_lines` lines spilled to disk, merged;
  3. produce each event to its topic keyed by user_id (Kafka's default partitioner, as every
     producer of these topics), with a progress bar.

Lines are JSONL in the event schemas (`schema` says click or OrderCreated; legacy v1 orders
are known by their shape), or CSV with a
mapping of event fields to columns (`--map user_id=customer`, dotted for nested fields,
`--set` for constants: JSON when they parse as JSON, `--set items=[]`, else text). A CSV row's
event_id, if not mapped, is derived from its content, so the same file imported twice counts
once.

Record timestamps are the import time by default: a topic with time-based retention deletes a
record once its timestamp is older than retention.ms, so history stamped with its event times
would be deleted at once. `--timestamps event` stamps the event times (what `replay --from`
resolves by) and is refused while the topics' retention would delete them.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import heapq
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from clickstream.kafka_admin import admin_client, ensure_topics
from clickstream.replay import ReplayFailed
from clickstream.settings import Settings
from generator.produce import input_producer, partition_for
from streams.eventtime import format_timestamp
from streams.records import CLICK_SCHEMA, CLICK_VERSION, ORDER_SCHEMA, ORDER_VERSION
from streams.upcast import is_legacy_order
from streams.validation import InvalidEvent, parse_click, parse_order

RUN_LINES = 200_000  # sorted in memory at once; longer files are merged from runs on disk
INTEGER_FIELDS = {"id", "version", "quantity"}  # CSV text cast to int for these fields
SCHEMAS = {"clicks": (CLICK_SCHEMA, CLICK_VERSION), "orders": (ORDER_SCHEMA, ORDER_VERSION)}


class ImportFailed(ReplayFailed):
    """The file or the options cannot be imported; the message says why and what to do."""


@dataclass
class Checked:
    """The validation pass: what is fit to produce, and why the rest is not."""

    valid: Counter[str] = field(default_factory=Counter)  # stream -> events
    rejected: Counter[str] = field(default_factory=Counter)  # reason -> lines
    first_ms: int | None = None
    last_ms: int | None = None
    out_of_order: int = 0  # valid lines older than the line before (the sort fixes them)
    late: int = 0  # valid events in windows the version has closed already
    closed_before_ms: int | None = None  # where its open windows start, when known

    def describe(self) -> str:
        valid = ", ".join(f"{n} {stream}" for stream, n in sorted(self.valid.items()))
        text = f"valid: {valid or 'none'}"
        if self.first_ms is not None and self.last_ms is not None:
            text += f", event time {format_timestamp(self.first_ms)} .. "
            text += format_timestamp(self.last_ms)
        if self.out_of_order:
            text += f"; {self.out_of_order} lines out of event-time order (sorted)"
        if self.late and self.closed_before_ms is not None:
            text += (
                f"; {self.late} events fall in windows the version has closed already (every "
                f"window before {format_timestamp(self.closed_before_ms)}): they will be late"
            )
        if self.rejected:
            reasons = ", ".join(f"{r} {n}" for r, n in self.rejected.most_common())
            text += f"; rejected {sum(self.rejected.values())}: {reasons}"
        return text


@dataclass(frozen=True)
class Mapping:
    """How CSV rows become events of `stream`: event field path -> column, and constants."""

    stream: str
    columns: dict[str, str]
    constants: dict[str, str]

    def event(self, row: dict[str, str], line: int) -> dict[str, Any]:
        schema, version = SCHEMAS[self.stream]
        body: dict[str, Any] = {"schema": schema, "version": version}
        for path, value in self.constants.items():
            _put(body, path, _constant(value))
        for path, column in self.columns.items():
            if column not in row:
                raise InvalidEvent("missing_field", f"no column {column!r} (for {path})")
            value = row[column]
            _put(body, path, None if value == "" else value)
        if "occurred_at" in body and isinstance(body["occurred_at"], str):
            body["occurred_at"] = _iso_utc(body["occurred_at"])
        if "event_id" not in body:
            content = orjson.dumps(row, option=orjson.OPT_SORT_KEYS)
            body["event_id"] = f"import-{hashlib.sha1(content).hexdigest()[:20]}"
        return body


def _put(body: dict[str, Any], path: str, value: Any) -> None:
    *parents, name = path.split(".")
    for parent in parents:
        body = body.setdefault(parent, {})
    if value is not None and name in INTEGER_FIELDS and str(value).lstrip("-").isdigit():
        value = int(value)
    body[name] = value


def _constant(text: str) -> Any:
    """A --set value: JSON when it parses as JSON (a list, a number), else the text itself."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def _iso_utc(text: str) -> str:
    """A CSV time as the schema has it: ISO-8601 with an offset; naive times are UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidEvent("bad_value", f"occurred_at {text[:40]!r} is no ISO-8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return format_timestamp(int(moment.timestamp() * 1000))


def read_lines(path: Path, mapping: Mapping | None) -> Iterator[tuple[int, bytes | dict[str, Any]]]:
    """(line number, raw JSON line or CSV row as an event) of the file."""
    try:
        handle = path.open("rb" if mapping is None else "r", newline="" if mapping else None)
    except OSError as exc:
        raise ImportFailed(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        if mapping is None:
            for number, raw in enumerate(handle, 1):
                if raw.strip():
                    yield number, raw.strip()
            return
        reader = csv.DictReader(handle)
        missing = [c for c in mapping.columns.values() if c not in (reader.fieldnames or [])]
        if missing:
            raise ImportFailed(
                f"{path} has no column {', '.join(map(repr, missing))}; its columns are "
                f"{', '.join(reader.fieldnames or [])}: fix the --map options"
            )
        for number, row in enumerate(reader, 2):
            yield number, row


def parsed(
    number: int, line: bytes | dict[str, Any], mapping: Mapping | None, now_ms: int
) -> tuple[str, str, int, bytes]:
    """(stream, user key, event time, the event's bytes) of a line; raises InvalidEvent."""
    if isinstance(line, dict):
        assert mapping is not None
        value = orjson.dumps(mapping.event(line, number))
        stream = mapping.stream
    else:
        value = line
        try:
            body = orjson.loads(value)
        except orjson.JSONDecodeError:
            body = None
        order = isinstance(body, dict) and (
            body.get("schema") == ORDER_SCHEMA or is_legacy_order(body)
        )
        stream = "orders" if order else "clicks"  # a broken line: the clicks parser says why
    event = parse_click(value, now_ms) if stream == "clicks" else parse_order(value, now_ms)
    return stream, event.user_id, event.occurred_at_ms, value


class Runs:
    """Valid events sorted by event time: runs of RUN_LINES sorted in memory, spilled to
    files, merged (stable: equal times keep the file's order)."""

    def __init__(self, folder: Path, run_lines: int = RUN_LINES) -> None:
        self.folder, self.run_lines = folder, run_lines
        self.buffer: list[tuple[int, int, str, str, bytes]] = []
        self.files: list[Path] = []
        self.count = 0

    def add(self, stream: str, key: str, time_ms: int, value: bytes) -> None:
        self.buffer.append((time_ms, self.count, stream, key, value))
        self.count += 1
        if len(self.buffer) >= self.run_lines:
            self._spill()

    def _spill(self) -> None:
        path = self.folder / f"run-{len(self.files)}.jsonl"
        with path.open("wb") as out:
            for entry in sorted(self.buffer):
                out.write(orjson.dumps([entry[0], entry[1], entry[2], entry[3]]) + b"\t")
                out.write(entry[4] + b"\n")
        self.files.append(path)
        self.buffer = []

    def sorted(self, stack: ExitStack) -> Iterator[tuple[int, int, str, str, bytes]]:
        if not self.files:
            return iter(sorted(self.buffer))
        self._spill()
        return heapq.merge(*(_read_run(stack.enter_context(p.open("rb"))) for p in self.files))


def _read_run(handle: IO[bytes]) -> Iterator[tuple[int, int, str, str, bytes]]:
    for line in handle:
        head, value = line.rstrip(b"\n").split(b"\t", 1)
        time_ms, order, stream, key = orjson.loads(head)
        yield time_ms, order, stream, key, value


def import_file(
    settings: Settings,
    path: Path,
    mapping: Mapping | None,
    dry_run: bool,
    event_timestamps: bool,
    say: Callable[[str], None],
    meter: Callable[[int | None, str], Any],
    closed_before_ms: int | None = None,
    run_lines: int = RUN_LINES,
) -> Checked:
    """Validate, sort and (unless `dry_run`) produce `path`; `meter(total, doing)` a progress
    bar (checked, then sent);
    `closed_before_ms`: where the windows the app still holds open start, when known (events
    before will be late)."""
    now_ms = round(time.time() * 1000)
    checked = Checked(closed_before_ms=closed_before_ms)
    rejected_path = path.with_name(path.name + ".rejected.jsonl")
    rejected_path.unlink(missing_ok=True)  # an earlier run's: this run writes its own
    with tempfile.TemporaryDirectory(prefix="clickstream-import-") as folder, ExitStack() as stack:
        runs = Runs(Path(folder), run_lines)
        rejects = None
        last = None
        with meter(None, "checked") as checking:
            for number, line in read_lines(path, mapping):
                checking.update()
                try:
                    stream, key, time_ms, value = parsed(number, line, mapping, now_ms)
                except InvalidEvent as exc:
                    checked.rejected[exc.reason] += 1
                    if rejects is None:
                        rejects = stack.enter_context(rejected_path.open("wb"))
                    shown = line if isinstance(line, dict) else line.decode(errors="replace")
                    entry = {
                        "line": number,
                        "reason": exc.reason,
                        "detail": exc.detail,
                        "at": shown,
                    }
                    rejects.write(orjson.dumps(entry) + b"\n")
                    continue
                checked.valid[stream] += 1
                if closed_before_ms is not None and time_ms < closed_before_ms:
                    checked.late += 1
                if last is not None and time_ms < last:
                    checked.out_of_order += 1
                last = time_ms
                checked.first_ms = min(time_ms, checked.first_ms or time_ms)
                checked.last_ms = max(time_ms, checked.last_ms or time_ms)
                runs.add(stream, key, time_ms, value)
        say(checked.describe())
        if rejects is not None:
            say(f"rejected lines, with their reasons: {rejected_path}")
        if dry_run or not runs.count:
            return checked
        topics = {"clicks": settings.topics.clicks.name, "orders": settings.topics.orders.name}
        if event_timestamps:
            asyncio.run(_check_retention(settings, list(topics.values()), checked, now_ms))
            say("record timestamps: the events' own times (--timestamps event)")
        else:
            say(
                f"record timestamps: the import time, {format_timestamp(now_ms)}, since a topic "
                f"with time-based retention would delete records stamped with old event times "
                f"at once; event time is each event's occurred_at (--timestamps event stamps "
                f"the records with it, for topics without time retention)"
            )
        asyncio.run(
            _produce(settings, topics, runs.sorted(stack), runs.count, event_timestamps, now_ms,
                     meter)
        )  # fmt: skip
    return checked


async def _check_retention(
    settings: Settings, topics: list[str], checked: Checked, now_ms: int
) -> None:
    admin = await admin_client(settings.bootstrap)
    try:
        described = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics]
        )
    finally:
        await admin.close()
    oldest = checked.first_ms if checked.first_ms is not None else now_ms
    for response in described:
        for _code, _message, _type, name, entries in response.resources:
            for entry in entries:
                if entry[0] != "retention.ms" or int(entry[1]) < 0:
                    continue
                if oldest < now_ms - int(entry[1]):
                    raise ImportFailed(
                        f"topic {name} deletes records older than retention.ms={entry[1]}, and "
                        f"events from {format_timestamp(oldest)} would be deleted at once: "
                        f"import with the default --timestamps import, or set retention.ms=-1 "
                        f"on {name}"
                    )


async def _produce(
    settings: Settings,
    topics: dict[str, str],
    events: Iterator[tuple[int, int, str, str, bytes]],
    total: int,
    event_timestamps: bool,
    now_ms: int,
    meter: Callable[[int | None, str], Any],
) -> None:
    specs = (settings.topics.clicks, settings.topics.orders)
    await ensure_topics(settings.bootstrap, specs, settings.replication)
    producer = input_producer(settings.bootstrap, settings.limits.max_event_bytes)
    await producer.start()
    try:
        partitions = {t: sorted(await producer.partitions_for(t)) for t in topics.values()}
        with meter(total, "sent") as bar:
            unacked: list[asyncio.Future[Any]] = []
            for time_ms, _order, stream, key, value in events:
                topic = topics[stream]
                encoded = key.encode()
                unacked.append(
                    await producer.send(
                        topic,
                        value,
                        key=encoded,
                        partition=partition_for(encoded, partitions[topic]),
                        timestamp_ms=time_ms if event_timestamps else now_ms,
                    )
                )
                bar.update()
                if len(unacked) >= 10_000:
                    await asyncio.gather(*unacked)
                    unacked = []
            await asyncio.gather(*unacked)
    finally:
        await producer.stop()
