"""Redis from Debian's redis-server, on 127.0.0.1, data under `<home>/`: an append-only file
written every second, so a restart keeps (nearly) everything; the workers restate and read
back what the last second lost (clickstream.rebuild). With a password, every client must
AUTH first (`requirepass`, in a config file only its owner reads: not on the command line)."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import quote

from clickstream.local.process import LocalServiceError, ServerProcess


class LocalRedis:
    def __init__(self, home: Path, port: int, persist: bool = True, password: str = "") -> None:
        self.home = home
        self.port = port
        self.persist = persist  # False: a restart comes back empty (tests of that)
        self.password = password  # "": no AUTH asked
        self.process = ServerProcess("redis", home, port)

    @property
    def url(self) -> str:
        return local_url(self.port, self.password)

    def start(self, timeout: float = 20.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise LocalServiceError(
                "redis-server is missing; run scripts/bootstrap.sh or apt-get install redis-server"
            )
        self.home.mkdir(parents=True, exist_ok=True)
        config = self.home / "redis.conf"
        config.touch(mode=0o600)
        config.chmod(0o600)
        secret = self.password.replace("\\", "\\\\").replace('"', '\\"')
        config.write_text(f'requirepass "{secret}"\n' if self.password else "")
        self.process.spawn(
            [
                binary,
                str(config.resolve()),
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


def local_url(port: int, password: str = "") -> str:
    """The URL of a Redis on 127.0.0.1 at `port`, with its password when it has one."""
    credentials = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{credentials}127.0.0.1:{port}/0"
