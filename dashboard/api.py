"""The JSON API (/api/v1/..., /healthz, /livez) and the optional HTTP Basic login, on the Flask
server that also serves the Dash page. Every API error is JSON `{"error": ...}`: 400 bad
parameter, 401 login, 404 unknown path, 405 wrong method (with Allow), 500 a bug (logged), 503
Redis unreachable (and /healthz: a failing check)."""

from __future__ import annotations

import hmac
import time
from dataclasses import asdict

import flask
import orjson
import redis
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from serving import health, keys, read_model
from streams.fraud import SCORE_BUCKETS
from tables import sketch

API_DEFAULT_WINDOWS = 10
API_DEFAULT_ALERTS = 50
SCORE_BUCKET_EDGES = [[b / SCORE_BUCKETS, (b + 1) / SCORE_BUCKETS] for b in range(SCORE_BUCKETS)]
API_PREFIX = "/api/"
HEALTH_PATH = "/healthz"
LIVE_PATH = "/livez"
OPEN_PATHS = (HEALTH_PATH, LIVE_PATH)  # answered without a login (probes)


class BadRequest(ValueError):
    pass


def add_api(server: flask.Flask, client: redis.Redis, base: str) -> None:
    """Every route serves the version `base` points at now (serving.read_model.served)."""

    def served() -> str:
        return read_model.served(client, base)

    @server.get(HEALTH_PATH)
    def healthz() -> flask.Response:
        """The pipeline's health (serving.health): 200 when every check passes, else 503."""
        now = health.health(client, served(), round(time.time() * 1000))
        checks = {check.name: check.detail for check in now.checks}
        body = {"status": now.status, "redis": "ok", "checks": checks}
        return _json(body, 200 if now.status == "ok" else 503)

    @server.get(LIVE_PATH)
    def livez() -> flask.Response:
        """The dashboard itself answers (a liveness probe: it needs neither Redis nor Kafka)."""
        return _json({"status": "ok"})

    @server.get("/api/v1/health")
    def pipeline_health() -> flask.Response:
        now = health.health(client, served(), round(time.time() * 1000))
        return _json(asdict(now), 200)

    @server.get("/api/v1/page-views")
    def page_views() -> flask.Response:
        n = _windows_param()
        return _json({"windows": n, "rows": read_model.page_views(client, served(), n)})

    @server.get("/api/v1/orders")
    def orders() -> flask.Response:
        n = _windows_param()
        return _json({"windows": n, "rows": read_model.orders(client, served(), n)})

    @server.get("/api/v1/click-types")
    def click_types() -> flask.Response:
        n = _windows_param()
        return _json(
            {"windows": n, "rows": read_model.counts(client, served(), keys.CLICK_TYPES, n)}
        )

    @server.get("/api/v1/referrers")
    def referrers() -> flask.Response:
        n = _windows_param()
        return _json({"windows": n, "rows": read_model.counts(client, served(), keys.REFERRERS, n)})

    @server.get("/api/v1/unique-users")
    def unique_users() -> flask.Response:
        n = _windows_param()
        rows = read_model.uniques(client, served(), n)
        return _json({"windows": n, "standard_error": sketch.STANDARD_ERROR, "rows": rows})

    @server.get("/api/v1/funnel")
    def funnel() -> flask.Response:
        n = _windows_param()
        steps = read_model.funnel(client, served(), n)
        return _json({"windows": n, "standard_error": sketch.STANDARD_ERROR, "steps": steps})

    @server.get("/api/v1/sessions")
    def sessions() -> flask.Response:
        n = _windows_param()
        return _json({"windows": n, "rows": read_model.sessions(client, served(), n)})

    @server.get("/api/v1/attribution")
    def attribution() -> flask.Response:
        n = _windows_param()
        return _json({"windows": n, "rows": read_model.attribution(client, served(), n)})

    @server.get("/api/v1/fraud/summary")
    def fraud_summary() -> flask.Response:
        n = _windows_param()
        summary = read_model.fraud_summary(client, served(), n)
        return _json({"windows": n, "score_buckets": SCORE_BUCKET_EDGES, "summary": summary})

    @server.get("/api/v1/fraud/alerts")
    def fraud_alerts() -> flask.Response:
        n = _whole_param("limit", API_DEFAULT_ALERTS, keys.FRAUD_ALERTS)
        return _json({"limit": n, "alerts": read_model.fraud_alerts(client, served(), n)})

    @server.get("/api/v1/fraud/orders/<order_id>")
    def fraud_order(order_id: str) -> flask.Response:
        scored = read_model.fraud_order(client, served(), order_id)
        if scored is None:
            error = (
                f"no scored order {order_id!r}: not scored yet, or older than the newest "
                f"{keys.FRAUD_EXPLAINED} orders Redis keeps (the scored-orders topic has them all)"
            )
            return _json({"error": error}, 404)
        return _json(scored)

    @server.get("/api/v1/pipeline")
    def pipeline() -> flask.Response:
        return _json({"streams": read_model.pipeline(client, served())})

    @server.get("/api/v1/meta")
    def meta() -> flask.Response:
        version = served()
        return _json({"version": version, **asdict(read_model.meta(client, version))})

    # Dash answers any other GET with its page, so an unknown API path is caught before routing
    # (and after the login check, registered first).
    @server.before_request
    def unknown() -> flask.Response | None:
        path = flask.request.path
        if _is_api(path) and not _routed_to_api(server, path):
            return _json({"error": f"no such endpoint: {path}"}, 404)
        return None

    @server.errorhandler(BadRequest)
    def bad_request(exc: BadRequest) -> flask.Response:
        return _json({"error": str(exc)}, 400)

    @server.errorhandler(read_model.Unavailable)
    def unavailable(exc: read_model.Unavailable) -> flask.Response:
        return _json({"status": "unavailable", "error": str(exc)}, 503)

    # Also reached by any uncaught exception, as a 500, after Flask has logged its traceback.
    @server.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> flask.Response | HTTPException:
        if not _is_api(flask.request.path):
            return exc  # the Dash page's own errors stay as Flask renders them
        if isinstance(exc, MethodNotAllowed):
            allowed = ", ".join(sorted(exc.valid_methods or ()))
            request = flask.request
            error = f"{request.method} is not allowed on {request.path} (allowed: {allowed})"
            response = _json({"error": error}, 405)
            response.headers["Allow"] = allowed
            return response
        code = exc.code or 500
        message = "internal error, logged by the dashboard" if code >= 500 else exc.description
        return _json({"error": message}, code)


def _is_api(path: str) -> bool:
    return path in OPEN_PATHS or path == API_PREFIX.rstrip("/") or path.startswith(API_PREFIX)


def _routed_to_api(server: flask.Flask, path: str) -> bool:
    """Whether a GET of `path` reaches an API route (and not Dash's catch-all page route)."""
    adapter = server.url_map.bind_to_environ(flask.request.environ)
    try:
        rule, _ = adapter.match(path, method="GET", return_rule=True)
    except HTTPException:
        return False
    return _is_api(rule.rule)


def _windows_param() -> int:
    return _whole_param("windows", API_DEFAULT_WINDOWS, read_model.MAX_WINDOWS)


def _whole_param(name: str, default: int, most: int) -> int:
    text = flask.request.args.get(name, str(default))
    # ASCII digits only ("²".isdigit() is true) and few of them (int() refuses 4300+ digits)
    whole = text.isascii() and text.isdigit() and len(text) <= 9
    if not whole or not 1 <= int(text) <= most:
        shown = repr(text) if len(text) <= 20 else f"{text[:20]!r}... ({len(text)} characters)"
        raise BadRequest(f"{name} must be a whole number from 1 to {most}, got {shown}")
    return int(text)


def _json(body: object, status: int = 200) -> flask.Response:
    return flask.Response(orjson.dumps(body), status=status, mimetype="application/json")


def require_login(server: flask.Flask, user: str, password: str) -> None:
    """HTTP Basic login on every route but /healthz and /livez, when a password is set."""
    if not password:
        return

    @server.before_request
    def login() -> flask.Response | None:
        if flask.request.path in OPEN_PATHS:
            return None
        auth = flask.request.authorization
        if auth is not None and auth.type == "basic":
            user_ok = _same(auth.username, user)
            password_ok = _same(auth.password, password)  # checked even when the user is wrong
            if user_ok and password_ok:
                return None
        response = _json({"error": "login required"}, 401)
        response.headers["WWW-Authenticate"] = 'Basic realm="Clickstream", charset="UTF-8"'
        return response


def _same(given: str | None, expected: str) -> bool:
    return hmac.compare_digest((given or "").encode(), expected.encode())
