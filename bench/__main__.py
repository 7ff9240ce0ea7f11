"""`python -m bench`: generate click data once, then run each contender on it in turn, round
after round, and report median throughput and paired ratios (table on stdout; JSON, chart and
logs under var/bench/). The clicks topic is read back once and the page-view query worked out
from it (bench/page_view_oracle.py); each page-view contender's counts, read once its run has
stopped, must equal it: the table says exact or WRONG per contender.

  python -m bench [--events N] [--rounds R] [--contenders a,b,c] [--partitions P]
                  [--timeout S] [--seed K]
  python -m bench --scenario backfill [--events N] [--rounds R] [--partitions P]
                  [--timeout S] [--seed K]

`--scenario backfill` (bench/backfill.py, bench/backfill_run.py) times an import instead. The
same N generated events (no faults; the generator's fraud scenarios and legacy orders as by
default) are laid out two ways, each in its own input topics, produced in event-time order
with record timestamps of the time they are sent: packed into one hour of event time, or
sparse over 30+ days (the one-minute panes moved about half a day apart, each pane keeping its
events). After the data, one flush record per input partition, far enough ahead in event time
to close every window and session of the data at once (no wait for the idle clock). Per round
each layout is imported by the `clickstream` contender (full click metric set) under a fresh
app id, and measured from the worker's spawn:

  import s       until `<app>-window-totals` holds a total for every window of the data (these
                 need every input partition to have passed the data, which only its flush does,
                 so the whole input is consumed by then)
  first total s  until the first of them; processing s = import s - first total s
  committed s    until the app's group has committed the input topics' end offsets (the run
                 also waits for this; Faust commits every few seconds, so it lags)

Each run's derived topics are then read and checked against what the events imply: exactly
one total per window with data (clicks, orders, funnel; tumbling and hopping), exactly one
window result per window and source partition with data, each clicks total counting its
pane's clicks, one session summary per user session, no dead letters or late events. The table
gives per run the times and the derived record counts (window results, progress records,
totals, sessions), which follow the data, not the ~43,000 minutes of event time, and the median
over rounds of sparse / packed import time and processing time (also
var/bench/<stamp>-backfill.json, worker logs beside it). --events may be as low as 2,000 here
(10,000 for throughput); --contenders does not apply.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, NoReturn

from bench.backfill_run import main_backfill
from bench.chart import write_chart
from bench.contenders import CONTENDERS, ROOT, Target
from bench.harness import local_services, produce_data, run_once, warm_up_broker
from bench.outputs import source_records
from bench.page_view_oracle import expected_pageviews, page_views_of
from bench.report import RunResult, ratios, render_table, summarize, to_json
from clickstream.kafka_admin import KafkaUnreachable
from clickstream.local.process import LocalServiceError
from generator.produce import ProduceError

DEFAULT_EVENTS = 200_000  # the issue-14 set of 7 contenders: ~7 min for 3 rounds on 2 cores
MIN_THROUGHPUT_EVENTS = 10_000  # a shorter steady part is too short to tell
DEFAULT_TIMEOUT_S = 600  # the naive full-set peer needs ~250 s for the default events
OUT = ROOT / "var" / "bench"


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"bench: {message} (see python -m bench --help)", file=sys.stderr)
        sys.exit(2)


def _contender_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in CONTENDERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown contender {', '.join(unknown) or '(none)'}; choose from "
            f"{', '.join(CONTENDERS)}"
        )
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"a contender is named twice in {text!r}")
    return names


def _bounded_int(low: int, high: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{high}")
        return value

    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = OneLineParser(
        prog="python -m bench",
        description="Throughput of the clickstream worker against its peers, side by side.",
    )
    parser.add_argument(
        "--scenario", choices=("throughput", "backfill"), default="throughput",
        help="throughput: the contenders side by side (default); backfill: the import time "
        "of the same events sparse over 30+ days or packed into one hour",
    )  # fmt: skip
    parser.add_argument(
        "--events", type=_bounded_int(2_000, 10_000_000), default=DEFAULT_EVENTS,
        help=f"generator emissions to produce once (~99%% clicks); default {DEFAULT_EVENTS:,}",
    )  # fmt: skip
    parser.add_argument(
        "--rounds", type=_bounded_int(1, 20), default=3,
        help="rounds; each runs every contender once, in rotating order (default 3)",
    )  # fmt: skip
    parser.add_argument(
        "--contenders", type=_contender_list, default=None,
        help=f"comma-separated, from {','.join(CONTENDERS)} (default all; throughput only)",
    )  # fmt: skip
    parser.add_argument(
        "--partitions", type=_bounded_int(1, 64), default=4,
        help="partitions of the input topics (default 4)",
    )  # fmt: skip
    parser.add_argument(
        "--timeout", type=_bounded_int(10, 3600), default=DEFAULT_TIMEOUT_S,
        help="seconds one run may take before it is stopped and counted as failed "
        f"(default {DEFAULT_TIMEOUT_S})",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    args = parser.parse_args(argv)
    if args.scenario == "backfill":
        if args.contenders is not None:
            parser.error("argument --contenders: not with --scenario backfill")
    else:
        if args.events < MIN_THROUGHPUT_EVENTS:
            parser.error(
                f"argument --events: {args.events} is outside {MIN_THROUGHPUT_EVENTS}..10000000"
            )
        if args.contenders is None:
            args.contenders = list(CONTENDERS)
    return args


def versions() -> dict[str, str]:
    """The peers' packages that are installed (quixstreams and bytewax: the `bench` extra)."""
    found = {}
    peers = ("faust-streaming", "aiokafka", "orjson", "quixstreams", "bytewax", "confluent-kafka")
    for package in peers:
        with contextlib.suppress(PackageNotFoundError):
            found[package] = version(package)
    return found


def run_rounds(args: argparse.Namespace, target: Target, home: Path, logs: Path) -> list[RunResult]:
    results = []
    names: list[str] = args.contenders
    for round in range(1, args.rounds + 1):
        shift = (round - 1) % len(names)  # rotate, so no contender always runs first
        for name in names[shift:] + names[:shift]:
            folder, log = home / f"{round}-{name}", logs / f"{round}-{name}.log"
            results.append(
                run_once(CONTENDERS[name], target, round, args.rounds, folder, log, args.timeout)
            )
            if results[-1].error:
                print(f"bench: {name} round {round}: {results[-1].error}", file=sys.stderr)
    return results


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C: contenders, Kafka, Redis


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    # aiokafka's warnings while the fresh broker elects a group coordinator are expected here
    logging.getLogger("aiokafka").addHandler(logging.NullHandler())
    if args.scenario == "backfill":
        return main_backfill(args)
    started = datetime.now(UTC)
    began = time.monotonic()
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    logs = OUT / f"{stamp}-logs"
    logs.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="clickstream-bench-") as tmp,
            local_services(Path(tmp)) as (kafka, redis_server),
        ):
            produced = produce_data(
                kafka.bootstrap, "bench-clicks", "bench-orders", args.partitions, args.events,
                args.seed,
            )  # fmt: skip
            warm_up_broker(kafka.bootstrap, "bench-clicks")
            page_views = expected_pageviews(
                page_views_of(source_records(kafka.bootstrap, "bench-clicks"))
            )
            print(
                f"bench: the page-view query on the clicks topic: {page_views.summary()}",
                file=sys.stderr,
            )
            target = Target(
                kafka.bootstrap, redis_server.url, "bench-clicks", "bench-orders",
                args.partitions, produced.by_stream["clicks"], max_seconds=args.timeout + 60,
                page_views=page_views,
            )  # fmt: skip
            results = run_rounds(args, target, Path(tmp), logs)
    except KeyboardInterrupt:
        print("bench: interrupted; contenders, Kafka and Redis stopped", file=sys.stderr)
        return 130
    except (LocalServiceError, KafkaUnreachable, ProduceError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    took = time.monotonic() - began
    summaries = summarize(results, args.contenders)
    pairs = ratios(results)
    meta = {
        "started_at": started.isoformat(),
        "duration_s": round(took, 1),
        "events": args.events,
        "clicks_messages": target.expected,
        "produced": produced.summary(),
        "page_view_query": page_views.summary(),
        "rounds": args.rounds,
        "partitions": args.partitions,
        "contenders": args.contenders,
        "seed": args.seed,
        "cpus": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "python": platform.python_version(),
        "versions": versions(),
    }
    print(
        f"{target.expected:,} click messages ({args.events:,} emissions), {args.rounds} rounds, "
        f"{args.partitions} partitions, {os.cpu_count()} CPUs; run took {took / 60:.1f} min; "
        f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}\n"
    )
    print(render_table(summaries, pairs))
    report = OUT / f"{stamp}.json"
    report.write_text(json.dumps(to_json(meta, results, summaries, pairs), indent=2) + "\n")
    title = (
        f"Steady throughput, median of {args.rounds} rounds, {target.expected:,} click messages, "
        f"{args.partitions} partitions"
    )
    written = [report, *write_chart(summaries, title, OUT / f"{stamp}.html"), logs]
    print("\nwrote " + ", ".join(str(path.relative_to(ROOT)) for path in written))
    return 0 if all(r.error is None for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
