"""Starting a Faust worker from our settings: topics first, then Faust's own `worker` command."""

from __future__ import annotations

import asyncio
import sys

from clickstream.app import create_app
from clickstream.kafka_admin import ensure_topics
from clickstream.local.process import port_open
from clickstream.settings import Settings, SettingsError


def run_worker(settings: Settings) -> None:
    if port_open(settings.worker_port, settings.worker_host):
        raise SettingsError(
            f"CLICKSTREAM_WORKER_PORT={settings.worker_port} is already in use on "
            f"{settings.worker_host}; give each worker on a host its own port"
        )
    asyncio.run(ensure_topics(settings.bootstrap, settings.topics.all(), settings.replication))
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    sys.argv = [sys.argv[0], "worker", "--loglevel", settings.log_level]
    app.main()
