"""A bar chart of median throughput per contender (whiskers: min..max over rounds).

Plotly cannot write a PNG here (kaleido is not installed), so the chart is a self-contained
HTML file; when Debian's chromium is present, a headless screenshot of it gives the PNG.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import plotly.graph_objects as go

from bench.report import Summary

WIDTH, HEIGHT = 900, 520


def figure(summaries: Sequence[Summary], title: str) -> go.Figure:
    measured = [s for s in summaries if s.median_rate is not None]
    medians = [s.median_rate or 0.0 for s in measured]
    fig = go.Figure(
        go.Bar(
            x=[s.contender for s in measured],
            y=medians,
            text=[f"{m:,.0f}" for m in medians],
            textposition="outside",
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [(s.max_rate or 0.0) - (s.median_rate or 0.0) for s in measured],
                "arrayminus": [(s.median_rate or 0.0) - (s.min_rate or 0.0) for s in measured],
            },
        )
    )
    fig.update_layout(
        title=title,
        yaxis_title="messages/s (median, steady part)",
        yaxis={"type": "log", "dtick": 1},  # one gridline per decade
        width=WIDTH,
        height=HEIGHT,
        template="plotly_white",
    )
    return fig


def write_chart(summaries: Sequence[Summary], title: str, html: Path) -> list[Path]:
    """Write `html` and, if chromium can render it, the PNG beside it; return what was written."""
    figure(summaries, title).write_html(
        html, include_plotlyjs=True, full_html=True, config={"displayModeBar": False}
    )
    written = [html]
    png = html.with_suffix(".png")
    if _screenshot(html, png):
        written.append(png)
    return written


def _screenshot(html: Path, png: Path) -> bool:
    chromium = shutil.which("chromium")
    if chromium is None:
        return False
    try:
        subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             f"--window-size={WIDTH + 20},{HEIGHT + 20}", "--virtual-time-budget=5000",
             f"--screenshot={png.resolve()}", html.resolve().as_uri()],
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return False
    return png.is_file() and png.stat().st_size > 0
