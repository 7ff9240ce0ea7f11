"""Worker log rules: a start without ERROR lines or offset tables, a fatal error as one line.
The messages they match are pinned to the installed faust, mode and aiokafka sources."""

from __future__ import annotations

import ast
import io
import itertools
import logging
from pathlib import Path

import aiokafka
import faust
import mode
import pytest
from aiokafka.errors import GroupCoordinatorNotAvailableError, UnknownMemberIdError
from faust.exceptions import ConsistencyError

from clickstream import health, logs

SOURCES = {
    logs.HIGHWATER_TABLE: (faust, "tables/recovery.py"),
    logs.OFFSETS_TABLE: (faust, "tables/recovery.py"),
    logs.RECOVERY_PROGRESS: (faust, "tables/recovery.py"),
    logs.COORDINATOR_FAILED: (aiokafka, "consumer/group_coordinator.py"),
    logs.COORDINATOR_DEAD: (aiokafka, "consumer/group_coordinator.py"),
    logs.GROUP_SYNCED: (aiokafka, "consumer/group_coordinator.py"),
    logs.SERVICE_CRASHED: (mode, "services.py"),
    logs.DRAIN_RAISED: (faust, "transport/consumer.py"),
    logs.WORKER_CRASHED: (mode, "worker.py"),
    logs.START_FAILED: (mode, "worker.py"),
}


@pytest.mark.parametrize("template", SOURCES)
def test_each_message_matched_is_logged_by_the_installed_library(template):
    package, module = SOURCES[template]
    source = Path(package.__file__).parent / module
    strings = {
        node.value
        for node in ast.walk(ast.parse(source.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }
    assert template in strings, f"{module} no longer logs {template!r}"


LOGGERS = itertools.count()


class Log:
    """A logger with one handler at `level`, our rules on it, and what it printed."""

    def __init__(self, level: int = logging.INFO, clock: list[float] | None = None) -> None:
        self.out = io.StringIO()
        # a name never used before: an id() is reused once its object is freed, and the old
        # logger would still hold its handler, whose rules would then rule these records
        self.logger = logging.getLogger(f"test_logs.{next(LOGGERS)}")
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)
        handler = logging.StreamHandler(self.out)
        handler.setLevel(level)
        handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
        self.logger.addHandler(handler)
        app = faust.App("t", store="memory://", datadir="/tmp/t-data", env={})
        self.rules = logs.install(self.logger, app)
        if clock is not None:
            self.rules.clock = lambda: clock[0]

    def lines(self) -> list[str]:
        return self.out.getvalue().splitlines()


def crash_with(log: Log, reason: BaseException) -> None:
    """What Faust and mode log when `reason` stops a worker from its fetch path."""
    try:
        raise reason
    except BaseException as exc:
        log.logger.exception("[^--Consumer]: " + logs.DRAIN_RAISED, exc)
        log.logger.exception("[^---Fetcher]: " + logs.SERVICE_CRASHED, exc)
    log.logger.exception("[^-App]: " + logs.SERVICE_CRASHED, reason)  # no exception at hand
    log.logger.error("Task exception was never retrieved")  # the shutdown that follows
    log.logger.info("[^----OneForOneSupervisor: (1@0x7f)]: Restarting dead %r", "agent")
    log.logger.critical("[^Worker]: " + logs.WORKER_CRASHED)


def test_fatal_error_is_one_line_naming_its_cause():
    log = Log()
    crash_with(log, OSError(28, "No space left on device"))
    errors = [line for line in log.lines() if not line.startswith("[INFO]")]
    assert errors == ["[ERROR] worker stopped: OSError: [Errno 28] No space left on device"]
    assert "NoneType: None" not in log.out.getvalue()


def test_fatal_error_tracebacks_stay_at_debug_without_nonetype_none():
    log = Log(logging.DEBUG)
    crash_with(log, OSError(28, "No space left on device"))
    text = log.out.getvalue()
    assert text.count("Traceback (most recent call last)") == 3
    assert "NoneType: None" not in text
    assert text.count("[ERROR]") == 1 and "[CRITICAL]" not in text


def test_failed_start_is_one_line_too():
    log = Log()
    try:
        raise RuntimeError("cannot reach Kafka")
    except RuntimeError as exc:
        log.logger.exception("[^Worker]: " + logs.START_FAILED, exc)
    assert log.lines() == ["[ERROR] worker stopped: RuntimeError: cannot reach Kafka"]


def test_inconsistent_state_folder_line_names_the_folder_and_the_fix():
    line = logs.stop_line(ConsistencyError("persisted offset\nis higher"), Path("var/w"))
    assert line == (
        "worker stopped: ConsistencyError: persisted offset is higher "
        "(remove var/w to rebuild the tables from their changelogs)"
    )


def test_recovery_offset_tables_become_one_summary_line():
    log = Log()
    table = "+Highwater - Active-+\n| t | 0 | -1 |\n+----+"
    log.logger.info("[^---Recovery]: " + logs.HIGHWATER_TABLE, "active", table)
    log.logger.info("[^---Recovery]: " + logs.OFFSETS_TABLE, "active", table)
    log.logger.info("[^---Recovery]: " + logs.OFFSETS_TABLE, "standby", table)
    assert log.lines() == ["[INFO] [^---Recovery]: 0 records to read from 0 changelog partitions"]


def test_recovery_progress_keeps_its_line_without_the_table():
    log = Log()
    log.logger.info("[^---Recovery]: " + logs.RECOVERY_PROGRESS, "3 s", 5000, "+table+\n|..|")
    assert log.lines() == [
        "[INFO] [^---Recovery]: Still fetching changelog topics for recovery, "
        "estimated time remaining 3 s (total remaining=5000)"
    ]


def coordinator_troubles(log: Log) -> None:
    log.logger.error(logs.COORDINATOR_FAILED, GroupCoordinatorNotAvailableError())
    log.logger.warning(logs.COORDINATOR_DEAD, 1, "g")


def levels(log: Log) -> list[str]:
    return [line.split(" ")[0] for line in log.lines()]


def test_coordinator_still_loading_is_quiet_while_the_group_forms():
    now = [100.0]
    log = Log(clock=now)
    coordinator_troubles(log)
    now[0] += logs.COORDINATOR_GRACE_SECONDS - 1
    coordinator_troubles(log)
    assert log.lines() == []


def test_coordinator_troubles_are_warnings_once_the_group_took_too_long_or_formed():
    now = [100.0]
    log = Log(clock=now)
    coordinator_troubles(log)
    now[0] += logs.COORDINATOR_GRACE_SECONDS + 1
    coordinator_troubles(log)
    assert levels(log) == ["[WARNING]", "[WARNING]"]
    formed = Log()
    formed.logger.info(logs.GROUP_SYNCED, "g", 1)
    coordinator_troubles(formed)
    assert levels(formed) == ["[INFO]", "[WARNING]", "[WARNING]"]


def test_a_coordinator_error_that_is_not_retried_stays_an_error():
    log = Log()
    log.logger.error(logs.COORDINATOR_FAILED, UnknownMemberIdError())
    assert log.lines()[0].startswith("[ERROR] Group Coordinator Request failed")


def test_client_errors_are_held_back_while_the_broker_does_not_answer():
    clock = [0.0]
    log = Log()
    log.rules.broker = watch = health.BrokerWatch(lambda: clock[0])
    handler = log.logger.handlers[0]
    for name in ("aiokafka.test-held", "clickstream.health"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.propagate = False
    client = logging.getLogger("aiokafka.test-held")
    try:
        client.error("Unable connect to node with id 1: refused")  # before any probe: shown
        watch.probed(False, "127.0.0.1:9092")
        for _ in range(105):  # a second of a dead broker
            client.error("Unable connect to node with id 1: refused")
        clock[0] = 31.0
        watch.probed(False, "127.0.0.1:9092")
        client.warning("Heartbeat failed")
        clock[0] = 40.0
        watch.probed(True, "127.0.0.1:9092")
        client.error("Unable connect to node with id 1: refused")  # reachable again: shown
    finally:
        for name in ("aiokafka.test-held", "clickstream.health"):
            logging.getLogger(name).removeHandler(handler)
            logging.getLogger(name).propagate = True
    assert log.lines() == [
        "[ERROR] Unable connect to node with id 1: refused",
        "[WARNING] Kafka at 127.0.0.1:9092 does not answer; retrying (client errors summarized "
        "every 30 s)",
        "[WARNING] Kafka at 127.0.0.1:9092 still does not answer after 31 s (105 client log "
        "lines held back)",
        "[WARNING] Kafka at 127.0.0.1:9092 answers again (1 client log lines held back)",
        "[ERROR] Unable connect to node with id 1: refused",
    ]
