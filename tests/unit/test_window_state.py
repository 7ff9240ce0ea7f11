"""Window logic of one partition, with event time as the only clock: dedup, lateness, window
close and final results (tumbling and hopping), ticks, retention, redelivery after a cut-short
flush."""

from __future__ import annotations

import itertools

import orjson

from tables import sketch
from tables.dedup import SeenIndex, seen_prefix
from tables.panes import cell_key, panes_key, sketch_key
from tables.window_state import Observation, Progress, Rejected, Tick, apply_batch, progress_key
from tables.windows import WindowSpec

SPEC = WindowSpec(size_ms=60_000, grace_ms=10_000, dedup_horizon_ms=600_000, hop_ms=180_000)
VIEW = (1,)


class DictStore(dict):
    """A partition's stored state as a plain dict (what RocksDB holds for one partition)."""

    def items(self, prefix: bytes = b""):  # type: ignore[override]
        return [(k, v) for k, v in sorted(super().items()) if k.startswith(prefix)]


def view(
    offset: int, time_ms: int, url: str = "/a", event_id: str | None = None, user: str = "u1"
) -> Observation:
    register, rank = sketch.position(user)
    return Observation(
        offset, event_id or f"e{offset}", time_ms, ((url, VIEW),), (("users", register, rank),)
    )


def seen_index(store: dict[bytes, bytes]) -> SeenIndex:
    """What the worker keeps in memory: every stored seen bucket of partition 0."""
    return SeenIndex.load((k, v) for k, v in store.items() if k.startswith(seen_prefix(0)))


def run(items, store=None, spec=SPEC, final_panes=None):
    store = DictStore() if store is None else DictStore(store)
    out = apply_batch(0, items, spec, store, seen_index(store), final_panes=final_panes)
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


def closed(out):
    """The tumbling windows that closed."""
    return [(w.start_ms, w.end_ms, w.counts) for w in out.closed if w.end_ms - w.start_ms == 60_000]


def test_a_window_closes_once_when_the_watermark_passes_its_end_plus_grace():
    out, store = run([view(0, 1_000), view(1, 30_000, url="/b"), view(2, 69_999)])
    assert out.closed == []  # watermark 69_999 < 60_000 + 10_000
    out, store = run([view(3, 70_000)], store)
    assert closed(out) == [(0, 60_000, {"/a": [1], "/b": [1]})]  # 69_999 is in the next
    out, store = run([view(4, 75_000)], store)
    assert out.closed == []  # not again


def test_the_final_result_includes_the_sketch_of_the_window():
    _, store = run([view(0, 1_000, user="u1"), view(1, 2_000, user="u2")])
    out, _ = run([view(2, 70_000, user="u3")], store)
    window = out.closed[0]
    assert sketch.estimate(window.sketches["users"]) == 2


def test_a_hopping_window_is_the_sum_of_its_panes_and_closes_after_its_last_one():
    events = [view(0, 10_000), view(1, 70_000), view(2, 130_000, url="/b"), view(3, 130_500)]
    out, store = run(events)
    out, store = run([view(4, 190_000)], store)  # hop [0, 180 s) closes at 190 s
    hops = [w for w in out.closed if w.end_ms - w.start_ms == 180_000]
    assert [(w.start_ms, w.counts) for w in hops] == [(0, {"/a": [3], "/b": [1]})]
    assert sketch.estimate(hops[0].sketches["users"]) == 1


def test_an_event_late_for_its_pane_counts_in_no_window():
    out, store = run([view(0, 10_000), view(1, 75_000), view(2, 20_000)])
    assert out.progress.late == 1
    out, store = run([view(3, 400_000)], store)
    (hop,) = [w for w in out.closed if (w.start_ms, w.end_ms) == (0, 180_000)]
    assert hop.counts == {"/a": [2]}  # 10 s and 75 s; not the late one


def test_a_tick_advances_event_time_and_closes_windows_without_counting():
    _, store = run([view(0, 1_000)])
    out, store = run([Tick(1, 70_000)], store)
    assert closed(out) == [(0, 60_000, {"/a": [1]})]
    assert out.progress.ticks == 1 and out.progress.accepted == 1
    assert out.progress.watermark_ms == 70_000


def test_a_tick_never_moves_event_time_back():
    _, store = run([view(0, 100_000)])
    out, _ = run([Tick(1, 5_000)], store)
    assert out.progress.watermark_ms == 100_000


def test_panes_are_dropped_after_their_last_window_closed_so_state_stays_bounded():
    store = DictStore()
    for minute in range(30):  # half an hour of one view a minute
        _, store = run([view(minute, minute * 60_000 + 1)], store)
    panes = orjson.loads(store[panes_key(0)])
    assert len(panes) <= SPEC.hop_ms // SPEC.size_ms + 2  # + grace, + the batch after
    cells = [k for k in store if k.startswith((b"C|", b"H|"))]
    assert len(cells) == 2 * len(panes)
    assert min(panes) >= 29 * 60_000 - SPEC.hop_ms - SPEC.grace_ms - 2 * SPEC.size_ms


def test_final_results_do_not_depend_on_how_the_input_was_batched():
    import random

    rng = random.Random(5)
    times = sorted(rng.randrange(0, 900_000) for _ in range(300))
    events = [
        view(i, t + rng.choice([0, 0, -5_000, -40_000, -90_000]), url=rng.choice("ab"))
        for i, t in enumerate(times)
    ] + [Tick(300, 2_000_000)]

    def results(batch_sizes):
        store, found, i = DictStore(), [], 0
        while i < len(events):
            size = next(batch_sizes)
            out, store = run(events[i : i + size], store)
            found += [(w.start_ms, w.end_ms, w.counts, w.sketches) for w in out.closed]
            i += size
        return sorted(found)

    one_by_one = results(iter(lambda: 1, None))
    assert one_by_one == results(iter(lambda: rng.randint(1, 40), None))
    assert len(one_by_one) > 20


def test_final_results_are_the_same_with_closed_panes_kept_between_batches():
    import random

    rng = random.Random(9)
    times = sorted(rng.randrange(0, 1_500_000) for _ in range(400))
    events = [
        view(i, t + rng.choice([0, 0, -5_000, -40_000]), url=rng.choice("abc"), user=f"u{i % 7}")
        for i, t in enumerate(times)
    ] + [Tick(400, 3_000_000)]
    cuts = [0, *sorted(rng.sample(range(1, len(events)), 60)), len(events)]

    def results(final_panes):
        store, found = DictStore(), []
        for start, end in itertools.pairwise(cuts):
            out, store = run(events[start:end], store, final_panes=final_panes)
            found += [(w.start_ms, w.end_ms, w.counts, w.sketches) for w in out.closed]
        return found

    kept: dict = {}
    assert results(kept) == results(None)
    assert 0 < len(kept) <= SPEC.hop_ms // SPEC.size_ms + 2  # pruned with the panes


def test_a_cut_short_closing_batch_emits_the_same_result_when_redelivered():
    _, store = run([view(0, 1_000), view(1, 2_000)])
    first, _ = run([view(2, 3_000), view(3, 80_000)], store)
    landed = dict(store)
    landed.update((k, v) for k, v in list(first.writes.items())[:1] if v is not None)
    again, _ = run([view(2, 3_000), view(3, 80_000)], landed)  # progress never landed
    assert closed(again) == closed(first) == [(0, 60_000, {"/a": [3]})]
    assert [w.sketches for w in again.closed] == [w.sketches for w in first.closed]


def test_sketch_cells_are_stored_per_pane():
    _, store = run([view(0, 1_000, user="x"), view(1, 61_000, user="y")])
    assert sketch.estimate(store[sketch_key(0, 0, "users")]) == 1
    assert sketch.estimate(store[sketch_key(0, 60_000, "users")]) == 1


def test_only_windows_with_data_close_and_the_outcome_says_when_a_close_was_passed():
    out, store = run([view(0, 61_000), Tick(1, 61_000 + 3 * 60_000 + 10_000)])
    tumbling = [(w.start_ms, w.counts) for w in out.closed if w.end_ms - w.start_ms == 60_000]
    assert tumbling == [(60_000, {"/a": [1]})]  # the empty minutes after it send nothing
    hops = [w for w in out.closed if w.end_ms - w.start_ms == SPEC.hop_ms]
    assert [(w.start_ms, w.counts) for w in hops] == [
        (h, {"/a": [1]}) for h in (-60_000, 0, 60_000)
    ]
    assert out.passed_a_close
    # closes fall on pane start + size + grace: 310 s is one, passed with nothing to close
    later, store = run([Tick(2, 311_000)], store)
    assert later.closed == [] and later.passed_a_close
    quiet, _ = run([Tick(3, 369_999)], store)
    assert quiet.closed == [] and not quiet.passed_a_close
