"""The ceiling: a plain aiokafka getmany + orjson + dict loop counting page views per url per
minute and source partition (by Kafka record timestamp, like the naive Faust peer). No state
store, no changelog, no validation, no lateness.

Run as `python -m bench.aiokafka_loop --bootstrap ... --topic ... --progress FILE`; it reports
messages processed to FILE and stops after --max-seconds or on SIGTERM, then writes its counts
to --output (if given) as JSON [[partition, minute start ms, url, views], ...].
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from collections import defaultdict
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer

from bench.progress import ProgressFile

MINUTE_MS = 60_000
Views = defaultdict[tuple[int, str, int], int]  # (partition, url, minute) -> page views


async def count_page_views(args: argparse.Namespace) -> Views:
    consumer = AIOKafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        auto_offset_reset="earliest",
    )
    progress = ProgressFile(args.progress, args.expected)
    views: Views = defaultdict(int)
    processed = 0
    deadline = time.monotonic() + args.max_seconds
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    await consumer.start()
    try:
        while time.monotonic() < deadline and not stopping.is_set():
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                for record in records:
                    try:
                        click = orjson.loads(record.value or b"")
                    except orjson.JSONDecodeError:
                        continue
                    if isinstance(click, dict) and click.get("type") == "page_view":
                        url = click.get("url")
                        if isinstance(url, str):
                            views[tp.partition, url, record.timestamp // MINUTE_MS] += 1
                processed += len(records)
            if processed:
                progress.maybe_report(processed)
    finally:
        await consumer.stop()
    if args.output is not None:
        write_counts(args.output, views)
    return views


def write_counts(path: Path, views: Views) -> None:
    rows = [[p, minute * MINUTE_MS, url, n] for (p, url, minute), n in views.items()]
    scratch = path.with_name(path.name + ".tmp")
    scratch.write_bytes(orjson.dumps(rows))
    os.replace(scratch, path)  # a reader never sees half of it


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.aiokafka_loop")
    parser.add_argument("--bootstrap", required=True, help="host:port of the broker")
    parser.add_argument("--topic", required=True, help="click events topic")
    parser.add_argument("--group", required=True, help="consumer group id")
    parser.add_argument("--progress", type=Path, required=True, help="progress file to write")
    parser.add_argument("--expected", type=int, required=True, help="messages in the topic")
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--output", type=Path, help="counts file to write once stopped")
    return parser.parse_args(argv)


def main() -> None:
    asyncio.run(count_page_views(parse_args(sys.argv[1:])))


if __name__ == "__main__":
    main()
