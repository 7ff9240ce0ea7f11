"""The backfill scenario (`python -m bench --scenario backfill`), its pure parts: one set of
generated events laid out two ways in event time, what the worker must derive from each
layout, the check of what it did derive, and the report.

Layouts; both start at the same window-aligned time S, 32 days before the bench runs:

  packed  the generated events as generated: N emissions inside one hour of event time (the
          generator's rate is N per 55 minutes; emissions past the hour would be dropped)
  sparse  the same events; the time they fill is cut into its windows (panes: 60 s each by
          default, ~55 of them) and pane i moves to S + i * stride, stride a whole number of
          windows chosen so that the first and the last event are at least 30 days apart
          (~800 minutes). An event keeps its offset inside its pane, so every pane holds the
          same events in both layouts, and generation order is event-time order in both

The generated events have no faults (no duplicates, late, out-of-order or malformed records;
fraud scenarios and legacy v1 orders as by default), so every one is accepted on time. Their
Kafka record timestamps are the time they are produced, as an importer sending old events
would have them. After the data, every partition of both input topics gets one flush record
(a valid click or order, `bench-flush-*` ids) so far ahead in event time (last pane + session
gap + hop + grace + 2 windows) that its watermark closes every window and session of the data
at once, without waiting for the idle clock; no window of the data contains the flush's pane,
and the windows that do are left out of every count here.

What the worker must derive (the README's rules): a tumbling result per (stream, pane,
source partition) with data, a session's expiry counted in the pane holding its last click +
gap; hopping windows = every run of hop/window consecutive panes holding such a pane; one
total per window with data and stream (clicks, orders), and a funnel total per window either
has; one session summary per user session (clicks less than the gap apart).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from statistics import median
from typing import Any

import orjson

SCENARIOS = ("sparse", "packed")
DAY_MS = 86_400_000
PACKED_SPAN_MS = 3_600_000  # the packed layout: one hour of event time
SPARSE_SPAN_MS = 30 * DAY_MS  # the sparse layout spans at least this much
LEAD_MS = 32 * DAY_MS  # S is this long before now: the sparse data and its flush are in the past
RATE_MARGIN = 1.1  # generated rate N / hour * this, so that N emissions fit in the hour
TIME_FIELDS = ("occurred_at", "createdAt")  # a click or v2 order; a legacy v1 order
STREAMS = ("clicks", "orders")
KINDS = ("tumbling", "hopping")
FLUSH = "bench-flush"
COUNTED = ("results", "progress", "totals", "sessions")  # the derived records in the table
# Dead letters that are no fault of the data: a tick an earlier round's worker appended to the
# shared input topics (while ticks live there), foreign to every later app id
NOT_DATA = frozenset({"foreign_tick"})

Part = tuple[str, str, int, int]  # (stream, kind, window start ms, source partition)
Window = tuple[str, str, int]  # (stream, kind, window start ms)


def window_start(ms: int, window_ms: int) -> int:
    return ms - ms % window_ms


def sparse_stride_ms(window_ms: int, panes: int, span_ms: int = SPARSE_SPAN_MS) -> int:
    """Distance between the starts of consecutive panes of the sparse layout: whole windows,
    so that the first and the last event (somewhere in the first and the last of `panes`
    panes) are at least span_ms apart: (panes - 1) * stride - window >= span_ms."""
    if panes < 2:
        raise ValueError(f"the events fill {panes} pane of {window_ms} ms: nothing to spread")
    gap = math.ceil((span_ms + window_ms) / (panes - 1))
    return math.ceil(gap / window_ms) * window_ms


@dataclass(frozen=True)
class Layout:
    """Where each event of the packed hour starting at start_ms goes in event time."""

    name: str
    start_ms: int  # window-aligned
    window_ms: int
    stride_ms: int  # between the starts of consecutive panes; window_ms = the hour unchanged

    def at(self, ms: int) -> int:
        pane = (ms - self.start_ms) // self.window_ms
        return ms + pane * (self.stride_ms - self.window_ms)


def start_ms(now_ms: int, window_ms: int) -> int:
    """Where both layouts start: window-aligned, LEAD_MS before now."""
    return window_start(now_ms - LEAD_MS, window_ms)


def layouts(start: int, last_ms: int, window_ms: int) -> dict[str, Layout]:
    """Both layouts of events generated from `start` (window-aligned) to last_ms."""
    panes = (window_start(last_ms, window_ms) - start) // window_ms + 1
    return {
        "sparse": Layout("sparse", start, window_ms, sparse_stride_ms(window_ms, panes)),
        "packed": Layout("packed", start, window_ms, window_ms),
    }


def iso_ms(ms: int) -> str:
    """Epoch ms as the events write it: 2026-01-05T10:00:00.000Z."""
    seconds, millis = divmod(ms, 1000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{millis:03d}Z"


def retimed(value: bytes, at_ms: int) -> bytes:
    """The event's JSON with its own time set to at_ms (nothing else changes)."""
    body = orjson.loads(value)
    named = [name for name in TIME_FIELDS if name in body]
    if not isinstance(body, dict) or not named:
        raise ValueError(f"no {' or '.join(TIME_FIELDS)} in {value[:80]!r}")
    body[named[0]] = iso_ms(at_ms)
    return orjson.dumps(body)


def flush_key(partition: int, partition_of: Callable[[bytes], int]) -> bytes:
    """The first `bench-flush-<n>` user id whose key the partitioner puts in `partition`."""
    for n in range(100_000):
        key = f"{FLUSH}-{n}".encode()
        if partition_of(key) == partition:
            return key
    raise ValueError(f"no flush key found for partition {partition}")


def flush_value(stream: str, key: bytes, at_ms: int, tag: str) -> bytes:
    """A valid click or v2 order of user `key` at at_ms; tag makes its event_id unique."""
    user = key.decode()
    device = {"id": f"d-{user}", "kind": "desktop", "user_agent": "bench", "ip": "192.0.2.1"}
    common = {"event_id": f"{user}-{stream}-{tag}", "user_id": user, "session_id": f"s-{user}"}
    if stream == "clicks":
        body: dict[str, Any] = {
            "schema": "click", "version": 1, **common, "type": "page_view", "url": f"/{FLUSH}",
            "referrer": None, "device": device, "occurred_at": iso_ms(at_ms),
        }  # fmt: skip
    else:
        body = {
            "schema": "OrderCreated", "version": 2, **common, "id": 1, "amount": "1.00",
            "currency": "EUR", "items": [{"sku": FLUSH, "quantity": 1, "unit_price": "1.00"}],
            "payment": {"method": "card", "card_fingerprint": "fp-bench", "card_country": "DE"},
            "device": device, "occurred_at": iso_ms(at_ms),
        }  # fmt: skip
    return orjson.dumps(body)


@dataclass
class Expected:
    """What the worker must derive from the events added, in event-time order per user."""

    window_ms: int
    hop_ms: int
    grace_ms: int
    gap_ms: int | None  # session gap; None: the sessions metric is off
    events: Counter[str] = field(default_factory=Counter)  # per stream
    clicks: Counter[int] = field(default_factory=Counter)  # tumbling pane -> clicks in it
    panes: dict[str, set[tuple[int, int]]] = field(
        default_factory=lambda: defaultdict(set)
    )  # stream -> {(pane, partition)} with events
    first_ms: int | None = None
    last_ms: int | None = None
    _sessions: list[tuple[int, int]] = field(default_factory=list)  # closed: (partition, end)
    _open: dict[str, tuple[int, int]] = field(default_factory=dict)  # user -> (partition, last)

    def add(self, stream: str, partition: int, user: str, at_ms: int) -> None:
        pane = window_start(at_ms, self.window_ms)
        self.events[stream] += 1
        self.panes[stream].add((pane, partition))
        self.first_ms = at_ms if self.first_ms is None else min(self.first_ms, at_ms)
        self.last_ms = at_ms if self.last_ms is None else max(self.last_ms, at_ms)
        if stream != "clicks":
            return
        self.clicks[pane] += 1
        if self.gap_ms is not None:
            last = self._open.get(user)
            if last is not None and at_ms - last[1] >= self.gap_ms:
                self._sessions.append(last)
            self._open[user] = (partition, max(at_ms, last[1]) if last else at_ms)

    @property
    def sessions(self) -> list[tuple[int, int]]:
        """(partition, end ms) of every session, once all of them have ended."""
        return self._sessions + list(self._open.values())

    @property
    def flush_ms(self) -> int:
        """Event time of the flush records: every window and session of the data closes there."""
        if self.last_ms is None:
            raise ValueError("no events")
        gap = self.gap_ms or 0
        last = window_start(self.last_ms, self.window_ms)
        return last + gap + self.hop_ms + self.grace_ms + 2 * self.window_ms

    def in_data(self, start_ms: int) -> bool:
        """A window starting here does not hold the flush's pane (hopping windows included)."""
        flush_pane = window_start(self.flush_ms, self.window_ms)
        return start_ms < flush_pane - self.hop_ms + self.window_ms

    def tumbling(self) -> dict[str, set[tuple[int, int]]]:
        """stream -> {(pane, partition)} with a result: events, or sessions that expired there."""
        out = {stream: set(self.panes.get(stream, ())) for stream in STREAMS}
        if self.gap_ms is not None:
            for partition, end in self.sessions:
                out["clicks"].add((window_start(end + self.gap_ms, self.window_ms), partition))
        return out

    def results(self) -> set[Part]:
        """Every (stream, kind, start, partition) that must get a window result."""
        out: set[Part] = set()
        span = self.hop_ms // self.window_ms
        for stream, panes in self.tumbling().items():
            for pane, partition in panes:
                out.add((stream, "tumbling", pane, partition))
                for k in range(span):
                    out.add((stream, "hopping", pane - k * self.window_ms, partition))
        return out

    def totals(self) -> set[Window]:
        """Every (stream, kind, start) that must get a window total, funnel included."""
        out = {(stream, kind, start) for stream, kind, start, _ in self.results()}
        out |= {("funnel", kind, start) for _, kind, start in out}
        return out

    def summary(self) -> dict[str, Any]:
        first, last = self.first_ms or 0, self.last_ms or 0
        return {
            "events": dict(self.events),
            "first": iso_ms(first),
            "last": iso_ms(last),
            "span_minutes": round((last - first) / 60_000, 1),
            "panes_with_clicks": len(self.clicks),
            "results": len(self.results()),
            "totals": len(self.totals()),
            "sessions": len(self.sessions) if self.gap_ms is not None else None,
        }


def _start_ms(record: dict[str, Any]) -> int:
    return round(datetime.fromisoformat(record["start"]).timestamp() * 1000)


@dataclass
class Derived:
    """What one run wrote to its derived topics, for the data's windows."""

    results: Counter[Part] = field(default_factory=Counter)  # records per part
    progress: int = 0  # progress records in the results topic
    totals: Counter[Window] = field(default_factory=Counter)
    click_totals: dict[int, int] = field(default_factory=dict)  # pane -> clicks its total counts
    sessions: Counter[str] = field(default_factory=Counter)  # records per summary id
    dead_letters: Counter[str] = field(default_factory=Counter)  # per reason header
    late_events: int = 0
    flush_windows: int = 0  # results and totals of windows holding the flush's pane (not counted)

    def counts(self) -> dict[str, int]:
        return {
            "results": sum(self.results.values()),
            "progress": self.progress,
            "totals": sum(self.totals.values()),
            "sessions": sum(self.sessions.values()),
            "dead_letters": sum(n for r, n in self.dead_letters.items() if r not in NOT_DATA),
            "late_events": self.late_events,
            "foreign_ticks": self.dead_letters["foreign_tick"],
        }


def derive(
    expected: Expected,
    results: Iterable[bytes],
    totals: Iterable[bytes],
    sessions: Iterable[bytes],
    dead_letters: Iterable[str],
    late_events: int,
) -> Derived:
    """Decode the records of a run's results, totals and sessions topics (by their contracts)."""
    out = Derived(dead_letters=Counter(dead_letters), late_events=late_events)
    for value in results:
        record = orjson.loads(value)
        if record["kind"] == "progress":
            out.progress += 1
        elif expected.in_data(start := _start_ms(record)):
            out.results[record["stream"], record["kind"], start, record["partition"]] += 1
        else:
            out.flush_windows += 1
    for value in totals:
        record = orjson.loads(value)
        start = _start_ms(record)
        if not expected.in_data(start):
            out.flush_windows += 1
            continue
        out.totals[record["stream"], record["kind"], start] += 1
        if (record["stream"], record["kind"]) == ("clicks", "tumbling"):
            out.click_totals[start] = sum(record.get("clicktypes", {}).values())
    for value in sessions:
        record = orjson.loads(value)
        if not str(record["user_id"]).startswith(FLUSH):
            out.sessions[record["id"]] += 1
    return out


def _listed(what: str, items: Iterable[Any]) -> str | None:
    items = sorted(items)
    if not items:
        return None
    shown = ", ".join("/".join(map(str, item)) for item in items[:3])
    return f"{len(items)} {what} ({shown}{', ...' if len(items) > 3 else ''})"


def check(expected: Expected, derived: Derived) -> list[str]:
    """What is wrong with a run's output; empty when it is right."""
    want_totals, want_results = expected.totals(), expected.results()
    miscounted = [
        (pane, n, expected.clicks.get(pane, 0))
        for pane, n in derived.click_totals.items()
        if n != expected.clicks.get(pane, 0)
    ]
    problems = [
        _listed("window totals missing", want_totals - derived.totals.keys()),
        _listed("unexpected window totals", derived.totals.keys() - want_totals),
        _listed("window totals sent twice", (k for k, n in derived.totals.items() if n > 1)),
        _listed("window results missing", want_results - derived.results.keys()),
        _listed("unexpected window results", derived.results.keys() - want_results),
        _listed("window results sent twice", (k for k, n in derived.results.items() if n > 1)),
        _listed("clicks totals (pane/counted/due) with another click count", miscounted),
    ]
    if expected.gap_ms is not None and len(derived.sessions) != len(expected.sessions):
        summarised, due = len(derived.sessions), len(expected.sessions)
        problems.append(f"{summarised} sessions summarised, {due} due")
    problems.append(
        _listed("sessions summarised twice", ((k,) for k, n in derived.sessions.items() if n > 1))
    )
    dead = derived.counts()["dead_letters"]
    if dead or derived.late_events:
        problems.append(f"{dead} dead letters, {derived.late_events} late events")
    return [p for p in problems if p]


@dataclass(frozen=True)
class BackfillRun:
    scenario: str
    round: int  # 1-based
    import_s: float | None  # worker spawned -> every total of the data seen
    first_total_s: float | None  # worker spawned -> the first total of the data seen
    committed_s: float | None  # worker spawned -> input end offsets seen committed
    counts: dict[str, int]  # Derived.counts()
    error: str | None = None  # failed run: timeout, exit, wrong output

    @property
    def processing_s(self) -> float | None:
        """The part of the import after the first total: what the data itself costs."""
        if self.error is not None or self.import_s is None or self.first_total_s is None:
            return None
        return self.import_s - self.first_total_s

    @property
    def ok(self) -> bool:
        return self.error is None and self.import_s is not None


@dataclass(frozen=True)
class Ratio:
    what: str
    per_round: tuple[float, ...]  # rounds where both scenarios ran to completion
    median: float | None


def ratio(runs: Iterable[BackfillRun], what: str = "import_s") -> Ratio:
    """sparse / packed of `what` (import_s or processing_s) per round, and its median."""
    times: dict[tuple[str, int], float] = {}
    for run in runs:
        value = getattr(run, what)
        if run.ok and value:
            times[run.scenario, run.round] = value
    rounds = sorted({rnd for _, rnd in times})
    per_round = tuple(
        times["sparse", rnd] / times["packed", rnd]
        for rnd in rounds
        if ("sparse", rnd) in times and ("packed", rnd) in times
    )
    return Ratio(what, per_round, median(per_round) if per_round else None)


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def render(runs: Sequence[BackfillRun], expected: dict[str, dict[str, Any]]) -> str:
    """The plain-text result: what each layout must derive, one row per run, the ratios."""
    lines = []
    for name, want in expected.items():
        events = ", ".join(f"{n:,} {stream}" for stream, n in sorted(want["events"].items()))
        lines.append(
            f"{name:<6}  {events}; event time {want['first']} .. {want['last']} "
            f"({want['span_minutes']:,} min), {want['panes_with_clicks']} panes with clicks; "
            f"due: {want['results']:,} results, {want['totals']:,} totals, "
            f"{'-' if want['sessions'] is None else format(want['sessions'], ',')} sessions"
        )
    header = ("scenario", "round", "import s", "first total s", "processing s", "committed s",
              "results", "progress", "totals", "sessions", "check")  # fmt: skip
    rows = [
        (
            run.scenario,
            str(run.round),
            _number(run.import_s),
            _number(run.first_total_s),
            _number(run.processing_s),
            _number(run.committed_s),
            *(f"{run.counts[k]:,}" if k in run.counts else "-" for k in COUNTED),
            "ok" if run.error is None else run.error,
        )
        for run in runs
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header) - 1)]
    table = [
        "  ".join(
            [
                *(
                    c.ljust(w) if i == 0 else c.rjust(w)
                    for i, (c, w) in enumerate(zip(row[:-1], widths, strict=True))
                ),
                row[-1],
            ]
        )
        for row in (header, *rows)
    ]
    table.insert(1, "  ".join("-" * w for w in widths) + "  -----")
    lines += ["", *table, ""]
    for label, what in (("import time", "import_s"), ("processing time", "processing_s")):
        r = ratio(runs, what)
        value = "-" if r.median is None else f"{r.median:.2f}x"
        rounds = ", ".join(f"{x:.2f}" for x in r.per_round) or "none complete"
        lines.append(f"sparse / packed {label:<15}  {value:>6}  (per round: {rounds})")
    return "\n".join(lines)


def to_json(
    meta: dict[str, Any], runs: Sequence[BackfillRun], expected: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    return {
        **meta,
        "expected": expected,
        "runs": [{**asdict(r), "processing_s": r.processing_s} for r in runs],
        "ratios": [asdict(ratio(runs, what)) for what in ("import_s", "processing_s")],
    }
