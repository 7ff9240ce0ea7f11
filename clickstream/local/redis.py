"""Redis from Debian's redis-server, on 127.0.0.1, data under `<home>/`."""

from __future__ import annotations

import shutil
from pathlib import Path

from clickstream.local.process import LocalServiceError, ServerProcess


class LocalRedis:
    def __init__(self, home: Path, port: int) -> None:
        self.home = home
        self.port = port
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
                "--appendonly", "no",
                "--protected-mode", "yes",
            ]
        )  # fmt: skip
        self.process.wait_ready(timeout)

    def stop(self) -> None:
        self.process.stop()
