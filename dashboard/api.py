"""The JSON API (/api/v1/..., /healthz) and the optional HTTP Basic login, on the Flask server
that also serves the Dash page. Errors are JSON: 400 bad parameter, 401 login, 404, 503 Redis."""

from __future__ import annotations

import hmac

import flask
import orjson
import redis

from serving import keys, read_model
from tables import sketch

API_DEFAULT_WINDOWS = 10


class BadRequest(ValueError):
    pass


def add_api(server: flask.Flask, client: redis.Redis, app_id: str) -> None:
    @server.get("/healthz")
    def healthz() -> flask.Response:
        read_model.ping(client)
        return _json({"status": "ok", "redis": "ok"})

    @server.get("/api/v1/page-views")
    def page_views() -> flask.Response:
        n = _windows_param()
        return _json({"windows": n, "rows": read_model.page_views(client, app_id, n)})

    @server.get("/api/v1/orders")
    def orders() -> flask.Response:
        n = _windows_param()
        return _json({"windows": n, "rows": read_model.orders(client, app_id, n)})

    @server.get("/api/v1/click-types")
    def click_types() -> flask.Response:
        n = _windows_param()
        return _json({"windows": n, "rows": read_model.counts(client, app_id, keys.CLICK_TYPES, n)})

    @server.get("/api/v1/referrers")
    def referrers() -> flask.Response:
        n = _windows_param()
        return _json({"windows": n, "rows": read_model.counts(client, app_id, keys.REFERRERS, n)})

    @server.get("/api/v1/unique-users")
    def unique_users() -> flask.Response:
        n = _windows_param()
        rows = read_model.uniques(client, app_id, n)
        return _json({"windows": n, "standard_error": sketch.STANDARD_ERROR, "rows": rows})

    @server.get("/api/v1/funnel")
    def funnel() -> flask.Response:
        n = _windows_param()
        steps = read_model.funnel(client, app_id, n)
        return _json({"windows": n, "standard_error": sketch.STANDARD_ERROR, "steps": steps})

    @server.get("/api/v1/sessions")
    def sessions() -> flask.Response:
        n = _windows_param()
        return _json({"windows": n, "rows": read_model.sessions(client, app_id, n)})

    @server.get("/api/v1/attribution")
    def attribution() -> flask.Response:
        n = _windows_param()
        return _json({"windows": n, "rows": read_model.attribution(client, app_id, n)})

    @server.get("/api/v1/pipeline")
    def pipeline() -> flask.Response:
        return _json({"streams": read_model.pipeline(client, app_id)})

    @server.get("/api/v1/meta")
    def meta() -> flask.Response:
        return _json(read_model.meta(client, app_id))

    @server.route("/api/<path:_rest>")
    def unknown(_rest: str) -> flask.Response:
        return _json({"error": f"no such endpoint: {flask.request.path}"}, 404)

    @server.errorhandler(BadRequest)
    def bad_request(exc: BadRequest) -> flask.Response:
        return _json({"error": str(exc)}, 400)

    @server.errorhandler(read_model.Unavailable)
    def unavailable(exc: read_model.Unavailable) -> flask.Response:
        return _json({"status": "unavailable", "error": str(exc)}, 503)


def _windows_param() -> int:
    text = flask.request.args.get("windows", str(API_DEFAULT_WINDOWS))
    if not text.isdigit() or not 1 <= int(text) <= read_model.MAX_WINDOWS:
        raise BadRequest(
            f"windows must be a whole number from 1 to {read_model.MAX_WINDOWS}, got {text!r}"
        )
    return int(text)


def _json(body: object, status: int = 200) -> flask.Response:
    return flask.Response(orjson.dumps(body), status=status, mimetype="application/json")


def require_login(server: flask.Flask, user: str, password: str) -> None:
    """HTTP Basic login on every route but /healthz, when a password is set."""
    if not password:
        return

    @server.before_request
    def login() -> flask.Response | None:
        if flask.request.path == "/healthz":
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
