"""The naive per-event Faust way, as a peer: one agent, one windowed table, one += per page view.

views[url] += 1 in a tumbling(60 s) table, windowed by the Kafka record timestamp (Faust's
default; the event's own occurred_at is not used), memory store (Faust's default). Each message
is decoded with orjson; undecodable or non-page-view messages count as processed and are skipped.

Run as `python -m bench.naive_faust --bootstrap ... --topic ... --progress FILE` (the bench
does); it reports messages processed to FILE and stops itself after --max-seconds.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

import faust
import orjson

from bench.progress import ProgressFile

WINDOW_S = 60
EXPIRES_S = 3600


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
    views = app.Table("views", default=int, help="url -> page views per minute").tumbling(
        WINDOW_S, expires=EXPIRES_S
    )
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
    async def count_page_views(stream: faust.StreamT[bytes]) -> None:
        processed = 0
        async for value in stream:
            try:
                click = orjson.loads(value)
            except orjson.JSONDecodeError:
                click = None
            if isinstance(click, dict) and click.get("type") == "page_view":
                url = click.get("url")
                if isinstance(url, str):
                    views[url] += 1
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
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args(sys.argv[1:])
    app = build_app(args)
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn"]
    app.main()


if __name__ == "__main__":
    main()
