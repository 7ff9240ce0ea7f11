"""SIGKILL the worker mid-stream, several times, restart it each time: the results still equal
the oracle exactly (nothing lost, nothing counted twice, redelivered events recognised), and
every window result, session summary and attribution is the oracle's (one sent again after a
crash says exactly the same)."""

from __future__ import annotations

import random
import shutil
import signal
import time

import pytest
import redis

from serving import keys
from tests.rig import (
    FAULTY_TRAFFIC,
    attribution_results,
    processed,
    produce_and_expect,
    session_summaries,
    summed_cells,
    tumbling_results,
    wait_until,
)

pytestmark = pytest.mark.integration

WORKLOAD = FAULTY_TRAFFIC
KILLS = 4


@pytest.fixture(autouse=True)
def commit_often_and_short_sessions(pipeline_env):
    # many commits per worker life, so the kills land between, before and during them
    pipeline_env["CLICKSTREAM_COMMIT_SECONDS"] = "0.2"
    # sessions that end within the traffic's ten minutes of event time
    pipeline_env["CLICKSTREAM_SESSION_GAP_SECONDS"] = "60"


def total_processed(client: redis.Redis, app: str) -> int:
    return processed(client, app, "clicks") + processed(client, app, "orders")


def test_sigkill_at_random_points_then_restart_gives_exact_results(
    settings, start_worker, redis_server, tmp_path
):
    expected = produce_and_expect(settings, WORKLOAD, tmp_path)
    total = sum(expected.messages.values())
    client = redis.Redis.from_url(redis_server.url)
    app = settings.app_id
    rng = random.Random(7)

    for kill in range(KILLS):
        worker = start_worker()
        # each worker makes real progress (5..20% of the input) before it is killed; one that
        # overshoots (progress shows once per commit) leaves the next ones less to do
        target = min(total_processed(client, app) + rng.uniform(0.05, 0.2) * total, total)
        wait_until(
            lambda t=target: total_processed(client, app) >= t,
            within=240,
            why=f"{int(target)} processed before kill {kill}",
            alive=worker.alive,
        )
        time.sleep(rng.uniform(0, 0.2))  # land anywhere in the next batch
        worker.stop(signal.SIGKILL)
        if kill == 1:  # once, lose the local store too: recover from the changelog
            shutil.rmtree(settings.var_dir / f"worker-{worker.env['CLICKSTREAM_WORKER_PORT']}")

    worker = start_worker()
    wait_until(
        lambda: total_processed(client, app) == total,
        within=300,
        why="everything processed after the last restart",
        alive=worker.alive,
    )
    assert summed_cells(client, app, keys.PAGE_VIEWS, 0) == expected.page_views
    assert summed_cells(client, app, keys.ORDERS, 0) == expected.orders
    assert summed_cells(client, app, keys.ORDERS, 1) == expected.revenue
    assert summed_cells(client, app, keys.CLICK_TYPES, 0) == expected.click_types
    assert tumbling_results(settings) == expected.final_results
    # without ticks the last sessions and panes stay open; all that closed are the oracle's
    summaries = session_summaries(settings)
    assert len(summaries) > 100 and summaries <= expected.sessions
    attributed = attribution_results(settings)
    assert len(attributed) > 20
    assert attributed == {k: expected.attributed[k] for k in attributed}
