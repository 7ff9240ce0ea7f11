"""A restate (serving.epoch, engine.runner): when Redis lost what the sinks wrote, each sink is
given its partitions' state whole, and writes back exactly what Redis showed of the panes the
state still holds, the pipeline counters and the metadata. The clicks and orders processors
through the runner (tests/unit/partition_rig.py), two partitions each."""

from __future__ import annotations

import copy

import faust

from engine.delivery import FaustConsumerView
from serving import keys
from tests.unit.partition_rig import APP, MIN, Click, ClicksRig, Malformed, Order, Tick, at

TRAFFIC = [
    Click(MIN + 1_000, user="u1", host="news.example", partition=0),
    Click(MIN + 2_000, user="u2", url="/p/2", partition=1),
    Click(2 * MIN + 5_000, user="u1", view=False, partition=0),
    Order(2 * MIN + 6_000, user="u1", currency="EUR", cents=1_250, partition=0),
    Order(2 * MIN + 7_000, user="u3", currency="JPY", cents=900, partition=1),
    Click(3 * MIN + 1_000, user="u3", partition=1),
    Malformed(partition=1),
]


def lose_redis(rig: ClicksRig) -> dict[str, dict]:
    """Redis restarts empty; what it held before."""
    before = copy.deepcopy(rig.redis)
    rig.redis.clear()
    for sink in rig.sinks.values():
        sink.redis_lost = True
    return before


async def test_a_restate_writes_back_every_open_pane_and_counter():
    rig = ClicksRig(partitions=2, orders_side=True)
    await rig.apply(TRAFFIC)
    await rig.driver.commit_if_due()  # the first round after the assignment restates too
    before = lose_redis(rig)
    await rig.driver.commit_if_due()  # the timer's round: the sinks say Redis lost it
    restated = rig.redis.pop(keys.restated(APP))
    assert restated == {
        keys.field(p, stream): "epoch" for p in (0, 1) for stream in ("clicks", "orders")
    }
    assert rig.redis == {k: v for k, v in before.items() if k != keys.restated(APP)}
    assert any(k.startswith(f"{APP}:{keys.ORDERS}:") for k in rig.redis)
    assert rig.redis[keys.dead_letter_reasons(APP, "clicks")] == {"1|malformed_json": 1}


async def test_a_restate_holds_no_value_redis_did_not_show():
    """Panes closed and deleted from the state are not restated (clickstream.projection
    brings them back from the window results); what is restated equals what was shown."""
    rig = ClicksRig(partitions=2, orders_side=True)
    await rig.apply(TRAFFIC)
    await rig.apply([Tick(30 * MIN, p, s) for p in (0, 1) for s in ("clicks", "orders")])
    await rig.apply([Click(30 * MIN + 1, partition=p) for p in (0, 1)])  # settles the deletes
    before = lose_redis(rig)
    assert f"{APP}:{keys.PAGE_VIEWS}:{at(MIN)}" in before
    await rig.driver.commit_if_due()
    rig.redis.pop(keys.restated(APP))
    for key, fields in rig.redis.items():
        assert fields.items() <= before[key].items(), key
    assert f"{APP}:{keys.PAGE_VIEWS}:{at(MIN)}" not in rig.redis  # deleted: its windows closed
    assert rig.redis[keys.pipeline(APP, "clicks")] == before[keys.pipeline(APP, "clicks")]


async def test_nothing_is_restated_while_redis_holds_what_was_written():
    rig = ClicksRig(partitions=2)
    await rig.apply(TRAFFIC[:2])
    await rig.driver.commit_if_due()  # the assignment's restate
    rig.redis.clear()
    await rig.driver.commit_if_due()
    assert rig.redis == {}


async def test_restates_wait_for_a_recovery_that_a_newer_rebalance_did_not_overtake():
    """Faust's recovery signals that its tables are ready, then checks whether a newer
    rebalance began meanwhile: a restate must not read tables still recovering for that one."""
    app = faust.App("restate-gate", broker="kafka://127.0.0.1:1")
    view = FaustConsumerView(app)
    app.consumer_generation_id, app.rebalancing = 1, True
    assert not view.recovered()
    await app.on_rebalance_complete.send()  # generation 1 recovered ...
    assert not view.recovered()  # ... but its recovery has not finished
    app.rebalancing = False
    assert view.recovered()
    app.consumer_generation_id, app.rebalancing = 2, True  # generation 2 began
    await app.on_rebalance_complete.send()  # the stale signal of a recovery it overtook
    assert not view.recovered()
    app.rebalancing = False  # generation 2's own recovery finished
    assert view.recovered()
