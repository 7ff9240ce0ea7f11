"""The ceiling: a plain aiokafka getmany + orjson + dict loop counting page views per url per
minute (by Kafka record timestamp, like the naive Faust peer). No state store, no changelog.

Run as `python -m bench.aiokafka_loop --bootstrap ... --topic ... --progress FILE`; it reports
messages processed to FILE and stops after --max-seconds or on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import defaultdict
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer

from bench.progress import ProgressFile

MINUTE_MS = 60_000


async def count_page_views(args: argparse.Namespace) -> dict[tuple[str, int], int]:
    consumer = AIOKafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        auto_offset_reset="earliest",
    )
    progress = ProgressFile(args.progress, args.expected)
    views: defaultdict[tuple[str, int], int] = defaultdict(int)  # (url, minute) -> page views
    processed = 0
    deadline = time.monotonic() + args.max_seconds
    await consumer.start()
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    try:
                        click = orjson.loads(record.value or b"")
                    except orjson.JSONDecodeError:
                        continue
                    if isinstance(click, dict) and click.get("type") == "page_view":
                        url = click.get("url")
                        if isinstance(url, str):
                            views[url, record.timestamp // MINUTE_MS] += 1
                processed += len(records)
            if processed:
                progress.maybe_report(processed)
    finally:
        await consumer.stop()
    return views


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.aiokafka_loop")
    parser.add_argument("--bootstrap", required=True, help="host:port of the broker")
    parser.add_argument("--topic", required=True, help="click events topic")
    parser.add_argument("--group", required=True, help="consumer group id")
    parser.add_argument("--progress", type=Path, required=True, help="progress file to write")
    parser.add_argument("--expected", type=int, required=True, help="messages in the topic")
    parser.add_argument("--max-seconds", type=float, default=600.0)
    return parser.parse_args(argv)


def main() -> None:
    asyncio.run(count_page_views(parse_args(sys.argv[1:])))


if __name__ == "__main__":
    main()
