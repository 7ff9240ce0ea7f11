"""Window logic of one partition: dedup, lateness, redelivery after a cut-short flush."""

from __future__ import annotations

import orjson

from tables.dedup import SeenIndex, seen_prefix
from tables.window_state import (
    Observation,
    Progress,
    Rejected,
    apply_batch,
    cell_key,
    progress_key,
)
from tables.windows import WindowSpec

SPEC = WindowSpec(size_ms=60_000, grace_ms=10_000, dedup_horizon_ms=600_000)
VIEW = (1,)


def view(offset: int, time_ms: int, url: str = "/a", event_id: str | None = None) -> Observation:
    return Observation(offset, event_id or f"e{offset}", time_ms, ((url, VIEW),))


def seen_index(store: dict[bytes, bytes]) -> SeenIndex:
    """What the worker keeps in memory: every stored seen bucket of partition 0."""
    return SeenIndex.load((k, v) for k, v in store.items() if k.startswith(seen_prefix(0)))


def run(items, store=None):
    store = {} if store is None else store
    out = apply_batch(0, items, SPEC, store.get, seen_index(store))
    for key, value in out.writes.items():
        if value is None:
            del store[key]
        else:
            store[key] = value
    return out, store


def count(store, start, url="/a"):
    return orjson.loads(store[cell_key(0, start, url)])["v"][0]


def test_events_count_in_the_window_of_their_own_time():
    out, store = run([view(0, 1_000), view(1, 59_999), view(2, 60_000)])
    assert count(store, 0) == 2 and count(store, 60_000) == 1
    assert out.progress.accepted == 3 and out.progress.watermark_ms == 60_000


def test_out_of_order_event_within_grace_is_counted():
    _, store = run([view(0, 65_000), view(1, 30_000)])  # window 0 closes at 70_000
    assert count(store, 0) == 1


def test_event_after_window_end_plus_grace_is_late_and_not_merged():
    out, store = run([view(0, 70_000), view(1, 30_000)])
    assert out.progress.late == 1 and [e.offset for e in out.late] == [1]
    assert cell_key(0, 0, "/a") not in store


def test_duplicate_event_id_counts_once():
    out, store = run([view(0, 1_000, event_id="x"), view(1, 2_000, event_id="x")])
    assert count(store, 0) == 1 and out.progress.duplicates == 1


def test_duplicate_across_batches_counts_once():
    _, store = run([view(0, 1_000, event_id="x")])
    out, store = run([view(5, 1_000, event_id="x")], store)
    assert count(store, 0) == 1 and out.progress.duplicates == 1


def test_redelivered_offsets_are_skipped():
    _, store = run([view(0, 1_000), view(1, 2_000)])
    out, store = run([view(0, 1_000), view(1, 2_000), view(2, 3_000)], store)
    assert count(store, 0) == 3 and out.progress.accepted == 3


def test_flush_cut_short_before_progress_does_not_double_count():
    first, _ = run([view(0, 1_000), view(1, 2_000)])
    partial = {k: v for k, v in first.writes.items() if k != progress_key(0)}  # progress lost
    out, replayed = run([view(0, 1_000), view(1, 2_000)], partial)
    assert count(replayed, 0) == 2 and out.progress.accepted == 2


def test_invalid_events_become_dead_letters_once():
    out, store = run([Rejected(0, "malformed_json", "x"), view(1, 1_000)])
    assert [d.offset for d in out.dead_letters] == [0]
    again, _ = run([Rejected(0, "malformed_json", "x")], store)
    assert again.dead_letters == [] and Progress.decode(store[progress_key(0)]).dead_letters == 1


def test_progress_is_written_after_every_other_key():
    out, _ = run([view(0, 1_000), view(1, 61_000, url="/b")])
    assert list(out.writes)[-1] == progress_key(0)


def test_multi_valued_cells_sum_each_value():
    order = Observation(0, "o1", 1_000, (("EUR", (1, 4990)),))
    order2 = Observation(1, "o2", 2_000, (("EUR", (1, 10)),))
    _, store = run([order, order2])
    assert orjson.loads(store[cell_key(0, 0, "EUR")])["v"] == [2, 5000]


def test_ids_first_seen_in_a_batch_are_stored_as_one_record():
    out, store = run([view(0, 1_000), view(1, 2_000), view(2, 3_000, event_id="e0")])
    buckets = [key for key in out.writes if key.startswith(seen_prefix(0))]
    assert len(buckets) == 1 and seen_index(store).offsets == {"e0": 0, "e1": 1}


def test_redelivery_after_a_cut_short_flush_is_not_a_duplicate():
    first, _ = run([view(0, 1_000), view(1, 2_000)])
    lost_cells = {k: v for k, v in first.writes.items() if k.startswith(seen_prefix(0))}
    out, store = run([view(0, 1_000), view(1, 2_000)], lost_cells)  # only the ids landed
    assert out.progress.duplicates == 0 and count(store, 0) == 2


def test_ids_older_than_the_dedup_horizon_are_forgotten():
    _, store = run([view(0, 1_000, event_id="x")])
    out, store = run([view(1, 700_000)], store)  # watermark 700 s: bucket of "x" (1 s) expires
    assert out.expired_buckets and not seen_index(store).offsets.keys() & {"x"}
    again, store = run([view(2, 695_000, event_id="x")], store)  # a very late duplicate
    assert again.progress.duplicates == 0 and again.progress.accepted == 3  # counts again


def test_ids_within_the_dedup_horizon_are_kept():
    _, store = run([view(0, 100_000, event_id="x")])
    out, store = run([view(1, 650_000), view(2, 640_000, event_id="x")], store)
    assert out.expired_buckets == [] and out.progress.duplicates == 1
