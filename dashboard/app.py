"""The live dashboard and its JSON API, served by one Flask app.

Data comes only from serving.read_model; figures come only from dashboard.figures. The page reads
one snapshot every REFRESH_MS; when Redis is away it keeps the last numbers and says so.
"""

from __future__ import annotations

import logging
import socket
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import dash
import flask
import redis
from dash import ALL, Input, Output, State, dcc, html
from werkzeug.serving import make_server

from clickstream.settings import Settings, redacted
from dashboard import api, figures
from serving import health, read_model

REFRESH_MS = 2000
CHART_WINDOWS = 30  # windows drawn on the time charts
TOP_URLS = 5  # URLs drawn as their own line
ALERT_ROWS = 20
TITLE = "Clickstream · Live analytics"
GRAPH_CONFIG: dcc.Graph.Config = {"displayModeBar": False, "responsive": True}


class StartupError(RuntimeError):
    """The dashboard cannot start; the message names the problem and the fix."""


def create_app(settings: Settings, client: redis.Redis | None = None) -> dash.Dash:
    """The Dash app; `app.server` is the Flask app that also serves /api/v1 and /healthz."""
    client = client if client is not None else read_model.connect(settings.redis)
    app = dash.Dash(
        __name__,
        url_base_pathname="/",
        title=TITLE,
        update_title="",
        compress=False,
        serve_locally=True,
        enable_mcp=False,
        suppress_callback_exceptions=False,
    )
    server: flask.Flask = app.server
    api.require_login(server, settings.dashboard_user, settings.dashboard_password)
    api.add_api(server, client, settings.app_id)
    app.layout = _layout(settings)

    def served() -> str:  # the version promoted (clickstream promote), read at each refresh
        return read_model.served(client, settings.app_id)

    _add_refresh(app, client, settings.app_id, served)
    _add_fraud(app, client, served)
    return app


def serve(settings: Settings) -> None:
    """Serve the dashboard on dashboard_host:dashboard_port until interrupted.

    Raises StartupError when Redis is unreachable or the port cannot be bound.
    """
    client = read_model.connect(settings.redis)
    try:
        read_model.ping(client)
    except read_model.Unavailable as exc:
        raise StartupError(
            f"{exc}; start it (`clickstream up` starts the local one) or point "
            f"CLICKSTREAM_REDIS_URL at a running Redis"
        ) from None
    app = create_app(settings, client)
    host, port = settings.dashboard_host, settings.dashboard_port
    with _listen(host, port) as listening:  # werkzeug would sys.exit(1) on a taken port
        http = make_server(host, port, app.server, threaded=True, fd=listening.fileno())
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per 2 s refresh
    login = "login required" if settings.dashboard_password else "no login"
    print(
        f"dashboard on http://{host}:{port}/ ({login}), reading {redacted(settings.redis)}",
        file=sys.stderr,
        flush=True,
    )
    try:
        http.serve_forever()
    finally:
        http.server_close()


def _listen(host: str, port: int) -> socket.socket:
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family, backlog=128)
    except OSError as exc:
        raise StartupError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); set "
            f"CLICKSTREAM_DASHBOARD_PORT (or _HOST) to a free one or stop what holds it"
        ) from None


# --- page ----------------------------------------------------------------------------------------


def _layout(settings: Settings) -> html.Div:
    loading = figures.empty_figure("Loading…")
    return html.Div(
        className="shell",
        children=[
            html.Header(
                className="topbar",
                children=[
                    html.Div(
                        className="brand",
                        children=[
                            html.Span(className="brand-mark"),
                            html.H1("Clickstream"),
                            html.Span("Live analytics", className="brand-sub"),
                            html.Span(
                                settings.app_id,
                                id="app-chip",
                                className="app-chip",
                                title="the version served (app id)",
                            ),
                        ],
                    ),
                    html.Div("Connecting…", id="status", className="status status-wait", title=""),
                ],
            ),
            html.Main(
                id="page",
                className="page",
                children=[
                    html.Section(id="kpis", className="kpis"),
                    html.Section(
                        className="grid",
                        children=[
                            _card(
                                "Page views over time",
                                f"All pages and the top {TOP_URLS} pages, "
                                f"last {CHART_WINDOWS} windows",
                                _graph("views-chart", loading),
                                wide=True,
                            ),
                            _card(
                                "Top pages",
                                html.Span("Latest window", id="top-pages-span"),
                                _graph("top-pages", loading),
                            ),
                            _card(
                                "Revenue over time",
                                "Per currency, in that currency's units",
                                _graph("revenue-chart", loading),
                                wide=True,
                            ),
                            _card(
                                "Unique users over time",
                                "Distinct users and buyers per window (HyperLogLog, ±1.6%)",
                                _graph("users-chart", loading),
                                wide=True,
                            ),
                            _card(
                                "Funnel",
                                f"Distinct users per step, last {CHART_WINDOWS} windows",
                                _graph("funnel-chart", loading),
                            ),
                            _card(
                                "Top referrers",
                                f"Clicks entering from other sites, last {CHART_WINDOWS} windows",
                                _graph("referrers-chart", loading),
                            ),
                            _card(
                                "Sessions",
                                "Per window the sessions ended in: count, bounce rate; "
                                "hover for mean duration",
                                _graph("sessions-chart", loading),
                                wide=True,
                            ),
                            _card(
                                "Orders by session referrer",
                                f"Where the sessions that ordered came from, last {CHART_WINDOWS} "
                                "windows; hover for revenue",
                                _graph("attribution-chart", loading),
                            ),
                            _card(
                                "Fraud alerts over time",
                                html.Span(
                                    f"Orders scored and alerts, last {CHART_WINDOWS} windows",
                                    id="fraud-span",
                                ),
                                _graph("fraud-chart", loading),
                                wide=True,
                            ),
                            _card(
                                "Fraud score distribution",
                                f"Orders per score, last {CHART_WINDOWS} windows",
                                _graph("scores-chart", loading),
                            ),
                            _card(
                                "Latest fraud alerts",
                                f"The newest {ALERT_ROWS}; click one for its explanation",
                                html.Div(id="alerts-table", className="table-wrap"),
                                wide=True,
                            ),
                            _card(
                                "Order explanation",
                                "Why the order scored what it did",
                                html.Div(
                                    html.P("Click an alert", className="empty"),
                                    id="explanation",
                                ),
                            ),
                            _card(
                                "Pipeline",
                                html.Span("Per input partition", id="event-time"),
                                html.Div(id="pipeline-table", className="table-wrap"),
                            ),
                            _card(
                                "Versions",
                                "clickstream replay, diff, promote: the one served is marked",
                                html.Div(id="versions-table", className="table-wrap"),
                                wide=True,
                            ),
                            _card(
                                "Latest diff",
                                html.Span("clickstream diff LIVE SHADOW", id="diff-title"),
                                html.Div(id="diff-table", className="table-wrap"),
                                wide=True,
                            ),
                        ],
                    ),
                ],
            ),
            html.Footer(
                className="footer",
                children=(
                    f"Refreshes every {REFRESH_MS // 1000} s from {redacted(settings.redis)} · "
                    f"times in UTC · JSON API at /api/v1/page-views, /api/v1/orders, "
                    f"/api/v1/unique-users, /api/v1/funnel, /api/v1/click-types, "
                    f"/api/v1/referrers, /api/v1/sessions, /api/v1/attribution, "
                    f"/api/v1/fraud/summary, /api/v1/fraud/alerts, /api/v1/fraud/orders/ID, "
                    f"/api/v1/pipeline"
                ),
            ),
            dcc.Interval(id="refresh", interval=REFRESH_MS),
            dcc.Store(id="alerts-shown"),  # the order ids of the alert rows drawn
        ],
    )


def _graph(graph_id: str, figure: Any) -> dcc.Graph:
    return dcc.Graph(
        id=graph_id, figure=figure, config=GRAPH_CONFIG, className="chart", style={"height": 320}
    )


def _card(title: str, subtitle: Any, body: Any, wide: bool = False) -> html.Div:
    return html.Div(
        className="card card-wide" if wide else "card",
        children=[html.H2(title), html.P(subtitle, className="card-sub"), body],
    )


def _add_refresh(app: dash.Dash, client: redis.Redis, base: str, served: Callable[[], str]) -> None:
    @app.callback(
        Output("app-chip", "children"),
        Output("versions-table", "children"),
        Output("diff-title", "children"),
        Output("diff-table", "children"),
        Input("refresh", "n_intervals"),
    )
    def version(_tick: int | None) -> tuple[Any, Any, Any, Any]:
        try:
            rows = read_model.versions(client, base)
            report = read_model.latest_diff(client, base)
        except read_model.Unavailable:
            return (dash.no_update,) * 4  # the status line says so
        serving = next(row.name for row in rows if row.served)
        diff: html.Table | html.P = html.P("No diff yet", className="empty")
        title = "clickstream diff LIVE SHADOW"
        if report is not None:
            verdict = "identical" if report.get("identical") else "different"
            title = f"{report.get('live')} vs {report.get('shadow')}: {verdict}"
            diff = _table(figures.diff_table(report))
        return serving, _table(figures.versions_table(rows)), title, diff

    @app.callback(
        Output("status", "children"),
        Output("status", "className"),
        Output("status", "title"),
        Output("page", "className"),
        Output("kpis", "children"),
        Output("views-chart", "figure"),
        Output("top-pages", "figure"),
        Output("top-pages-span", "children"),
        Output("revenue-chart", "figure"),
        Output("users-chart", "figure"),
        Output("funnel-chart", "figure"),
        Output("referrers-chart", "figure"),
        Output("sessions-chart", "figure"),
        Output("attribution-chart", "figure"),
        Output("pipeline-table", "children"),
        Output("event-time", "children"),
        Input("refresh", "n_intervals"),
    )
    def refresh(_tick: int | None) -> tuple[Any, ...]:
        try:
            version = served()
            snapshot = read_model.snapshot(client, version, CHART_WINDOWS)
            now = health.health(client, version, round(time.time() * 1000))
        except read_model.Unavailable as exc:
            return _render_unavailable(exc)
        return _render(snapshot, now)


def _add_fraud(app: dash.Dash, client: redis.Redis, served: Callable[[], str]) -> None:
    """The fraud section: its own refresh, and an alert's explanation on click."""

    @app.callback(
        Output("fraud-chart", "figure"),
        Output("scores-chart", "figure"),
        Output("alerts-table", "children"),
        Output("alerts-shown", "data"),
        Output("fraud-span", "children"),
        Input("refresh", "n_intervals"),
        State("alerts-shown", "data"),
    )
    def refresh_fraud(_tick: int | None, shown: list[str] | None) -> tuple[Any, ...]:
        try:
            app_id = served()
            summary = read_model.fraud_summary(client, app_id, CHART_WINDOWS)
            alerts = read_model.fraud_alerts(client, app_id, ALERT_ROWS)
            window_ms = read_model.meta(client, app_id).window_ms
        except read_model.Unavailable:
            return (dash.no_update,) * 5  # the status line says so
        ids = [str(alert["order_id"]) for alert in alerts]
        same = ids == shown  # rows drawn again would lose a click on them: only when new
        rate = "no orders" if summary.alert_rate is None else f"{summary.alert_rate:.1%}"
        span = (
            f"{summary.orders:,} orders scored, {summary.alerts:,} alerts ({rate}), "
            f"last {CHART_WINDOWS} windows"
        )
        return (
            figures.fraud_rate_figure(summary.windows, window_ms),
            figures.score_distribution_figure(summary.scores),
            dash.no_update if same else _alerts(alerts),
            dash.no_update if same else ids,
            span,
        )

    @app.callback(
        Output("explanation", "children"),
        Input({"type": "alert-row", "order": ALL}, "n_clicks"),
        prevent_initial_call=True,
    )
    def explain(clicks: list[int | None]) -> Any:
        clicked = dash.ctx.triggered_id
        if clicked is None or not any(clicks):  # rows drawn again by the refresh
            return dash.no_update
        order_id = str(clicked["order"])
        try:
            scored = read_model.fraud_order(client, served(), order_id)
        except read_model.Unavailable as exc:
            return html.P(str(exc), className="empty")
        if scored is None:
            return html.P(f"Order {order_id} is no longer kept in Redis", className="empty")
        return _explanation(scored)


def _alerts(alerts: list[dict[str, Any]]) -> html.Table | html.P:
    table = figures.alerts_table(alerts)
    if not table.rows:
        return html.P("No alert yet", className="empty")
    return html.Table(
        className="data-table clickable",
        children=[
            html.Thead(html.Tr([html.Th(h) for h in table.header])),
            html.Tbody(
                [
                    html.Tr(
                        [html.Td(cell) for cell in row],
                        id={"type": "alert-row", "order": str(alert["order_id"])},
                        n_clicks=0,
                    )
                    for alert, row in zip(alerts, table.rows, strict=True)
                ]
            ),
        ],
    )


def _explanation(scored: dict[str, Any]) -> html.Div:
    verdict = "alert" if scored["alert"] else "passed"
    amount = figures.money(scored["amount_cents"], scored["currency"])
    return html.Div(
        className="explanation",
        children=[
            html.P(
                f"Order {scored['order_id']} · {scored['user']} · {amount} · score "
                f"{scored['score']:.3f} ({verdict}) · policy v{scored['policy_version']}",
                className="explanation-head",
            ),
            html.Ul([html.Li(reason) for reason in scored["reasons"]] or [html.Li("no reason")]),
            _graph("contributions-chart", figures.contributions_figure(scored["contributions"])),
        ],
    )


def _render_unavailable(exc: read_model.Unavailable) -> tuple[Any, ...]:
    """The status says so (details on hover); the last numbers stay, dimmed."""
    status = f"Redis unreachable · retrying every {REFRESH_MS // 1000} s"
    return (status, "status status-down", str(exc), "page page-stale", *[dash.no_update] * 12)


def _render(s: read_model.Snapshot, now: health.Health) -> tuple[Any, ...]:
    window_ms = s.meta.window_ms
    latest = figures.latest_start(s.page_views)
    updated = datetime.now(UTC).strftime("%H:%M:%S")
    problems = now.problems  # the first on the line, all of them on hover
    return (
        f"{problems[0] if problems else 'Live'} · updated {updated} UTC",
        "status status-warn" if problems else "status status-live",
        "\n".join(problems),
        "page",
        [
            _kpi_card(k)
            for k in figures.kpis(s.page_views, s.orders, s.pipeline, window_ms, s.meta.grace_ms)
        ],
        figures.page_views_figure(s.page_views, TOP_URLS, window_ms),
        figures.top_pages_figure(s.page_views),
        "No windows yet" if latest is None else figures.window_span(latest, window_ms),
        figures.revenue_figure(s.orders, window_ms),
        figures.unique_users_figure(s.uniques, window_ms),
        figures.funnel_figure(s.funnel),
        figures.top_referrers_figure(s.referrers),
        figures.sessions_figure(s.sessions, window_ms, s.meta.session_gap_ms),
        figures.attribution_figure(s.attributed),
        _table(figures.pipeline_table(s.pipeline)),
        f"Per input partition · {figures.event_time(s.pipeline)}",
    )


def _kpi_card(kpi: figures.Kpi) -> html.Div:
    return html.Div(
        className=f"kpi kpi-{kpi.tone}",
        children=[
            html.Div(kpi.label, className="kpi-label"),
            html.Div(kpi.value, className="kpi-value"),
            html.Div(kpi.detail, className="kpi-detail"),
        ],
    )


def _table(table: figures.Table) -> html.Table | html.P:
    if not table.rows:
        return html.P("No events processed yet", className="empty")
    return html.Table(
        className="data-table",
        children=[
            html.Thead(html.Tr([html.Th(h) for h in table.header])),
            html.Tbody([html.Tr([html.Td(cell) for cell in row]) for row in table.rows]),
        ],
    )
