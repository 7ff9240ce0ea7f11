"""The worker stages several batches and commits them at once; a crash can cut that commit
short anywhere (a prefix of its writes in the keyspace's order lands). Redelivering from the
committed offsets must then emit exactly what an uninterrupted run emits: the same window
results, session summaries and attributions, nothing missing and nothing different under the
same id."""

from __future__ import annotations

import random

from engine.state import StagedState
from tables import sketch
from tables.attribution import OrderFacts
from tables.dedup import SeenIndex, seen_prefix
from tables.sessions import Visit
from tables.window_state import (
    KEYSPACE,
    Observation,
    Progress,
    Tick,
    apply_batch,
    load_sessions,
    progress_key,
)
from tables.windows import WindowSpec

SPEC = WindowSpec(size_ms=60_000, grace_ms=10_000, dedup_horizon_ms=3_600_000, hop_ms=180_000)
GAP = 120_000
MIN = 60_000


class DictStore(dict):
    def items(self, prefix: bytes = b""):  # type: ignore[override]
        return [(k, v) for k, v in sorted(super().items()) if k.startswith(prefix)]


def click(offset: int, time_ms: int, user: str, url: str, event_id: str) -> Observation:
    register, rank = sketch.position(user)
    return Observation(
        offset,
        event_id,
        time_ms,
        ((url, (1,)),),
        (("users", register, rank),),
        Visit(user, True, url),
    )


class Worker:
    """The committed store, and what one worker process stages over it (lost in a crash)."""

    def __init__(self) -> None:
        self.store = DictStore()
        self.restart()

    def restart(self) -> None:
        self.staged: dict[bytes, bytes | None] = {}
        self.final_panes: dict = {}  # closed panes kept in memory, as the worker keeps them
        self.seen = SeenIndex.load(self.store.items(seen_prefix(0)))
        self.sessions = load_sessions(0, SPEC, GAP, self.store)

    def committed(self) -> Progress:
        return Progress.decode(self.store.get(progress_key(0)))

    def apply(self, items):
        state = StagedState(self.store, self.staged)  # type: ignore[arg-type]
        settled = self.committed()
        out = apply_batch(
            0, items, SPEC, state, self.seen, self.sessions, settled, self.final_panes
        )
        self.staged.update(out.writes)
        for bucket in out.new_buckets:
            self.seen.add(*bucket)
        self.seen.drop(out.expired_buckets)
        return out

    def commit(self, land: int | None = None) -> None:
        """All staged writes in the keyspace's order, or only the first `land` (then the
        worker dies)."""
        writes = KEYSPACE.ordered(self.staged)
        for key, value in writes if land is None else writes[:land]:
            if value is None:
                self.store.pop(key, None)
            else:
                self.store[key] = value
        self.staged.clear()
        if land is not None:
            self.restart()


def traffic(rng: random.Random) -> list:
    """Clicks (some duplicated, out of order or late) and order facts forwarded among them
    (some twice), as an orders partition lagging or leading the clicks would send them."""
    users = [f"u{i}" for i in range(8)]
    times = sorted(rng.randrange(0, 60 * MIN) for _ in range(600))
    events: list = []
    orders_watermark, forwarded = -1, None
    for t in times:
        offset = len(events)
        if rng.random() < 0.08:
            if forwarded is not None and rng.random() < 0.3:  # forwarded again
                events.append(OrderFacts(offset, forwarded.orders, forwarded.watermark_ms))
                continue
            # orders on time on their own side: not older than the watermark they follow
            shift = rng.choice([-3 * MIN, 0, 2 * MIN])
            at = [max(t + shift + rng.randrange(-5_000, 5_000), orders_watermark, 0)]
            at += [at[0] + rng.randrange(0, 5_000) for _ in range(rng.randint(0, 3))]
            orders = [
                (f"o{offset}.{i}", rng.choice(users), time, rng.choice(["USD", "EUR"]), 100)
                for i, time in enumerate(at)
            ]
            orders_watermark = max(orders_watermark, *at)
            forwarded = OrderFacts(offset, orders, orders_watermark)
            events.append(forwarded)
            continue
        clicks = [e for e in events if isinstance(e, Observation)]
        if clicks and rng.random() < 0.05:  # a duplicate of an earlier event
            copy = rng.choice(clicks)
            events.append(click(offset, copy.time_ms, *_who(copy), copy.event_id))
            continue
        t += rng.choice([0, 0, 0, -20_000, -65_000, -200_000])
        events.append(click(offset, t, rng.choice(users), rng.choice("ab"), f"e{offset}"))
    end = len(events)  # offsets (of every input) are positions in the list
    return [*events, Tick(end, 200 * MIN), OrderFacts(end + 1, [], 200 * MIN)]


def _next(progress: Progress) -> int:
    """Where a restart resumes: every input's offsets are positions in the one list here."""
    return max(progress.offset, progress.ticks_offset, progress.facts_offset) + 1


def _who(event: Observation) -> tuple[str, str]:
    assert event.visit is not None
    return event.visit.user, event.visit.entry_host


def emitted(events: list, rng: random.Random | None) -> tuple[dict, dict, dict]:
    """Window results, session summaries and attributions by id; `rng` None: one batch per
    event, each committed."""
    worker, windows, sessions, attributions = Worker(), {}, {}, {}
    while (start := _next(worker.committed())) < len(events):
        for _ in range(rng.randint(1, 6) if rng else 1):  # batches staged in one interval
            size = rng.randint(1, 25) if rng else 1
            out = worker.apply(events[start : start + size])
            for w in out.closed:
                content = (w.counts, w.sketches)
                assert windows.setdefault((w.start_ms, w.end_ms), content) == content
            for s in out.sessions:
                assert sessions.setdefault((s.user, s.start_ms), s) == s
            for a in out.attributions:
                assert attributions.setdefault(a.start_ms, a.counts) == a.counts
            start += size
        if rng and rng.random() < 0.3:
            worker.commit(land=rng.randint(0, len(worker.staged)))  # crash mid-commit
        else:
            worker.commit()
    return windows, sessions, attributions


def test_a_commit_cut_short_anywhere_emits_exactly_what_an_uninterrupted_run_does():
    rng = random.Random(2026)
    for _ in range(8):
        events = traffic(rng)
        steady = emitted(events, None)
        assert len(steady[0]) > 60 and len(steady[1]) > 20 and len(steady[2]) > 10
        for _ in range(5):
            assert emitted(events, rng) == steady
