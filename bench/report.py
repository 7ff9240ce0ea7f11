"""Pure arithmetic and rendering of a bench run: medians per contender, paired ratios, a table.

Throughput of a run = messages processed / seconds, over the steady part only: from the first
observation of a processed message to the first observation of all of them (startup and the
first rebalance excluded, reported apart). A ratio a / b is taken per round (both ran
back to back, so machine noise hits both alike) and its median reported. A run's output is the
verdict on the page views it counted (bench/page_view_oracle.py): a contender is "exact" only
when every run of it was; one wrong run makes it WRONG, whatever its speed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from statistics import median
from typing import Any

# (numerator, denominator): how much faster our worker is than the naive peer doing the same
# work (the full click metric set; page views only), and how far below the plain loop's
# page-view ceiling it stays (like for like, and with the full set)
RATIO_PAIRS: tuple[tuple[str, str], ...] = (
    ("clickstream", "faust-naive-full"),
    ("clickstream-pageviews", "faust-naive"),
    ("aiokafka-loop", "clickstream-pageviews"),
    ("aiokafka-loop", "clickstream"),
    ("clickstream", "clickstream-with-fraud"),  # what fraud scoring beside costs the analytics
    # the peers on the same page-view query (Quix at least once and exactly once, Bytewax);
    # the loop's lead over them
    ("clickstream-pageviews", "quix"),
    ("clickstream-pageviews", "quix-eos"),
    ("clickstream-pageviews", "bytewax"),
    ("clickstream", "quix"),
    ("quix", "quix-eos"),
    ("quix", "faust-naive"),
    ("bytewax", "quix"),
    ("aiokafka-loop", "quix"),
    ("aiokafka-loop", "bytewax"),
)


@dataclass(frozen=True)
class RunResult:
    contender: str
    round: int  # 1-based
    events: int  # messages the run had to process
    startup_s: float | None  # spawn -> first processed message observed
    steady_s: float | None  # first processed message -> all processed
    steady_events: int  # messages processed during steady_s
    error: str | None = None  # why the run has no throughput (timeout, exit, too fast)
    output: str | None = None  # "exact (...)" or "WRONG: ..."; None: not checked

    @property
    def rate(self) -> float | None:
        """Messages per second over the steady part; None for a failed run."""
        if self.error is not None or not self.steady_s or self.steady_events <= 0:
            return None
        return self.steady_events / self.steady_s


def run_result(
    contender: str,
    round: int,
    events: int,
    spawned_at: float,
    first: tuple[int, float] | None,
    done_at: float | None,
    error: str | None = None,
) -> RunResult:
    """A RunResult from the observed times: first = (count, time) of the first observation."""
    if error is None and (first is None or done_at is None):
        error = "did not finish"
    if error is None and first is not None and done_at is not None and done_at <= first[1]:
        error = "all messages processed before a second observation; use more --events"
    startup = first[1] - spawned_at if first is not None else None
    steady = done_at - first[1] if first is not None and done_at is not None else None
    steady_events = events - first[0] if first is not None else 0
    return RunResult(contender, round, events, startup, steady, steady_events, error)


@dataclass(frozen=True)
class Summary:
    contender: str
    runs: int
    ok: int
    median_rate: float | None
    min_rate: float | None
    max_rate: float | None
    median_startup_s: float | None
    output: str | None = None  # over its runs: exact, WRONG, or None when none was checked


@dataclass(frozen=True)
class Ratio:
    numerator: str
    denominator: str
    per_round: tuple[float, ...]  # rounds where both ran to completion
    median: float | None


def _median(values: Sequence[float]) -> float | None:
    return median(values) if values else None


def verdict(outputs: Sequence[str | None]) -> str | None:
    """One verdict for a contender's runs: the first WRONG one (with how many were), else the
    first exact one; None when no run was checked."""
    checked = [o for o in outputs if o is not None]
    wrong = [o for o in checked if not o.startswith("exact")]
    if wrong:
        return wrong[0] if len(checked) == 1 else f"{len(wrong)}/{len(checked)} runs {wrong[0]}"
    return checked[0] if checked else None


def summarize(results: Iterable[RunResult], contenders: Sequence[str]) -> list[Summary]:
    results = list(results)
    summaries = []
    for name in contenders:
        runs = [r for r in results if r.contender == name]
        rates = [r.rate for r in runs if r.rate is not None]
        startups = [r.startup_s for r in runs if r.rate is not None and r.startup_s is not None]
        summaries.append(
            Summary(
                name,
                len(runs),
                len(rates),
                _median(rates),
                min(rates, default=None),
                max(rates, default=None),
                _median(startups),
                verdict([r.output for r in runs]),
            )
        )
    return summaries


def ratios(
    results: Iterable[RunResult], pairs: Sequence[tuple[str, str]] = RATIO_PAIRS
) -> list[Ratio]:
    """Per-round ratios of each pair whose contenders both ran; pairs not measured are left out."""
    rates: dict[tuple[str, int], float] = {}
    names = set()
    for r in results:
        names.add(r.contender)
        if r.rate is not None:
            rates[r.contender, r.round] = r.rate
    out = []
    for numerator, denominator in pairs:
        if numerator not in names or denominator not in names:
            continue
        rounds = sorted({rnd for _, rnd in rates})
        per_round = tuple(
            rates[numerator, rnd] / rates[denominator, rnd]
            for rnd in rounds
            if (numerator, rnd) in rates and (denominator, rnd) in rates
        )
        out.append(Ratio(numerator, denominator, per_round, _median(per_round)))
    return out


def _number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _short(output: str | None) -> str:
    """The table's output column: exact, WRONG, or - (not checked)."""
    if output is None:
        return "-"
    return "exact" if output.startswith("exact") else "WRONG"


def render_table(summaries: Sequence[Summary], pairs: Sequence[Ratio]) -> str:
    """The plain-text result: one row per contender, one line per ratio, then the verdict on
    each checked contender's output in full."""
    header = ("contender", "median msg/s", "min..max msg/s", "startup s", "output", "runs ok")
    rows = [
        (
            s.contender,
            _number(s.median_rate),
            f"{_number(s.min_rate)}..{_number(s.max_rate)}" if s.ok else "-",
            _number(s.median_startup_s, 1),
            _short(s.output),
            f"{s.ok}/{s.runs}",
        )
        for s in summaries
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in (header, *rows)
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    if pairs:
        lines.append("")
        label_width = max(len(f"{p.numerator} / {p.denominator}") for p in pairs)
        for p in pairs:
            label = f"{p.numerator} / {p.denominator}".ljust(label_width)
            value = "-" if p.median is None else f"{p.median:.2f}x"
            rounds = ", ".join(f"{x:.2f}" for x in p.per_round) or "none complete"
            lines.append(f"{label}  {value:>8}  (per round: {rounds})")
    checked = [s for s in summaries if s.output is not None]
    if checked:
        lines += ["", "output, against the page-view query (bench/page_view_oracle.py):"]
        name_width = max(len(s.contender) for s in checked)
        lines += [f"  {s.contender:<{name_width}}  {s.output}" for s in checked]
    return "\n".join(lines)


def to_json(
    meta: dict[str, Any],
    results: Sequence[RunResult],
    summaries: Sequence[Summary],
    pairs: Sequence[Ratio],
) -> dict[str, Any]:
    return {
        **meta,
        "runs": [{**asdict(r), "rate": r.rate} for r in results],
        "summary": [asdict(s) for s in summaries],
        "ratios": [asdict(p) for p in pairs],
    }
