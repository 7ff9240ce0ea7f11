"""Redis from Debian's redis-server, on 127.0.0.1, data under `<home>/`: an append-only file
written every second, so a restart keeps (nearly) everything; the workers restate and read
back what the last second lost (clickstream.rebuild)."""

from __future__ import annotations

import shutil
from pathlib import Path

from clickstream.local.process import LocalServiceError, ServerProcess


class LocalRedis:
    def __init__(self, home: Path, port: int, persist: bool = True) -> None:
        self.home = home
        self.port = port
        self.persist = persist  # False: a restart comes back empty (tests of that)
        self.process = ServerProcess("redis", home, port)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise LocalServiceError(
                "redis-server is missing; run scripts/bootstrap.sh or apt-get install redis-server"
            )
        self.home.mkdir(parents=True, exist_ok=True)
        self.process.spawn(
            [
                binary,
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--dir", str(self.home.resolve()),
                "--save", "",
                "--appendonly", "yes" if self.persist else "no",
                "--appendfsync", "everysec",
                "--protected-mode", "yes",
            ]
        )  # fmt: skip
        self.process.wait_ready(timeout)

    def stop(self) -> None:
        self.process.stop()
