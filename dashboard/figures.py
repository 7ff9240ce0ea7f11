"""Pure builders: read-model rows in, Plotly figures and display values out. No I/O, no clock.

Times are shown in UTC (window starts are epoch ms); money is shown in each currency's own units,
converted from cents, never summed across currencies.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from serving.read_model import (
    AttributionRow,
    CountRow,
    FraudRow,
    FunnelStep,
    OrderRow,
    PageViewRow,
    PipelineRow,
    SessionRow,
    UniqueRow,
    VersionRow,
)
from streams.validation import CURRENCY_DIGITS

ALL_PAGES = "All pages"
INK = "#111827"
MUTED = "#6B7280"
GRID = "#E5E7EB"
ACCENT = "#4F46E5"
ALERT = "#EF4444"
LATE_SHARE_WARNING = 0.05  # of the events judged (accepted or late): the headline warns
SERIES = ("#4F46E5", "#0EA5E9", "#10B981", "#F59E0B", "#EF4444", "#8B5CF6", "#EC4899", "#14B8A6")
FONT = "Inter, system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"

Tone = Literal["neutral", "good", "warn", "bad"]


@dataclass(frozen=True)
class Kpi:
    label: str
    value: str
    detail: str
    tone: Tone = "neutral"


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


# --- formatting ----------------------------------------------------------------------------------


def utc_timestamp(ms: int) -> str:
    """'YYYY-MM-DD HH:MM:SS' in UTC: the form Plotly reads as a date without shifting it."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def utc_clock(ms: int, seconds: bool = False) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%H:%M:%S" if seconds else "%H:%M")


def utc_day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def money(cents: int, currency: str) -> str:
    """'USD 1,234.56' or 'JPY 1,500' from minor units, exact (no float rounding)."""
    sign = "-" if cents < 0 else ""
    digits = minor_digits(currency)
    if digits == 0:
        return f"{currency} {sign}{abs(cents):,}"
    units, rest = divmod(abs(cents), 10**digits)
    return f"{currency} {sign}{units:,}.{rest:0{digits}d}"


def minor_digits(currency: str) -> int:
    return CURRENCY_DIGITS.get(currency, 2)


def per_window(window_ms: int | None) -> str:
    """'per minute', 'per 5 min', 'per 30 s': how one window reads in a title."""
    if window_ms is None or window_ms == 60_000:
        return "per minute"
    if window_ms % 60_000 == 0:
        return f"per {window_ms // 60_000} min"
    return f"per {window_ms / 1000:g} s"


def window_span(start_ms: int, window_ms: int | None) -> str:
    """'2026-01-05 12:03 to 12:04 UTC' with an en dash, its date always (or '2026-01-05 12:03
    UTC' when the window size is unknown): history may be months old."""
    day = utc_day(start_ms)
    if window_ms is None:
        return f"{day} {utc_clock(start_ms)} UTC"
    return f"{day} {utc_clock(start_ms)}\u2013{utc_clock(start_ms + window_ms)} UTC"


# --- charts --------------------------------------------------------------------------------------


def empty_figure(message: str) -> go.Figure:
    """A blank chart carrying one centred message: the state before any data arrives."""
    figure = go.Figure(layout=_base_layout())
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    figure.add_annotation(
        text=message,
        showarrow=False,
        xref="paper",
        yref="paper",
        x=0.5,
        y=0.5,
        font={"size": 14, "color": MUTED},
    )
    return figure


def page_views_figure(
    rows: Sequence[PageViewRow], top_n: int = 5, window_ms: int | None = None
) -> go.Figure:
    """Views per window over time: the total as a shaded area, the top N URLs as lines."""
    if not rows:
        return empty_figure("No page views yet: waiting for the first window")
    starts = _gapped(sorted({r.window_start_ms for r in rows}), window_ms)
    x = [utc_timestamp(s) for s, _ in starts]
    per_url: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    totals: dict[int, int] = defaultdict(int)
    for r in rows:
        per_url[r.url][r.window_start_ms] += r.views
        totals[r.window_start_ms] += r.views
    figure = go.Figure(layout=_base_layout())
    figure.add_trace(
        go.Scatter(
            x=x,
            y=[totals[s] if shown else None for s, shown in starts],
            name=ALL_PAGES,
            mode="lines",
            line={"color": ACCENT, "width": 0},
            fill="tozeroy",
            fillcolor="rgba(79, 70, 229, 0.12)",
            hovertemplate="%{y:,}<extra>" + ALL_PAGES + "</extra>",
        )
    )
    for i, url in enumerate(_top(per_url, top_n)):
        figure.add_trace(
            go.Scatter(
                x=x,
                y=[per_url[url].get(s, 0) if shown else None for s, shown in starts],
                name=url,
                mode="lines+markers",
                line={"color": SERIES[i % len(SERIES)], "width": 2},
                marker={"size": 5},
                hovertemplate="%{y:,}<extra>%{fullData.name}</extra>",
            )
        )
    figure.update_layout(hovermode="x unified")
    figure.update_xaxes(title_text="Window start (UTC)")
    figure.update_yaxes(title_text=f"Page views {per_window(window_ms)}", rangemode="tozero")
    return figure


def revenue_figure(rows: Sequence[OrderRow], window_ms: int | None = None) -> go.Figure:
    """Revenue per window, one small multiple per currency on its own axis, in that currency's
    units: amounts in JPY and in EUR are never on one scale, nor summed."""
    if not rows:
        return empty_figure("No orders yet: revenue appears with the first order")
    starts = sorted({r.window_start_ms for r in rows})
    cents: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        cents[r.currency][r.window_start_ms] += r.revenue_cents
    currencies = sorted(cents)
    figure = make_subplots(rows=len(currencies), cols=1, shared_xaxes=True, vertical_spacing=0.06)
    figure.update_layout(_base_layout())
    for i, currency in enumerate(currencies):
        amounts = [cents[currency].get(s, 0) for s in starts]
        figure.add_trace(
            go.Bar(
                x=[utc_timestamp(s) for s in starts],
                y=[c / 10 ** minor_digits(currency) for c in amounts],
                name=currency,
                marker_color=SERIES[i % len(SERIES)],
                customdata=[money(c, currency) for c in amounts],
                hovertemplate="%{customdata}<extra></extra>",
            ),
            row=i + 1,
            col=1,
        )
        unit = f"{currency} {per_window(window_ms)}"
        figure.update_yaxes(title_text=unit, rangemode="tozero", row=i + 1, col=1)
    figure.update_layout(bargap=0.25, hovermode="x unified", showlegend=False)
    figure.update_xaxes(title_text="Window start (UTC)", row=len(currencies), col=1)
    return figure


def top_pages_figure(rows: Sequence[PageViewRow], limit: int = 10) -> go.Figure:
    """The latest window's most viewed URLs as horizontal bars, the largest on top."""
    start = latest_start(rows)
    if start is None:
        return empty_figure("No page views yet")
    latest = sorted(
        (r for r in rows if r.window_start_ms == start), key=lambda r: (-r.views, r.url)
    )[:limit]
    latest.reverse()  # Plotly draws the first bar at the bottom
    figure = go.Figure(layout=_base_layout())
    figure.add_trace(
        go.Bar(
            x=[r.views for r in latest],
            y=[r.url for r in latest],
            orientation="h",
            marker_color=ACCENT,
            text=[f"{r.views:,}" for r in latest],
            textposition="auto",
            textangle=0,
            insidetextanchor="end",
            hovertemplate="%{y}: %{x:,} views<extra></extra>",
        )
    )
    figure.update_layout(showlegend=False, bargap=0.3)
    figure.update_xaxes(title_text="Views", rangemode="tozero")
    figure.update_yaxes(automargin=True, showgrid=False)
    return figure


def unique_users_figure(rows: Sequence[UniqueRow], window_ms: int | None = None) -> go.Figure:
    """Distinct users per window (all clicks) and buyers per window, as lines."""
    shown = [r for r in rows if r.sketch in ("users", "buyers")]
    if not shown:
        return empty_figure("No users yet")
    figure = go.Figure(layout=_base_layout())
    for i, name in enumerate(("users", "buyers")):
        users = {r.window_start_ms: r.users for r in shown if r.sketch == name}
        series = _gapped(sorted(users), window_ms)
        figure.add_trace(
            go.Scatter(
                x=[utc_timestamp(start) for start, _ in series],
                y=[users[start] if present else None for start, present in series],
                name="Users" if name == "users" else "Buyers",
                mode="lines+markers",
                line={"color": SERIES[i], "width": 2},
                hovertemplate="%{y:,} " + name + "<extra></extra>",
            )
        )
    figure.update_layout(hovermode="x unified")
    figure.update_xaxes(title_text="Window start (UTC)")
    figure.update_yaxes(title_text=f"Distinct users {per_window(window_ms)}", rangemode="tozero")
    return figure


FUNNEL_LABELS = {
    "page_view": "Viewed a page",
    "add_to_cart": "Added to cart",
    "checkout": "Checked out",
    "buyers": "Ordered",
}


def funnel_figure(steps: Sequence[FunnelStep]) -> go.Figure:
    """Distinct users per funnel step, with each step's conversion from the one before."""
    if not steps or not steps[0].users:
        return empty_figure("No visits yet")
    figure = go.Figure(layout=_base_layout())
    figure.add_trace(
        go.Funnel(
            y=[FUNNEL_LABELS.get(s.step, s.step) for s in steps],
            x=[s.users for s in steps],
            text=[_funnel_text(s, first=i == 0) for i, s in enumerate(steps)],
            textinfo="text",
            marker={"color": [SERIES[i % len(SERIES)] for i in range(len(steps))]},
            hovertemplate="%{y}: %{x:,} users<extra></extra>",
        )
    )
    figure.update_layout(showlegend=False)
    figure.update_yaxes(automargin=True)
    return figure


def _funnel_text(step: FunnelStep, first: bool) -> str:
    """Users, and the conversion from the step before: "—" after a step of no users."""
    if first:
        return f"{step.users:,}"
    rate = "—" if step.conversion is None else f"{step.conversion:.0%}"
    return f"{step.users:,} · {rate}"


def top_referrers_figure(rows: Sequence[CountRow], limit: int = 8) -> go.Figure:
    """Referred visits per referrer host over all the windows shown, the largest on top."""
    totals: dict[str, int] = defaultdict(int)
    for r in rows:
        totals[r.name] += r.count
    if not totals:
        return empty_figure("No referred visits yet")
    top = sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:limit][::-1]
    figure = go.Figure(layout=_base_layout())
    figure.add_trace(
        go.Bar(
            x=[n for _, n in top],
            y=[host for host, _ in top],
            orientation="h",
            marker_color=SERIES[1],
            text=[f"{n:,}" for _, n in top],
            textposition="auto",
            textangle=0,
            hovertemplate="%{y}: %{x:,} visits<extra></extra>",
        )
    )
    figure.update_layout(showlegend=False, bargap=0.3)
    figure.update_xaxes(title_text="Referred clicks", rangemode="tozero")
    figure.update_yaxes(automargin=True, showgrid=False)
    return figure


def attribution_figure(rows: Sequence[AttributionRow], limit: int = 8) -> go.Figure:
    """Orders per session referrer over all the windows shown, stacked by currency (revenue
    on hover, in each currency's units), the largest referrer on top."""
    orders: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    revenue: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        orders[r.currency][r.referrer] += r.orders
        revenue[r.currency][r.referrer] += r.revenue_cents
    totals: dict[str, int] = defaultdict(int)
    for per_referrer in orders.values():
        for referrer, n in per_referrer.items():
            totals[referrer] += n
    if not totals:
        return empty_figure("No window attributed yet (both streams must pass it)")
    top = sorted(totals, key=lambda host: (-totals[host], host))[:limit][::-1]
    figure = go.Figure(layout=_base_layout())
    for i, currency in enumerate(sorted(orders)):
        figure.add_trace(
            go.Bar(
                x=[orders[currency].get(host, 0) for host in top],
                y=top,
                orientation="h",
                name=currency,
                marker_color=SERIES[i % len(SERIES)],
                customdata=[money(revenue[currency].get(host, 0), currency) for host in top],
                hovertemplate="%{y}: %{x:,} orders · %{customdata}<extra>" + currency + "</extra>",
            )
        )
    figure.update_layout(barmode="stack", bargap=0.3)
    figure.update_xaxes(title_text="Orders", rangemode="tozero")
    figure.update_yaxes(automargin=True, showgrid=False)
    return figure


def sessions_figure(
    rows: Sequence[SessionRow], window_ms: int | None = None, gap_ms: int | None = None
) -> go.Figure:
    """Sessions that ended per window (bars) and their bounce rate (line, right axis)."""
    if not rows:
        after = (
            "" if gap_ms is None else f" (one ends {gap_ms / 60_000:g} min after its last click)"
        )
        return empty_figure(f"No session has ended yet{after}")
    rows = sorted(rows, key=lambda r: r.window_start_ms)
    x = [utc_timestamp(r.window_start_ms) for r in rows]
    figure = go.Figure(layout=_base_layout())
    figure.add_trace(
        go.Bar(
            x=x,
            y=[r.sessions for r in rows],
            name="Sessions ended",
            marker_color=SERIES[0],
            customdata=[r.mean_duration_ms / 60_000 for r in rows],
            hovertemplate="%{y:,} sessions · mean %{customdata:.1f} min<extra></extra>",
        )
    )
    figure.add_trace(
        go.Scatter(
            x=x,
            y=[r.bounce_rate for r in rows],
            name="Bounce rate",
            yaxis="y2",
            mode="lines+markers",
            line={"color": SERIES[3], "width": 2},
            hovertemplate="%{y:.0%} bounced<extra></extra>",
        )
    )
    figure.update_layout(
        hovermode="x unified",
        yaxis={"title": {"text": f"Sessions {per_window(window_ms)}"}, "rangemode": "tozero"},
        yaxis2={
            "title": {"text": "Bounce rate"},
            "overlaying": "y",
            "side": "right",
            "range": [0, 1],
            "tickformat": ".0%",
        },
    )
    figure.update_xaxes(title_text="Window the sessions ended in (UTC)")
    return figure


def fraud_rate_figure(rows: Sequence[FraudRow], window_ms: int | None = None) -> go.Figure:
    """Orders scored per window (bars, alerts in red) and the alert rate (line, right axis)."""
    if not rows:
        return empty_figure("No order scored yet")
    x = [utc_timestamp(r.window_start_ms) for r in rows]
    figure = go.Figure(layout=_base_layout())
    figure.add_trace(
        go.Bar(
            x=x,
            y=[r.orders - r.alerts for r in rows],
            name="Orders passed",
            marker_color=GRID,
            hovertemplate="%{y:,} passed<extra></extra>",
        )
    )
    figure.add_trace(
        go.Bar(
            x=x,
            y=[r.alerts for r in rows],
            name="Alerts",
            marker_color=ALERT,
            hovertemplate="%{y:,} alerts<extra></extra>",
        )
    )
    figure.add_trace(
        go.Scatter(
            x=x,
            y=[r.alert_rate for r in rows],
            name="Alert rate",
            yaxis="y2",
            mode="lines+markers",
            line={"color": INK, "width": 2},
            hovertemplate="%{y:.1%} alerted<extra></extra>",
        )
    )
    figure.update_layout(
        barmode="stack",
        hovermode="x unified",
        yaxis={"title": {"text": f"Orders {per_window(window_ms)}"}, "rangemode": "tozero"},
        yaxis2={
            "title": {"text": "Alert rate"},
            "overlaying": "y",
            "side": "right",
            "rangemode": "tozero",
            "tickformat": ".0%",
        },
    )
    figure.update_xaxes(title_text="Window of the order's time (UTC)")
    return figure


def score_distribution_figure(scores: Sequence[int]) -> go.Figure:
    """Orders per score bucket of 0.1 (log scale: the alerts are the thin tail)."""
    if not any(scores):
        return empty_figure("No order scored yet")
    n = len(scores)
    labels = [f"{b / n:.1f}" for b in range(n)]
    figure = go.Figure(layout=_base_layout())
    figure.add_trace(
        go.Bar(
            x=labels,
            y=list(scores),
            marker_color=[SERIES[0] if b < n // 2 else ALERT for b in range(n)],
            hovertemplate="score from %{x}: %{y:,} orders<extra></extra>",
        )
    )
    figure.update_yaxes(type="log", dtick=1, title_text="Orders")
    figure.update_xaxes(title_text="Fraud score (from)", type="category")
    return figure


def contributions_figure(contributions: Sequence[Mapping[str, Any]]) -> go.Figure:
    """The signals that fired for one order, by their weight in its log-odds."""
    fired = sorted((c for c in contributions if c["reason"]), key=lambda c: c["weight"])
    if not fired:
        return empty_figure("No signal fired: the score is the policy's bias alone")
    figure = go.Figure(layout=_base_layout())
    figure.add_trace(
        go.Bar(
            x=[c["weight"] for c in fired],
            y=[c["feature"] for c in fired],
            orientation="h",
            marker_color=ALERT,
            customdata=[c["reason"] for c in fired],
            hovertemplate="%{customdata}: +%{x}<extra></extra>",
        )
    )
    figure.update_xaxes(title_text="Weight in the log-odds", rangemode="tozero")
    figure.update_yaxes(automargin=True, showgrid=False)
    return figure


def alerts_table(alerts: Sequence[Mapping[str, Any]]) -> Table:
    """The newest alerts (streams.fraud's FraudAlert): time, order, user, amount, score, the
    top reasons."""
    rows = tuple(
        (
            a["occurred_at"].replace("T", " ")[:19],
            str(a["order_id"]),
            a["user"],
            money(a["amount_cents"], a["currency"]),
            f"{a['score']:.2f}",
            "; ".join(a["reasons"]),
        )
        for a in alerts
    )
    return Table(("Order time (UTC)", "Order", "User", "Amount", "Score", "Reasons"), rows)


# --- numbers -------------------------------------------------------------------------------------


def latest_start(rows: Iterable[PageViewRow | OrderRow]) -> int | None:
    return max((r.window_start_ms for r in rows), default=None)


def kpis(
    page_views: Sequence[PageViewRow],
    orders: Sequence[OrderRow],
    pipeline: Sequence[PipelineRow],
    window_ms: int | None = None,
    grace_ms: int | None = None,
) -> list[Kpi]:
    """The headline cards: the latest window's traffic and sales, then the pipeline's health."""
    return [
        _views_kpi(page_views, window_ms),
        *_order_kpis(orders, window_ms),
        Kpi(
            "Open sessions",
            f"{sum(p.open_sessions for p in pipeline):,}",
            "not yet expired",
        ),
        _late_kpi(pipeline, grace_ms),
        Kpi(
            "Duplicates dropped",
            f"{sum(p.duplicates for p in pipeline):,}",
            "redeliveries, counted once",
        ),
        _dead_letters_kpi(pipeline),
    ]


def pipeline_table(pipeline: Sequence[PipelineRow]) -> Table:
    """One row per stream partition: its event-time watermark and its counters."""
    header = ("Stream", "Part.", "Watermark", "Accepted", "Dupl.", "Late", "Dead")
    rows = tuple(
        (
            stream.stream,
            str(p.partition),
            "—" if p.watermark_ms is None else utc_timestamp(p.watermark_ms),
            f"{p.accepted:,}",
            f"{p.duplicates:,}",
            f"{p.late:,}",
            f"{p.dead_letters:,}",
        )
        for stream in pipeline
        for p in stream.partitions
    )
    return Table(header, rows)


def versions_table(versions: Sequence[VersionRow]) -> Table:
    """One row per version: the served one marked, how it was replayed, its latest diff."""
    header = ("Version", "Served", "State", "Replayed", "Latest diff")
    rows = tuple(
        (v.name, "●" if v.served else "", v.state, v.replayed or "—", v.diff or "—")
        for v in versions
    )
    return Table(header, rows)


def diff_table(report: Mapping[str, Any]) -> Table:
    """One row per metric of a diff report (clickstream.diff): its counts and its largest
    difference."""
    header = ("Metric", "Equal", "Different", "Only live", "Only shadow", "Largest difference")
    rows = []
    for name, m in sorted(report.get("metrics", {}).items()):
        largest = m.get("largest") or []
        biggest = f"{largest[0]['id']}: {largest[0]['difference']:g}" if largest else "—"
        counts = (m.get(k, 0) for k in ("equal", "different", "only_live", "only_shadow"))
        rows.append((name, *(f"{n:,}" for n in counts), biggest))
    return Table(header, tuple(rows))


def event_time(pipeline: Sequence[PipelineRow]) -> str:
    """'event time 12:03:58 UTC': how far every partition of every stream has been read."""
    marks = [p.low_watermark_ms for p in pipeline if p.low_watermark_ms is not None]
    if not marks:
        return "no events processed yet"
    return f"event time {utc_timestamp(min(marks))} UTC"


# --- helpers -------------------------------------------------------------------------------------


def _gapped(starts: Sequence[int], window_ms: int | None) -> list[tuple[int, bool]]:
    """(window start, has data): `starts`, and after each one that the next does not follow,
    the empty window after it, without data. A line through them then breaks there (gaps
    stay gaps) instead of joining two windows hours apart."""
    out: list[tuple[int, bool]] = []
    for i, start in enumerate(starts):
        if i and window_ms and start - starts[i - 1] > window_ms:
            out.append((starts[i - 1] + window_ms, False))
        out.append((start, True))
    return out


def _base_layout() -> go.Layout:
    return go.Layout(
        template="plotly_white",
        font={"family": FONT, "size": 12, "color": INK},
        margin={"l": 56, "r": 16, "t": 16, "b": 48},
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0, "title_text": ""},
        xaxis={"gridcolor": GRID, "linecolor": GRID, "title_font": {"color": MUTED}},
        yaxis={"gridcolor": GRID, "zerolinecolor": GRID, "title_font": {"color": MUTED}},
        hoverlabel={"font_family": FONT},
    )


def _top(per_key: dict[str, dict[int, int]], n: int) -> list[str]:
    totals = {key: sum(values.values()) for key, values in per_key.items()}
    return sorted(totals, key=lambda key: (-totals[key], key))[:n]


def _views_kpi(rows: Sequence[PageViewRow], window_ms: int | None) -> Kpi:
    start = latest_start(rows)
    if start is None:
        return Kpi("Page views", "0", "no windows yet")
    views = sum(r.views for r in rows if r.window_start_ms == start)
    return Kpi("Page views", f"{views:,}", f"window {window_span(start, window_ms)}")


def _order_kpis(rows: Sequence[OrderRow], window_ms: int | None) -> list[Kpi]:
    start = latest_start(rows)
    if start is None:
        return [Kpi("Orders", "0", "no windows yet"), Kpi("Revenue", "—", "no orders yet")]
    latest = sorted(
        (r for r in rows if r.window_start_ms == start), key=lambda r: (-r.orders, r.currency)
    )
    span = f"window {window_span(start, window_ms)}"
    revenue = [money(r.revenue_cents, r.currency) for r in latest]
    return [
        Kpi("Orders", f"{sum(r.orders for r in latest):,}", span),
        Kpi("Revenue", revenue[0], " · ".join(revenue[1:]) or span),
    ]


def _late_kpi(pipeline: Sequence[PipelineRow], grace_ms: int | None) -> Kpi:
    """Late events; a warning naming the likely cause when they are a large share (input not
    in event-time order: a history produced unsorted, or a replay of a shuffled topic)."""
    late = sum(p.late for p in pipeline)
    judged = late + sum(p.accepted for p in pipeline)
    if judged and late / judged >= LATE_SHARE_WARNING:
        detail = f"{late / judged:.0%} of events: is the input in event-time order?"
        return Kpi("Late events", f"{late:,}", detail, "bad")
    beyond = (
        "after the window closed" if grace_ms is None else f"beyond {grace_ms / 1000:g} s grace"
    )
    return Kpi("Late events", f"{late:,}", beyond, "warn" if late else "good")


def _dead_letters_kpi(pipeline: Sequence[PipelineRow]) -> Kpi:
    dead = sum(p.dead_letters for p in pipeline)
    detail = "in the dead-letter topic" if dead else "no bad input"
    return Kpi("Dead letters", f"{dead:,}", detail, "bad" if dead else "good")
