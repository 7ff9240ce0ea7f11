"""Bytewax (0.21, the `bench` extra) as a peer, on the bench's page-view query
(bench/page_view_oracle.py): page views per page in 60 s event-time tumbling windows with a 30 s
grace, per source partition, each window emitted once, when it closes.

  kafka input            KafkaSourceMessage: key user_id, value the JSON bytes, its partition
  -> inspect             count it (the progress file)
  -> filter_map          (partition, PageView(event_id, page, occurred_at_ms)), or nothing: not
                         a valid page view (streams.validation; page = page_of(url))
  -> stateful_flat_map   per partition: the first sight of each event_id (ids of the last hour)
  -> fold_window         per partition: Counter of pages; EventClock(occurred_at, 30 s),
                         TumblingWindower(60 s)
  -> flat_map            {"partition", "start", "page", "views"} per window and page
  -> <group>-pageviews   kafka output

Everything is keyed by the source partition from the start, dedup included: a keyed step hands
on a batch's items grouped by key, so dedup per user (the way Quix does it) would reorder each
partition's page views by user before the windows, and Bytewax's per-item lateness below would
then drop a few percent of the first windows (a first fetch spans more than the grace).

Bytewax's event clock runs on with system time between events; here the clock's "now" is held
still, so a partition's watermark is exactly its latest page view's time minus the grace, and a
window closes when that passes its end, as in the query. Bytewax judges lateness per item, not
per window: a page view more than the grace behind the latest is late even while its window is
open (the query counts it). On the bench's data (out of order by at most 10 s, late by 2 to 10
min) that changes no verdict; the check would say so if it did.

It reads the topic to its end (tail=False); at the end Bytewax closes every window still open,
so the progress file reaches its last count only once the dataflow has finished and its output
is out. It then waits for SIGTERM, or stops by itself after --max-seconds. Bytewax reads with
no consumer group and no recovery (its snapshots are off by default): nothing is durable, like
the aiokafka loop. The broker creates no topic by itself, so the output topic is created first.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import bytewax.operators as op
import orjson
from bytewax.connectors.kafka import KafkaSinkMessage, KafkaSourceMessage
from bytewax.connectors.kafka import operators as kop
from bytewax.dataflow import Dataflow
from bytewax.operators.windowing import EventClock, TumblingWindower, fold_window
from bytewax.run import cli_main
from confluent_kafka.admin import AdminClient, NewTopic

from agents.clicks import page_of
from bench.page_view_oracle import GRACE_S, PAGE_VIEW, WINDOW_S
from bench.progress import ProgressFile
from streams.validation import InvalidEvent, parse_click_fields

DEDUP_HORIZON_MS = 3_600_000  # event time an event_id is remembered, as CLICKSTREAM_DEDUP_HORIZON
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # windows start on whole minutes of UTC
STILL = datetime(2000, 1, 1, tzinfo=UTC)  # the event clock's "now": system time adds nothing
Message = KafkaSourceMessage[bytes | None, bytes | None]


class PageView(NamedTuple):
    event_id: str
    page: str
    occurred_at_ms: int


@dataclass
class SeenIds:
    """One partition's event_ids of about the last hour of event time, oldest first."""

    at: dict[str, int] = field(default_factory=dict)  # event_id -> occurred_at ms
    order: deque[tuple[int, str]] = field(default_factory=deque)  # as seen: (ms, event_id)


def page_view_of(message: Message) -> tuple[str, PageView] | None:
    """(source partition, page view), or None when the message is no valid page view."""
    if message.value is None or message.timestamp is None or message.partition is None:
        return None
    try:
        click = parse_click_fields(message.value, message.timestamp[1])
    except InvalidEvent:
        return None
    if click.type is not PAGE_VIEW:
        return None
    view = PageView(click.event_id, page_of(click.url), click.occurred_at_ms)
    return str(message.partition), view


def first_sight(seen: SeenIds | None, view: PageView) -> tuple[SeenIds, list[PageView]]:
    """The view the first time its partition sees its event_id; ids seen an hour before this
    view's time are forgotten."""
    seen = seen or SeenIds()
    if view.event_id in seen.at:
        return seen, []
    horizon = view.occurred_at_ms - DEDUP_HORIZON_MS
    while seen.order and seen.order[0][0] < horizon:
        seen.at.pop(seen.order.popleft()[1], None)
    seen.at[view.event_id] = view.occurred_at_ms
    seen.order.append((view.occurred_at_ms, view.event_id))
    return seen, [view]


def event_time(view: PageView) -> datetime:
    return EPOCH + timedelta(milliseconds=view.occurred_at_ms)


def count_page(pages: Counter[str], view: PageView) -> Counter[str]:
    pages[view.page] += 1
    return pages


def result_messages(
    keyed: tuple[str, tuple[int, Counter[str]]],
) -> Iterator[KafkaSinkMessage[bytes, bytes]]:
    """A closed window of one partition -> one record per page, for the bench to read back."""
    partition, (window_id, pages) = keyed
    start = window_id * WINDOW_S * 1000  # window ids count windows from EPOCH
    for page, views in pages.items():
        row = {"partition": int(partition), "start": start, "page": page, "views": views}
        yield KafkaSinkMessage(page.encode(), orjson.dumps(row))


class ReadCount:
    """Messages read, to the progress file; the last count only once the dataflow is done."""

    def __init__(self, progress: ProgressFile) -> None:
        self.progress = progress
        self.count = 0

    def __call__(self, step_id: str, message: object) -> None:
        self.count += 1
        self.progress.maybe_report(min(self.count, self.progress.expected - 1))

    def done(self) -> None:
        self.progress.report(self.count)


def create_topic(bootstrap: str, name: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})  # alive until the topic is made
    futures = admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    futures[name].result(timeout=30)


def build_flow(args: argparse.Namespace, read: ReadCount) -> Dataflow:
    flow = Dataflow("page_views")
    clicks = kop.input("clicks", flow, brokers=[args.bootstrap], topics=[args.topic], tail=False)
    messages = op.inspect("progress", clicks.oks, read)
    by_partition = op.filter_map("page_views", messages, page_view_of)
    # (partition, PageView): each source partition its own dedup, windows and clock
    first = op.stateful_flat_map("first_sight", by_partition, first_sight)
    clock = EventClock(
        event_time, wait_for_system_duration=timedelta(seconds=GRACE_S),
        now_getter=lambda: STILL, to_system_utc=lambda _: None,
    )  # fmt: skip
    windower = TumblingWindower(length=timedelta(seconds=WINDOW_S), align_to=EPOCH)
    windows = fold_window("count", first, clock, windower, Counter, count_page, lambda a, b: a + b)
    # (partition, (window id, Counter of pages))
    out = op.flat_map("rows", windows.down, result_messages)
    kop.output("results", out, brokers=[args.bootstrap], topic=f"{args.group}-pageviews")
    return flow


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.bytewax_pageviews")
    parser.add_argument("--bootstrap", required=True, help="host:port of the broker")
    parser.add_argument("--topic", required=True, help="click events topic")
    parser.add_argument("--group", required=True, help="run id: names its output topic")
    parser.add_argument("--progress", type=Path, required=True, help="progress file to write")
    parser.add_argument("--expected", type=int, required=True, help="messages in the topic")
    parser.add_argument("--max-seconds", type=float, default=600.0)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args(sys.argv[1:])
    started = time.monotonic()
    read = ReadCount(ProgressFile(args.progress, args.expected))
    create_topic(args.bootstrap, f"{args.group}-pageviews")
    cli_main(build_flow(args, read), workers_per_process=1)  # to the topic's end
    read.done()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    time.sleep(max(0.0, args.max_seconds - (time.monotonic() - started)))


if __name__ == "__main__":
    main()
