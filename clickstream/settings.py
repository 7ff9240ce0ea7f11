"""The only module that reads the environment (and `.env`). Each field names its variable.

`load()` turns a bad value into SettingsError, a one-line message naming the variable and the fix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlsplit, urlunsplit

from clickstream.local.redis import local_url
from fraud.features import FEATURES
from fraud.policy import DEFAULT_POLICY, Policy, PolicyError, load_policy
from serving import keys
from streams.topics import Topology, topology
from streams.validation import Limits
from tables.windows import WindowSpec

LOG_LEVELS = ("crit", "error", "warn", "info", "debug")  # Faust's worker levels


class SettingsError(ValueError):
    pass


def _var(name: str, default: Any, help: str) -> Any:
    return field(default=default, metadata={"env": name, "help": help})


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = _var(
        "CLICKSTREAM_KAFKA_BOOTSTRAP",
        "",
        "host:port[,host:port] of an existing Kafka; empty = the local one `clickstream up` starts",
    )
    redis_url: str = _var(
        "CLICKSTREAM_REDIS_URL", "", "redis:// URL of an existing Redis; empty = the local one"
    )
    local_kafka_port: int = _var("CLICKSTREAM_LOCAL_KAFKA_PORT", 9092, "port of the local Kafka")
    local_redis_port: int = _var("CLICKSTREAM_LOCAL_REDIS_PORT", 6379, "port of the local Redis")
    local_redis_password: str = _var(
        "CLICKSTREAM_LOCAL_REDIS_PASSWORD",
        "",
        "the local Redis asks every client for this password (requirepass); empty = none. An "
        "existing Redis takes its credentials in CLICKSTREAM_REDIS_URL (redis://:pw@host:port/0)",
    )
    var_dir: Path = _var(  # noqa: RUF009 - Path is immutable
        "CLICKSTREAM_VAR_DIR", Path("var"), "local Kafka/Redis/worker data"
    )
    app_id: str = _var(
        "CLICKSTREAM_APP_ID",
        "clickstream",
        "prefix of consumer group, changelogs, derived topics and Redis keys",
    )
    clock_app_id: str = _var(
        "CLICKSTREAM_CLOCK_APP_ID",
        "",
        "whose time log (ticks) to follow: empty = this app's own, which it writes; another "
        "app id = read that app's ticks and write none (a replay applies them where they were)",
    )
    clicks_topic: str = _var("CLICKSTREAM_CLICKS_TOPIC", "clicks", "click events input topic")
    orders_topic: str = _var("CLICKSTREAM_ORDERS_TOPIC", "orders", "OrderCreated input topic")
    partitions: int = _var("CLICKSTREAM_PARTITIONS", 4, "partitions of every topic we create")
    replication: int = _var(
        "CLICKSTREAM_REPLICATION",
        1,
        "replication factor of every topic we create (3 in production)",
    )
    window_seconds: int = _var("CLICKSTREAM_WINDOW_SECONDS", 60, "tumbling window size")
    grace_seconds: int = _var(
        "CLICKSTREAM_GRACE_SECONDS",
        30,
        "allowed lateness; later events go to the late-events topic",
    )
    hop_seconds: int = _var(
        "CLICKSTREAM_HOP_SECONDS",
        300,
        "hopping window length (a multiple of the window; it advances by one window)",
    )
    idle_seconds: float = _var(
        "CLICKSTREAM_IDLE_SECONDS",
        0.5,
        "a caught-up partition silent this long gets a tick that advances its event time; 0 = off",
    )
    session_gap_seconds: int = _var(
        "CLICKSTREAM_SESSION_GAP_SECONDS",
        1800,
        "a user's session ends after this much event time without a click",
    )
    metrics: str = _var(
        "CLICKSTREAM_METRICS",
        "all",
        f"click metrics to compute: all, or a comma list of {', '.join(keys.CLICK_METRICS)}",
    )
    retention_hours: float = _var(
        "CLICKSTREAM_RETENTION_HOURS", 24, "event time the served windows are kept in Redis"
    )
    top_k: int = _var(
        "CLICKSTREAM_TOP_K", 10, "pages and referrers ranked in each window's total (exact top-K)"
    )
    dedup_horizon_seconds: int = _var(
        "CLICKSTREAM_DEDUP_HORIZON_SECONDS",
        3600,
        "event time an event_id is remembered for dedup (at least window + grace)",
    )
    fraud: str = _var(
        "CLICKSTREAM_FRAUD", "on", "score every order for fraud (agents.fraud): on or off"
    )
    fraud_commit_seconds: float = _var(
        "CLICKSTREAM_FRAUD_COMMIT_SECONDS",
        0.1,
        "the fraud processors commit at most once per this; an order crosses three of them "
        "before its score is out (0 = every batch)",
    )
    fraud_policy_file: str = _var(
        "CLICKSTREAM_FRAUD_POLICY",
        "",
        "the fraud scoring policy (TOML, fraud/policies/default.toml shows the form); empty = "
        "that default",
    )
    store: str = _var(
        "CLICKSTREAM_STORE", "rocksdb://", "Faust table store: rocksdb:// or memory://"
    )
    batch_size: int = _var("CLICKSTREAM_BATCH_SIZE", 2000, "events per hot-path batch")
    batch_seconds: float = _var(
        "CLICKSTREAM_BATCH_SECONDS", 0.5, "longest wait before a partial batch is applied"
    )
    commit_seconds: float = _var(
        "CLICKSTREAM_COMMIT_SECONDS",
        1.0,
        "changed state goes to the changelog and Redis at most once per this; 0 = every batch",
    )
    fetch_max_wait_ms: int = _var(
        "CLICKSTREAM_FETCH_MAX_WAIT_MS",
        100,
        "how long the broker may hold the worker's fetch for CLICKSTREAM_FETCH_MIN_BYTES: "
        "added latency at low rates (engine.delivery.Fetch)",
    )
    fetch_min_bytes: int = _var(
        "CLICKSTREAM_FETCH_MIN_BYTES",
        1,
        "the least data a fetch waits for: larger means fewer, fuller fetches at low rates "
        "(less CPU per event, up to CLICKSTREAM_FETCH_MAX_WAIT_MS more latency)",
    )
    session_timeout_seconds: int = _var(
        "CLICKSTREAM_SESSION_TIMEOUT_SECONDS",
        30,
        "a worker silent or stopped this long leaves the group and its partitions move to the "
        "others; restarted sooner, it takes them back at once (static membership)",
    )
    worker_host: str = _var("CLICKSTREAM_WORKER_HOST", "127.0.0.1", "Faust web server bind address")
    worker_port: int = _var("CLICKSTREAM_WORKER_PORT", 6066, "Faust web server port")
    worker_id: str = _var(
        "CLICKSTREAM_WORKER_ID",
        "",
        "this worker's name: unique among the group's workers, the same across its restarts "
        "(its static member id, clickstream.membership); empty = the host name",
    )
    dashboard_host: str = _var("CLICKSTREAM_DASHBOARD_HOST", "127.0.0.1", "dashboard bind address")
    dashboard_port: int = _var("CLICKSTREAM_DASHBOARD_PORT", 8050, "dashboard port")
    dashboard_user: str = _var("CLICKSTREAM_DASHBOARD_USER", "admin", "dashboard login user")
    dashboard_password: str = _var(
        "CLICKSTREAM_DASHBOARD_PASSWORD",
        "",
        "set to require HTTP basic login on the dashboard and API",
    )
    max_event_bytes: int = _var(
        "CLICKSTREAM_MAX_EVENT_BYTES", 65536, "larger events go to the dead-letter topic"
    )
    max_future_skew_seconds: int = _var(
        "CLICKSTREAM_MAX_FUTURE_SKEW_SECONDS",
        300,
        "occurred_at may be this far after the Kafka record timestamp",
    )
    log_level: str = _var("CLICKSTREAM_LOG_LEVEL", "info", "worker log level")

    @property
    def python_log_level(self) -> str:
        return {"crit": "CRITICAL", "warn": "WARNING"}.get(self.log_level, self.log_level.upper())

    @property
    def uses_local_kafka(self) -> bool:
        return not self.kafka_bootstrap

    @property
    def uses_local_redis(self) -> bool:
        return not self.redis_url

    @property
    def bootstrap(self) -> str:
        return self.kafka_bootstrap or f"127.0.0.1:{self.local_kafka_port}"

    @property
    def redis(self) -> str:
        return self.redis_url or local_url(self.local_redis_port, self.local_redis_password)

    @property
    def topics(self) -> Topology:
        return topology(
            self.app_id, self.clicks_topic, self.orders_topic, self.partitions, self.clock
        )

    @property
    def clock(self) -> str:
        """The app id whose time log this app follows."""
        return self.clock_app_id or self.app_id

    @property
    def limits(self) -> Limits:
        return Limits(self.max_event_bytes, self.max_future_skew_seconds * 1000)

    @property
    def click_metrics(self) -> frozenset[str]:
        if self.metrics.strip() == "all":
            return frozenset(keys.CLICK_METRICS)
        return frozenset(name.strip() for name in self.metrics.split(",") if name.strip())

    @property
    def fraud_policy(self) -> Policy:
        try:
            return load_policy(Path(self.fraud_policy_file or DEFAULT_POLICY), FEATURES)
        except PolicyError as exc:
            raise SettingsError(f"CLICKSTREAM_FRAUD_POLICY: {exc}") from None

    @property
    def window_ms(self) -> int:
        return self.window_seconds * 1000

    @property
    def grace_ms(self) -> int:
        return self.grace_seconds * 1000

    @property
    def window_spec(self) -> WindowSpec:
        return WindowSpec(
            self.window_ms,
            self.grace_ms,
            self.dedup_horizon_seconds * 1000,
            self.hop_seconds * 1000,
        )

    def describe(self) -> list[tuple[str, str, str]]:
        """(variable, effective value, help) for every setting; secrets are masked."""
        rows = []
        for f in fields(self):
            value = getattr(self, f.name)
            shown = "***" if "password" in f.name and value else redacted(str(value))
            rows.append((f.metadata["env"], shown, f.metadata["help"]))
        return rows


def redacted(url: str) -> str:
    """A URL with its password as *** (to show or log it)."""
    parts = urlsplit(url)
    if "://" not in url or parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; `#` comments and blank lines skipped; surrounding quotes removed."""
    if not path.is_file():
        return {}
    pairs = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip().strip("'\"")
    return pairs


def load(env: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")) -> Settings:
    """Settings from `.env` overlaid by the environment; raises SettingsError on a bad value."""
    source = {**(read_dotenv(dotenv) if dotenv else {}), **(os.environ if env is None else env)}
    values: dict[str, Any] = {}
    for f in fields(Settings):
        name = f.metadata["env"]
        if name in source:
            values[f.name] = _convert(name, source[name], type(f.default))
    settings = Settings(**values)
    _check(settings)
    return settings


def _convert(name: str, text: str, kind: type) -> Any:
    parse: Callable[[str], Any] = kind
    try:
        return parse(text.strip())
    except ValueError:
        raise SettingsError(
            f"{name}={text!r} is not a valid {kind.__name__}; set it to a {kind.__name__} "
            f"or unset it to use the default"
        ) from None


def _check(s: Settings) -> None:
    for name, port in (
        ("CLICKSTREAM_LOCAL_KAFKA_PORT", s.local_kafka_port),
        ("CLICKSTREAM_LOCAL_REDIS_PORT", s.local_redis_port),
        ("CLICKSTREAM_WORKER_PORT", s.worker_port),
        ("CLICKSTREAM_DASHBOARD_PORT", s.dashboard_port),
    ):
        if not 1 <= port <= 65535:
            raise SettingsError(f"{name}={port} is not a TCP port; use 1..65535")
    for name, number in (
        ("CLICKSTREAM_PARTITIONS", s.partitions),
        ("CLICKSTREAM_WINDOW_SECONDS", s.window_seconds),
        ("CLICKSTREAM_BATCH_SIZE", s.batch_size),
        ("CLICKSTREAM_MAX_EVENT_BYTES", s.max_event_bytes),
    ):
        if number < 1:
            raise SettingsError(f"{name}={number} must be at least 1")
    if s.grace_seconds < 0:
        raise SettingsError(f"CLICKSTREAM_GRACE_SECONDS={s.grace_seconds} must be 0 or more")
    if s.dedup_horizon_seconds < s.window_seconds + s.grace_seconds:
        raise SettingsError(
            f"CLICKSTREAM_DEDUP_HORIZON_SECONDS={s.dedup_horizon_seconds} must be at least "
            f"window + grace ({s.window_seconds + s.grace_seconds})"
        )
    if s.hop_seconds < s.window_seconds or s.hop_seconds % s.window_seconds:
        raise SettingsError(
            f"CLICKSTREAM_HOP_SECONDS={s.hop_seconds} must be a multiple of "
            f"CLICKSTREAM_WINDOW_SECONDS ({s.window_seconds})"
        )
    unknown = s.click_metrics - set(keys.CLICK_METRICS)
    if unknown or not s.click_metrics:
        raise SettingsError(
            f"CLICKSTREAM_METRICS={s.metrics!r} names no metric or an unknown one "
            f"({', '.join(sorted(unknown))}); use all or some of {','.join(keys.CLICK_METRICS)}"
        )
    if keys.ATTRIBUTED in s.click_metrics and keys.SESSIONS not in s.click_metrics:
        raise SettingsError(
            f"CLICKSTREAM_METRICS={s.metrics!r}: {keys.ATTRIBUTED} attributes orders to sessions; "
            f"add {keys.SESSIONS}"
        )
    if s.session_gap_seconds <= 0:
        raise SettingsError(
            f"CLICKSTREAM_SESSION_GAP_SECONDS={s.session_gap_seconds} must be more than 0"
        )
    if s.idle_seconds < 0:
        raise SettingsError(f"CLICKSTREAM_IDLE_SECONDS={s.idle_seconds} must be 0 (off) or more")
    if s.top_k < 1:
        raise SettingsError(f"CLICKSTREAM_TOP_K={s.top_k} must be 1 or more")
    if s.retention_hours <= 0:
        raise SettingsError(f"CLICKSTREAM_RETENTION_HOURS={s.retention_hours} must be more than 0")
    if s.fraud_commit_seconds < 0:
        raise SettingsError(
            f"CLICKSTREAM_FRAUD_COMMIT_SECONDS={s.fraud_commit_seconds} must be 0 (every batch) "
            f"or more"
        )
    if s.commit_seconds < 0:
        raise SettingsError(
            f"CLICKSTREAM_COMMIT_SECONDS={s.commit_seconds} must be 0 (every batch) or more"
        )
    if s.fetch_max_wait_ms < 0 or s.fetch_min_bytes < 1:
        raise SettingsError(
            f"CLICKSTREAM_FETCH_MAX_WAIT_MS={s.fetch_max_wait_ms} must be 0 or more and "
            f"CLICKSTREAM_FETCH_MIN_BYTES={s.fetch_min_bytes} 1 or more"
        )
    if s.batch_seconds <= 0:
        raise SettingsError(f"CLICKSTREAM_BATCH_SECONDS={s.batch_seconds} must be more than 0")
    if s.log_level not in LOG_LEVELS:
        raise SettingsError(
            f"CLICKSTREAM_LOG_LEVEL={s.log_level!r} is not one of {', '.join(LOG_LEVELS)}"
        )
    if s.store not in ("rocksdb://", "memory://"):
        raise SettingsError(
            f"CLICKSTREAM_STORE={s.store!r} is not supported; use rocksdb:// or memory://"
        )
    for hostport in filter(None, s.kafka_bootstrap.split(",")):
        host, _, port_text = hostport.strip().rpartition(":")
        if not host or not port_text.isdigit():
            raise SettingsError(
                f"CLICKSTREAM_KAFKA_BOOTSTRAP={s.kafka_bootstrap!r} is not host:port[,host:port]"
            )
    if s.redis_url and urlparse(s.redis_url).scheme not in ("redis", "rediss", "unix"):
        raise SettingsError(
            f"CLICKSTREAM_REDIS_URL={s.redis_url!r} is not a URL like redis://127.0.0.1:6379/0"
        )
    if s.worker_id and not re.fullmatch(r"[A-Za-z0-9._-]{1,100}", s.worker_id):
        raise SettingsError(
            f"CLICKSTREAM_WORKER_ID={s.worker_id!r} may hold only letters, digits, '.', '-' "
            f"and '_' (at most 100)"
        )
    if s.fraud not in ("on", "off"):
        raise SettingsError(f"CLICKSTREAM_FRAUD={s.fraud!r} is not on or off")
    s.fraud_policy  # noqa: B018 - raises SettingsError for a policy that cannot be used
    for name, app_id in (("APP_ID", s.app_id), ("CLOCK_APP_ID", s.clock)):
        if not app_id.replace("-", "").replace("_", "").isalnum():
            raise SettingsError(
                f"CLICKSTREAM_{name}={app_id!r} may hold only letters, digits, '-' and '_'"
            )
