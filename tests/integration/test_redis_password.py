"""A local Redis with a password (CLICKSTREAM_LOCAL_REDIS_PASSWORD): every client must AUTH,
the app's URL carries the password, and nothing shows it (settings, the process list)."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from clickstream.local.process import free_port
from clickstream.local.redis import LocalRedis
from clickstream.settings import load
from tests.rig import clickstream

pytestmark = pytest.mark.integration

SECRET = 'p@ss/w:rd "q"'  # URL and config-file special characters


def test_a_local_redis_with_a_password_refuses_clients_without_it(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "CLICKSTREAM_LOCAL_REDIS_PORT": str(port),
        "CLICKSTREAM_LOCAL_REDIS_PASSWORD": SECRET,
        "CLICKSTREAM_VAR_DIR": str(tmp_path / "var"),
    }
    settings = load(env, dotenv=None)
    server = LocalRedis(tmp_path / "redis", port, password=settings.local_redis_password)
    server.start()
    try:
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).ping()
        assert redis.Redis.from_url(settings.redis).ping()
        config = tmp_path / "redis" / "redis.conf"
        assert config.stat().st_mode & 0o077 == 0, "only its owner reads the password"
        pid = server.process.pid()
        assert pid is not None
        assert SECRET.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
        shown = clickstream(env, "settings", timeout=60)
        assert shown.returncode == 0, shown.stderr
        assert "***" in shown.stdout and "p@ss" not in shown.stdout
        status = clickstream(env, "redis", "status", timeout=60)
        assert "p@ss" not in status.stdout + status.stderr
    finally:
        server.stop()
