"""What a worker's log says as it starts, and the one line it ends with on a fatal error.

Rules, applied by a filter on each handler Faust's worker gives the root logger (messages are
matched by their exact templates in faust, mode and aiokafka, pinned by tests/unit/test_logs.py):

- Recovery's offset tables (a row per changelog partition) go to DEBUG; instead one INFO line
  says how many changelog partitions recovery reads and how many records.
- While the group forms (until the worker's first successful sync, for at most
  COORDINATOR_GRACE_SECONDS), aiokafka's retried coordinator troubles are DEBUG: "Group
  Coordinator Request failed" on a retriable error and "Marking the coordinator dead" (the
  coordinator is still loading, as on a fresh cluster). Later a retriable lookup failure is a
  WARNING (it is retried), never an ERROR.
- A fatal error: mode logs "Crashed reason=..." with a traceback for every service it passes,
  then "We experienced a crash!", and the shutdown that follows logs what fails for want of
  the crashed parts. All that becomes one ERROR line, "worker stopped: <ExceptionType>:
  <message>"; the rest, tracebacks included, stays at DEBUG.
- While the worker's probe finds the broker unreachable (clickstream.health), the client
  library's warnings and errors go to DEBUG, summarized by the probe's own lines.
- A record logged with exc_info where no exception was being handled loses it (mode's
  supervisors print `NoneType: None` otherwise).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from faust.exceptions import ConsistencyError
from faust.types import AppT

from clickstream.health import BROKER, BrokerWatch
from engine.internals import active_recovery

COORDINATOR_GRACE_SECONDS = 30.0

# faust/tables/recovery.py
HIGHWATER_TABLE = "Highwater for %s changelog partitions:\n%s"
OFFSETS_TABLE = "%s offsets at start of reading:\n%s"
RECOVERY_PROGRESS = (
    "Still fetching changelog topics for recovery, estimated time remaining %s "
    "(total remaining=%r):\n%s"
)
# aiokafka/consumer/group_coordinator.py
COORDINATOR_FAILED = "Group Coordinator Request failed: %s"
COORDINATOR_DEAD = "Marking the coordinator dead (node %s)for group %s."
GROUP_SYNCED = "Successfully synced group %s with generation %s"
# mode/services.py, faust/transport/consumer.py, mode/worker.py
SERVICE_CRASHED = "Crashed reason=%r"
DRAIN_RAISED = "Drain messages raised: %r"
WORKER_CRASHED = "We experienced a crash! Reraising original exception..."
START_FAILED = "Error: %r"

RULED = "clickstream_ruled"  # set on a record once the rules have seen it
log = logging.getLogger(__name__)


def stop_line(reason: BaseException | None, state_folder: Path | None = None) -> str:
    """The last line of a worker that stopped on `reason`."""
    if reason is None:
        return "worker stopped after a crash (the DEBUG log has the traceback)"
    message = " ".join(str(reason).split())  # one line, whatever the exception says
    line = f"worker stopped: {type(reason).__name__}"
    if message:
        line += f": {message}"
    if isinstance(reason, ConsistencyError) and state_folder is not None:
        line += f" (remove {state_folder} to rebuild the tables from their changelogs)"
    return line


class WorkerLogRules:
    """The rules above; `apply` rewrites a record in place and returns its level now."""

    def __init__(
        self,
        recovery_counts: Callable[[], tuple[int, int] | None] = lambda: None,
        state_folder: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        broker: BrokerWatch = BROKER,
    ) -> None:
        self.recovery_counts = recovery_counts  # (changelog partitions, records to read)
        self.broker = broker
        self.state_folder = state_folder
        self.clock = clock
        self.crash_reason: BaseException | None = None
        self.stopped = False  # the stop line was logged
        self.group_formed = False
        self._forming_trouble_since: float | None = None

    def apply(self, record: logging.LogRecord) -> int:
        if getattr(record, RULED, False):
            return record.levelno
        setattr(record, RULED, True)
        if record.exc_info and record.exc_info[0] is None:
            record.exc_info = None  # logged "with" an exception while none was being handled
        template = _template(record)
        level = self._level(record, template)
        if level != record.levelno:
            record.levelno, record.levelname = level, logging.getLevelName(level)
        return level

    def _level(self, record: logging.LogRecord, template: str) -> int:
        args: Any = record.args if isinstance(record.args, tuple) else ()
        if template == WORKER_CRASHED:
            return self._stop(record, self.crash_reason)
        if template == START_FAILED and args and isinstance(args[0], BaseException):
            return self._stop(record, self.crash_reason or args[0])
        if self.crash_reason is not None and record.levelno >= logging.WARNING:
            _give_traceback(record, args[0] if args else None)
            return logging.DEBUG  # the worker is going down: what fails now follows from it
        if self.broker.holds(record):
            return logging.DEBUG  # the broker does not answer: summarized (clickstream.health)
        if template in (HIGHWATER_TABLE, OFFSETS_TABLE):
            if template == OFFSETS_TABLE and args and args[0] == "active":
                return self._summarise_recovery(record)
            return logging.DEBUG
        if template == RECOVERY_PROGRESS and len(args) == 3:
            record.msg = record.msg.replace(":\n%s", "")
            record.args = args[:2]
            return record.levelno
        retried = template == COORDINATOR_FAILED and _retriable(args)
        if retried or template == COORDINATOR_DEAD:
            if self._still_forming():
                return logging.DEBUG
            return logging.WARNING if retried else record.levelno
        if template == GROUP_SYNCED:
            self.group_formed = True
            return record.levelno
        if template in (SERVICE_CRASHED, DRAIN_RAISED) and args:
            if self.crash_reason is None and isinstance(args[0], BaseException):
                self.crash_reason = args[0]
            _give_traceback(record, args[0])
            return logging.DEBUG
        return record.levelno

    def _still_forming(self) -> bool:
        if self.group_formed:
            return False
        now = self.clock()
        if self._forming_trouble_since is None:
            self._forming_trouble_since = now
        return now - self._forming_trouble_since < COORDINATOR_GRACE_SECONDS

    def _summarise_recovery(self, record: logging.LogRecord) -> int:
        counts = self.recovery_counts()
        if counts is None:
            return logging.DEBUG
        log.debug(record.getMessage())  # the table itself, at DEBUG
        partitions, records = counts
        record.msg = _prefix(record) + "%d records to read from %d changelog partitions"
        record.args = (records, partitions)
        return logging.INFO

    def _stop(self, record: logging.LogRecord, reason: BaseException | None) -> int:
        if self.stopped:
            return logging.DEBUG
        self.stopped = True
        if record.exc_info and record.exc_info[1] is not None:
            log.debug("traceback of the stop", exc_info=record.exc_info)
        record.exc_info, record.exc_text = None, None
        record.msg, record.args = "%s", (stop_line(reason, self.state_folder),)
        return logging.ERROR


class _HandlerRules(logging.Filter):
    """The rules at one handler: a record demoted below the handler's level is dropped there."""

    def __init__(self, rules: WorkerLogRules, handler: logging.Handler) -> None:
        super().__init__()
        self.rules, self.handler = rules, handler

    def filter(self, record: logging.LogRecord) -> bool:
        return self.rules.apply(record) >= self.handler.level


def install(root: logging.Logger, app: AppT) -> WorkerLogRules:
    """Put the rules on every handler of `root` (once Faust's worker has set up logging)."""
    rules = WorkerLogRules(lambda: _recovery_counts(app), Path(app.conf.datadir))
    for handler in root.handlers:
        if not any(isinstance(f, _HandlerRules) for f in handler.filters):
            handler.addFilter(_HandlerRules(rules, handler))
    return rules


def _recovery_counts(app: AppT) -> tuple[int, int] | None:
    try:
        highwaters, offsets = active_recovery(app)
        to_read = sum(max(highwaters.get(tp, -1) - offset, 0) for tp, offset in offsets.items())
        return len(offsets), to_read
    except Exception:  # the counts are a courtesy: without them the table stays at DEBUG
        return None


def _retriable(args: tuple[Any, ...]) -> bool:
    return bool(args) and bool(getattr(args[0], "retriable", False))


def _prefix(record: logging.LogRecord) -> str:
    """mode's service label in front of a message ("[^---Recovery]: "), or ""."""
    msg = str(record.msg)
    if msg.startswith("[^") and "]: " in msg:
        return msg[: msg.index("]: ") + 3]
    return ""


def _template(record: logging.LogRecord) -> str:
    return str(record.msg)[len(_prefix(record)) :]


def _give_traceback(record: logging.LogRecord, reason: object) -> None:
    """mode logs a crash with exc_info even where no exception is being handled: give such a
    record the reason's own traceback."""
    if record.exc_info is None and isinstance(reason, BaseException) and reason.__traceback__:
        record.exc_info = (type(reason), reason, reason.__traceback__)
