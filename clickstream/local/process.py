"""A background server process with a pid file, a log file and a TCP readiness probe."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast


class LocalServiceError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up once in the parent (a forked child should not load libraries)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return cast(Callable[..., int], libc.prctl)
    except (OSError, AttributeError):  # not Linux
        return None


_PRCTL = _prctl()


def stop_with_parent() -> None:
    """A child's preexec_fn: SIGTERM it (a clean stop) when the process that started it dies,
    even by SIGKILL, so that a killed `replay` or `up` leaves no worker behind (Linux; a no-op
    elsewhere)."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class ServerProcess:
    """Starts `argv` detached in its own process group; `stop()` ends the whole group."""

    def __init__(self, name: str, home: Path, port: int) -> None:
        self.name = name
        self.home = home
        self.port = port
        self.pid_file = home / f"{name}.pid"
        self.log_file = home / f"{name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        return pid

    def running(self) -> bool:
        return self.pid() is not None

    def spawn(self, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        if self.running():
            return
        if port_open(self.port):
            raise LocalServiceError(
                f"port {self.port} on 127.0.0.1 is already in use, so {self.name} cannot start; "
                f"stop what holds it or choose another port"
            )
        self.home.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )
        self.pid_file.write_text(str(proc.pid))

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise LocalServiceError(f"{self.name} exited during start; see {self.log_file}")
            if port_open(self.port):
                return
            time.sleep(0.2)
        raise LocalServiceError(f"{self.name} did not open port {self.port} in {timeout:.0f}s")

    def stop(self, timeout: float = 20.0) -> None:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)

    def tail(self, lines: int = 40) -> str:
        if not self.log_file.is_file():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child of ours counts as gone once reaped
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    return True
