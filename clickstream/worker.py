"""Starting a Faust worker from our settings: topics and a replay's bounds first
(clickstream.replay), then Faust's own `worker` command, run by a Faust Worker that applies our
log rules (clickstream.logs) and checks the state folder against Kafka before the tables open
(clickstream.state_dir)."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys

import faust
from faust.types import TP

from clickstream import logs
from clickstream.app import create_app
from clickstream.kafka_admin import ensure_topics
from clickstream.local.process import port_open
from clickstream.replay import check_worker, read_bounds
from clickstream.settings import Settings, SettingsError
from clickstream.state_dir import check_state_folder, state_folder

# Each fetch brings thousands of records, and each becomes a few short-lived objects, freed by
# reference counting. Python's default first threshold (700 allocations) ran the cycle
# collector ~270 times a second, with a full pass over the heap a few times a second: ~20% of a
# page-view worker's CPU (measured with gc.callbacks). Cycles are still collected, just later.
GC_THRESHOLDS = (50_000, 20, 100)

log = logging.getLogger(__name__)


def run_worker(settings: Settings) -> None:
    if port_open(settings.worker_port, settings.worker_host):
        raise SettingsError(
            f"CLICKSTREAM_WORKER_PORT={settings.worker_port} is already in use on "
            f"{settings.worker_host}; give each worker on a host its own port"
        )
    asyncio.run(ensure_topics(settings.bootstrap, settings.topics.all(), settings.replication))
    bounds = asyncio.run(read_bounds(settings))  # a replayed version reads only its range
    check_worker(settings, bounds)
    state_folder(settings).mkdir(parents=True, exist_ok=True)
    stops = (
        {TP(tp.topic, tp.partition): o for tp, o in bounds.stop.items()}
        if bounds and bounds.stop
        else None
    )
    app = create_app(settings, stops)
    app.conf.Worker = worker_class(settings)  # type: ignore[assignment]  # a setting, typed oddly
    sys.argv = [sys.argv[0], "worker", "--loglevel", settings.log_level]
    gc.freeze()  # the modules and the app live as long as the worker: never scan them again
    gc.set_threshold(*GC_THRESHOLDS)
    app.main()


def worker_class(settings: Settings) -> type[faust.Worker]:
    class Worker(faust.Worker):  # the name is its log label, as Faust's own
        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            super().on_setup_root_logger(logger, level)
            logs.install(logger, self.app)

        async def on_execute(self) -> None:
            await super().on_execute()
            note = await check_state_folder(self.app, settings)
            if note is not None:
                log.warning(note)

    return Worker
