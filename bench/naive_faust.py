"""The naive per-event Faust way, as a peer: one agent, Faust tables, a table update per metric
per event. Memory store (Faust's default); every table write also goes to its changelog.

--metrics pageviews (default): views[url] += 1 in a tumbling(60 s) table, windowed by the Kafka
record timestamp (Faust's default; the event's own occurred_at is not used).

--metrics full: the worker's click metric set per event-time minute (from occurred_at), in plain
tables keyed 'minute|dimension': page views per page (URL path), clicks per type, referred clicks
per referrer host, and distinct users, overall and per funnel step, counted exactly (a seen-table
keyed 'minute|step|user', a counter bumped on first sight). A seen-table of event_ids counts each
event once. No late-event cut-off.

Each message is decoded with orjson; one that is undecodable or lacks what the metrics need
counts as processed and is skipped. Run as `python -m bench.naive_faust --bootstrap ... --topic
... --progress FILE` (the bench does); it reports messages processed to FILE and stops itself
after --max-seconds.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import faust
import orjson

from bench.progress import ProgressFile

WINDOW_S = 60
EXPIRES_S = 3600
CLICK_TYPES = frozenset({"page_view", "search", "add_to_cart", "remove_from_cart", "checkout"})
FUNNEL_STEPS = frozenset({"page_view", "add_to_cart", "checkout"})
EVERY_CLICK = "users"  # the distinct-users "step" that every click belongs to

CountMessage = Callable[[bytes], None]  # counts one clicks-topic message into the tables


class Click(NamedTuple):
    """What the full metric set reads from one click."""

    event_id: str
    type: str
    user_id: str
    page: str  # URL path
    referrer_host: str | None  # None: no referrer, or one without a host
    minute: int  # epoch seconds at the start of occurred_at's minute


def _decode(value: bytes) -> dict[str, Any] | None:
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def minute_of(occurred_at: str) -> int:
    """ISO-8601 with an offset -> epoch seconds at the start of its minute. Raises ValueError."""
    moment = datetime.fromisoformat(occurred_at)
    if moment.tzinfo is None:
        raise ValueError(f"{occurred_at!r} has no UTC offset")
    return int(moment.timestamp() // WINDOW_S) * WINDOW_S


def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    return value if isinstance(value, str) and value else None


def parse_click(value: bytes) -> Click | None:
    """The fields the full metric set needs, or None when the message is not a usable click."""
    body = _decode(value)
    if body is None:
        return None
    event_id, kind, user_id, url, occurred_at = (
        _text(body, name) for name in ("event_id", "type", "user_id", "url", "occurred_at")
    )
    referrer = body.get("referrer")
    if not (event_id and kind in CLICK_TYPES and user_id and url and occurred_at):
        return None
    if referrer is not None and not isinstance(referrer, str):
        return None
    try:
        page, minute = urlsplit(url).path or "/", minute_of(occurred_at)
        host = urlsplit(referrer).hostname if referrer else None
    except ValueError:  # a bad occurred_at, or a URL urlsplit rejects
        return None
    return Click(event_id, kind, user_id, page, host, minute)


def page_view_counter(app: faust.App) -> CountMessage:
    views = app.Table("views", default=int, help="url -> page views per minute").tumbling(
        WINDOW_S, expires=EXPIRES_S
    )

    def count(value: bytes) -> None:
        click = _decode(value)
        if click is not None and click.get("type") == "page_view":
            url = click.get("url")
            if isinstance(url, str):
                views[url] += 1

    return count


def full_metric_counter(app: faust.App) -> CountMessage:
    counted_events = app.Table("counted_events", help="event_id -> True once counted")
    page_views = app.Table("page_views", default=int, help="'minute|page' -> page views")
    clicks_per_type = app.Table("clicks_per_type", default=int, help="'minute|type' -> clicks")
    referred_clicks = app.Table("referred_clicks", default=int, help="'minute|host' -> clicks")
    seen_users = app.Table("seen_users", help="'minute|step|user_id' -> True once seen")
    distinct_users = app.Table("distinct_users", default=int, help="'minute|step' -> users")

    def count_user(step: str, click: Click) -> None:
        seen = f"{click.minute}|{step}|{click.user_id}"
        if seen not in seen_users:
            seen_users[seen] = True
            distinct_users[f"{click.minute}|{step}"] += 1

    def count(value: bytes) -> None:
        click = parse_click(value)
        if click is None or click.event_id in counted_events:
            return
        counted_events[click.event_id] = True
        clicks_per_type[f"{click.minute}|{click.type}"] += 1
        if click.type == "page_view":
            page_views[f"{click.minute}|{click.page}"] += 1
        if click.referrer_host is not None:
            referred_clicks[f"{click.minute}|{click.referrer_host}"] += 1
        count_user(EVERY_CLICK, click)
        if click.type in FUNNEL_STEPS:
            count_user(click.type, click)

    return count


METRICS: dict[str, Callable[[faust.App], CountMessage]] = {
    "pageviews": page_view_counter,
    "full": full_metric_counter,
}


def build_app(args: argparse.Namespace) -> faust.App:
    app = faust.App(
        args.app_id,
        broker=f"kafka://{args.bootstrap}",
        datadir=str(args.datadir),
        topic_partitions=args.partitions,
        consumer_auto_offset_reset="earliest",
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        web_port=args.web_port,
        autodiscover=False,
        env={},  # BROKER_URL, WEB_PORT, ... in the environment must not change the peer
    )
    count = METRICS[args.metrics](app)
    clicks = app.topic(
        args.topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=args.partitions,
    )
    progress = ProgressFile(args.progress, args.expected)

    @app.agent(clicks)
    async def count_clicks(stream: faust.StreamT[bytes]) -> None:
        processed = 0
        async for value in stream:
            count(value)
            processed += 1
            progress.maybe_report(processed)

    @app.timer(interval=args.max_seconds)
    async def stop_when_overdue() -> None:  # first tick after max_seconds: the bench is gone
        os.kill(os.getpid(), signal.SIGTERM)

    return app


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.naive_faust")
    parser.add_argument("--bootstrap", required=True, help="host:port of the broker")
    parser.add_argument("--topic", required=True, help="click events topic")
    parser.add_argument("--app-id", required=True, help="Faust app id = consumer group")
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--datadir", type=Path, required=True)
    parser.add_argument("--web-port", type=int, required=True)
    parser.add_argument("--progress", type=Path, required=True, help="progress file to write")
    parser.add_argument("--expected", type=int, required=True, help="messages in the topic")
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--metrics", choices=list(METRICS), default="pageviews")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args(sys.argv[1:])
    app = build_app(args)
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn"]
    app.main()


if __name__ == "__main__":
    main()
