"""Quix Streams (3.28, the `bench` extra) as a peer, on the bench's page-view query
(bench/page_view_oracle.py): page views per page in 60 s event-time tumbling windows with a 30 s
grace, per source partition, each window emitted once, when it closes.

  clicks                 key user_id, value the JSON bytes
  -> apply               PageView(event_id, page, occurred_at_ms), or None: not a valid page view
                         (streams.validation, the rule our worker applies; page = page_of(url))
  -> filter              drop the Nones
  -> filter, stateful    the first sight of each event_id (per user: the ids of the last hour)
  -> re-key to the page  in place, no repartition topic: what Quix's own group_by does for a
                         one-partition topic, so each source partition counts its own windows
  -> set_timestamp       occurred_at is the event time
  -> tumbling_window(60 s, grace 30 s).count().final(closing_strategy="partition")
  -> apply               {"partition", "start", "page", "views"}
  -> <group>-pageviews   one record per window and page

closing_strategy="partition" gives each source partition one clock (its latest page view), as
ours has; Quix's default, "key", would close a page's window only at that page's next view
(never, for a page seen once) and judge lateness per page. Event time is set after validation
rather than by the topic's timestamp extractor: validation bounds `occurred_at` by the record's
own timestamp, which the extractor would have replaced. --guarantee exactly-once makes each
checkpoint a Kafka transaction (state changelogs, results and offsets together).

Run as `python -m bench.quix_pageviews --bootstrap ... --topic ... --group ... --progress FILE`
(the bench does): it reports messages processed to FILE after each one (bench.progress) and
stops on SIGTERM, committing what it processed, or by itself after --max-seconds. Nothing
listens on a port.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any, NamedTuple

from quixstreams import Application, State, message_context
from quixstreams.models import TopicConfig

from agents.clicks import page_of
from bench.page_view_oracle import GRACE_S, PAGE_VIEW, WINDOW_S
from bench.progress import ProgressFile
from streams.validation import InvalidEvent, parse_click_fields

DEDUP_HORIZON_MS = 3_600_000  # event time an event_id is remembered, as CLICKSTREAM_DEDUP_HORIZON
SEEN = "seen"  # state key, per user: event_id -> occurred_at ms
GUARANTEES = ("at-least-once", "exactly-once")


class PageView(NamedTuple):
    event_id: str
    page: str
    occurred_at_ms: int


def page_view_of(value: bytes, key: Any, timestamp: int, headers: Any) -> PageView | None:
    try:
        click = parse_click_fields(value, timestamp)
    except InvalidEvent:
        return None
    if click.type is not PAGE_VIEW:
        return None
    return PageView(click.event_id, page_of(click.url), click.occurred_at_ms)


def first_sight(view: PageView, state: State) -> bool:
    """True the first time this user's state sees the event_id; forgets ids an hour older."""
    seen: dict[str, int] = state.get(SEEN, {})
    if view.event_id in seen:
        return False
    horizon = view.occurred_at_ms - DEDUP_HORIZON_MS
    kept = {event_id: at for event_id, at in seen.items() if at >= horizon}
    kept[view.event_id] = view.occurred_at_ms
    state.set(SEEN, kept)
    return True


def result_row(window: dict[str, Any], key: Any, timestamp: int, headers: Any) -> dict[str, Any]:
    """A closed window of one page -> the record the bench reads back."""
    partition = message_context().partition  # the source partition whose clock closed it
    return {"partition": partition, "start": window["start"], "page": key, "views": window["value"]}


def build_app(args: argparse.Namespace) -> Application:
    progress = ProgressFile(args.progress, args.expected)
    processed = 0

    def report(topic: str, partition: int, offset: int) -> None:
        nonlocal processed
        processed += 1
        progress.maybe_report(processed)

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=str(args.state_dir),
        processing_guarantee=args.guarantee,
        on_message_processed=report,
        loglevel="WARNING",
    )
    clicks = app.topic(args.topic, value_deserializer="bytes", key_deserializer="bytes")
    results = app.topic(
        f"{args.group}-pageviews",
        value_serializer="json",
        key_serializer="str",
        config=TopicConfig(num_partitions=1, replication_factor=1),
    )
    sdf = app.dataframe(clicks)
    sdf = sdf.apply(page_view_of, metadata=True)
    sdf = sdf.filter(lambda view: view is not None)
    sdf = sdf.filter(first_sight, stateful=True)
    # Quix's group_by without its repartition topic: the page becomes the key in place
    sdf = sdf._single_partition_groupby("page", lambda view: view.page)
    sdf = sdf.set_timestamp(lambda view, key, timestamp, headers: view.occurred_at_ms)
    windows = sdf.tumbling_window(
        WINDOW_S * 1000,
        grace_ms=GRACE_S * 1000,
        on_late=lambda *late: False,  # no log line
    )
    sdf = windows.count().final(closing_strategy="partition")
    sdf = sdf.apply(result_row, metadata=True)
    sdf.to_topic(results)
    return app


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.quix_pageviews")
    parser.add_argument("--bootstrap", required=True, help="host:port of the broker")
    parser.add_argument("--topic", required=True, help="click events topic")
    parser.add_argument("--group", required=True, help="consumer group; names its topics")
    parser.add_argument("--state-dir", type=Path, required=True, help="local state folder")
    parser.add_argument("--progress", type=Path, required=True, help="progress file to write")
    parser.add_argument("--expected", type=int, required=True, help="messages in the topic")
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--guarantee", choices=GUARANTEES, default="at-least-once")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args(sys.argv[1:])
    app = build_app(args)
    overdue = threading.Timer(args.max_seconds, app.stop)  # the bench is gone by then
    overdue.daemon = True
    overdue.start()
    app.run()


if __name__ == "__main__":
    main()
