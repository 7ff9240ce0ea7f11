"""Dedup past its horizon (tables.dedup): an event's verdict is decided at its place in the log,
by the watermark at that event, and an id's record is deleted only once the committed watermark
is past the horizon. So a duplicate caught stays caught after any commit cut short, and one just
past the horizon gets one verdict however the input was batched (both once broke: ids expired
by the watermark staged at the end of a batch, deleted before the commit's progress).

The clicks processor through the runner (tests/unit/partition_rig.py), one partition."""

from __future__ import annotations

from tests.unit.partition_rig import MIN, ClicksRig, Emitted, click, tick

AFTER_THE_HORIZON = 2 * 60 * MIN  # SPEC's dedup horizon is an hour


async def duplicate_then_jump(land: int | None) -> ClicksRig:
    """A click committed; in the next commit interval the same click again (a duplicate),
    then a tick past the horizon (the click's id expires); that commit cut short after `land`
    writes (None: not cut), then redelivered."""
    rig = ClicksRig()
    await rig.apply([click(0, event_id="e1")])
    rig.produce([click(0, event_id="e1")])
    await rig.driver.pump()
    rig.produce([tick(AFTER_THE_HORIZON)])
    await rig.driver.pump()
    await commit_cut_short(rig, land)
    return rig


async def commit_cut_short(rig: ClicksRig, land: int | None) -> None:
    """Commit what is staged, cut short after `land` writes (None: not cut) and redelivered."""
    if land is not None:
        await rig.crash(land=land)
        await rig.driver.pump()
    await rig.commit()
    assert rig.caught_up()


def emitted(rig: ClicksRig) -> Emitted | str:
    try:
        return rig.emitted()
    except AssertionError as exc:  # one id sent with two contents
        return str(exc)


async def emitted_or_conflict(land: int | None) -> Emitted | str:
    return emitted(await duplicate_then_jump(land))


async def test_a_duplicate_caught_before_its_id_expired_stays_caught_after_a_cut_short_commit():
    expected = (await duplicate_then_jump(None)).emitted()
    assert expected.counters["clicks", 0]["duplicates"] == 1  # counted once
    probe = await duplicate_then_jump(10**6)
    writes = probe.driver.broker.commits[1].step.writes[0]
    assert not any(key.startswith(b"S|") and value is None for key, value in writes)  # kept
    for land in range(len(writes) + 1):
        assert await emitted_or_conflict(land) == expected, f"cut after {land} writes"


async def test_an_ids_record_goes_once_the_committed_watermark_is_past_the_horizon_even_if_cut():
    async def run(land: int | None) -> tuple[ClicksRig, Emitted | str]:
        rig = ClicksRig()
        await rig.apply([click(0, event_id="e1")])
        await rig.apply([tick(AFTER_THE_HORIZON)])  # committed: e1's record may go now
        rig.produce([click(0, event_id="e1"), click(AFTER_THE_HORIZON, event_id="e2")])
        await rig.driver.pump()
        await commit_cut_short(rig, land)
        return rig, emitted(rig)

    rig, expected = await run(None)
    assert isinstance(expected, Emitted)
    progress = rig.progress()
    assert (progress.duplicates, progress.late) == (0, 1)  # e1 again, past the horizon: late
    writes = rig.driver.broker.commits[2].step.writes[0]
    assert any(key.startswith(b"S|") and value is None for key, value in writes)  # e1's goes
    for land in range(len(writes) + 1):
        assert (await run(land))[1] == expected, f"cut after {land} writes"


async def test_a_duplicate_just_past_the_horizon_gets_one_verdict_however_it_is_batched():
    verdicts = []
    for together in (True, False):
        rig = ClicksRig()
        await rig.apply([click(0, event_id="e1")])
        jump, again = click(AFTER_THE_HORIZON, event_id="e2"), click(0, event_id="e1")
        if together:
            await rig.apply([jump, again])
        else:
            await rig.apply([jump])
            await rig.apply([again])
        progress = rig.progress()
        verdicts.append((progress.duplicates, progress.late, len(rig.emitted().late_events)))
    assert verdicts == [(0, 1, 1), (0, 1, 1)]  # forgotten at the jump: a late event, not a dup
