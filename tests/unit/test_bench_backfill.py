"""bench.backfill (no broker): the two layouts of the same events, what a worker must derive
from them, the check of what it derived, the ratios and the table; the CLI's --scenario."""

from __future__ import annotations

from datetime import datetime

import orjson
import pytest

from bench import backfill
from bench.__main__ import parse_args
from bench.backfill import BackfillRun, Expected, Layout
from bench.backfill_run import generator_config, last_event_ms
from generator.produce import partition_for
from generator.simulate import simulate

MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000
S = 1_767_225_600_000  # 2026-01-01T00:00Z, window-aligned


def expected(gap_ms: int | None = 30 * MIN) -> Expected:
    return Expected(window_ms=MIN, hop_ms=5 * MIN, grace_ms=30_000, gap_ms=gap_ms)


# layouts


def test_the_sparse_stride_is_whole_windows_and_puts_the_first_and_last_event_30_days_apart():
    for panes in (2, 50, 55, 60):
        stride = backfill.sparse_stride_ms(MIN, panes)
        assert stride % MIN == 0
        assert (panes - 1) * stride - MIN >= 30 * DAY  # first event at 0:00, last at 0:59.999
    assert backfill.sparse_stride_ms(MIN, 60) == 733 * MIN


def test_one_pane_cannot_be_spread():
    with pytest.raises(ValueError, match="nothing to spread"):
        backfill.sparse_stride_ms(MIN, 1)


def test_the_packed_layout_keeps_each_time_and_the_sparse_one_moves_whole_panes():
    plans = backfill.layouts(S, S + 59 * MIN + 1234, MIN)
    packed, sparse = plans["packed"], plans["sparse"]
    times = [S, S + 59_999, S + MIN, S + 7 * MIN + 42, S + 59 * MIN + 1234]
    assert [packed.at(t) for t in times] == times
    moved = [sparse.at(t) for t in times]
    assert moved == sorted(moved)  # event-time order is kept
    assert [m % MIN for m in moved] == [t % MIN for t in times]  # offset inside the pane
    assert moved[0] == S and moved[2] == S + sparse.stride_ms
    assert moved[-1] - moved[0] >= 30 * DAY


def test_both_layouts_start_32_days_before_now_on_a_window_boundary():
    start = backfill.start_ms(S + 12_345, MIN)
    assert start % MIN == 0 and S - start - 32 * DAY in range(0, MIN)


def test_iso_ms_is_the_events_own_format():
    assert backfill.iso_ms(S + 5_007) == "2026-01-01T00:00:05.007Z"
    assert datetime.fromisoformat(backfill.iso_ms(S + 5_007)).timestamp() * 1000 == S + 5_007


def test_retimed_sets_only_the_events_own_time():
    click = {"schema": "click", "event_id": "e-1", "occurred_at": "2026-01-01T00:00:00.000Z"}
    legacy = {"orderId": 1, "total": 49.9, "createdAt": "2026-01-01T00:00:00.000Z"}
    assert orjson.loads(backfill.retimed(orjson.dumps(click), S + DAY)) == {
        **click,
        "occurred_at": "2026-01-02T00:00:00.000Z",
    }
    assert orjson.loads(backfill.retimed(orjson.dumps(legacy), S + 1)) == {
        **legacy,
        "createdAt": "2026-01-01T00:00:00.001Z",
    }
    with pytest.raises(ValueError, match="occurred_at"):
        backfill.retimed(b'{"event_id": "e-1"}', S)


def test_flush_records_are_keyed_to_their_partition_and_carry_the_flush_time():
    partitions = list(range(4))
    for p in partitions:
        key = backfill.flush_key(p, lambda k: partition_for(k, partitions))
        assert partition_for(key, partitions) == p and key.startswith(b"bench-flush-")
        for stream, schema in (("clicks", "click"), ("orders", "OrderCreated")):
            body = orjson.loads(backfill.flush_value(stream, key, S, "sparse"))
            assert body["schema"] == schema and body["user_id"] == key.decode()
            assert body["occurred_at"] == backfill.iso_ms(S)
            assert body["event_id"].endswith("-sparse")


# what is due


def test_windows_with_data_and_the_hopping_windows_holding_them_are_due():
    want = expected(gap_ms=None)
    want.add("clicks", 0, "u-1", S + 10)
    want.add("clicks", 1, "u-2", S + 20)
    want.add("clicks", 0, "u-1", S + 3 * MIN)
    want.add("orders", 2, "u-3", S + 3 * MIN + 5)
    assert want.clicks == {S: 2, S + 3 * MIN: 1}
    results = want.results()
    assert {r for r in results if r[:2] == ("clicks", "tumbling")} == {
        ("clicks", "tumbling", S, 0),
        ("clicks", "tumbling", S, 1),
        ("clicks", "tumbling", S + 3 * MIN, 0),
    }
    hopping = {(start, p) for stream, kind, start, p in results if kind == "hopping"}
    assert {start for start, p in hopping if p == 1} == {S - k * MIN for k in range(5)}
    totals = want.totals()
    clicks_hopping = {t for t in totals if t[:2] == ("clicks", "hopping")}
    assert len(clicks_hopping) == 8  # S-4..S+3 minutes
    assert {t for t in totals if t[0] == "funnel"} == {
        ("funnel", kind, start) for stream, kind, start in totals if stream != "funnel"
    }


def test_sessions_split_at_the_gap_and_each_expiry_makes_its_pane_due():
    want = expected(gap_ms=30 * MIN)
    for at in (S, S + 29 * MIN, S + 59 * MIN + 1, S + 2 * HOUR):  # gaps 29, 30+, 61 min
        want.add("clicks", 3, "u-1", at)
    want.add("clicks", 1, "u-2", S + 5)
    assert sorted(want.sessions) == [(1, S + 5), (3, S + 29 * MIN), (3, S + 59 * MIN + 1),
                                     (3, S + 2 * HOUR)]  # fmt: skip
    tumbling = want.tumbling()["clicks"]
    assert (S + 59 * MIN, 3) in tumbling  # u-1's first session expired at 0:59
    assert (S + 30 * MIN, 1) in tumbling  # u-2's, at 0:30
    assert (S + 2 * HOUR + 30 * MIN, 3) in tumbling


def test_no_window_of_the_data_holds_the_flush_pane():
    want = expected()
    want.add("clicks", 0, "u-1", S + 59 * MIN + 59_999)
    flush = want.flush_ms
    due = {start for _, _, start in want.totals()}
    assert all(want.in_data(start) for start in due)
    flush_windows = [backfill.window_start(flush, MIN) - k * MIN for k in range(5)]
    assert not any(want.in_data(start) for start in flush_windows)


def test_the_generated_hour_and_its_sparse_layout_hold_the_same_panes_but_span_30_days():
    config = generator_config(2_000, seed=3, start_ms=S)
    assert (config.duplicate_rate, config.late_rate, config.malformed_rate) == (0, 0, 0)
    last = last_event_ms(config)
    assert last - S < HOUR
    plans = backfill.layouts(S, last, MIN)
    wants = {name: expected() for name in plans}
    for emission in simulate(config):
        at = emission.label["occurred_at_ms"]
        assert at is not None
        for name, plan in plans.items():
            wants[name].add(emission.stream, 0, emission.key.decode(), plan.at(at))
    packed, sparse = wants["packed"], wants["sparse"]
    assert packed.events == sparse.events and sum(packed.events.values()) == 2_000
    assert sorted(packed.clicks.values()) == sorted(sparse.clicks.values())
    assert (sparse.last_ms or 0) - (sparse.first_ms or 0) >= 30 * DAY
    # bounded by the data: a few windows per pane with data, not one per minute of event time
    assert len(sparse.totals()) < 30 * len(sparse.clicks) < 43_200


# the check of a run's output


def perfect_output(want: Expected) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """What a right worker writes to the results, totals and sessions topics."""
    results = [
        {"stream": s, "kind": k, "start": backfill.iso_ms(t), "partition": p}
        for s, k, t, p in want.results()
    ]
    results.append({"stream": "clicks", "kind": "progress", "partition": 0})
    totals = []
    for s, k, t in want.totals():
        total = {"stream": s, "kind": k, "start": backfill.iso_ms(t)}
        if (s, k) == ("clicks", "tumbling") and want.clicks.get(t):
            total["clicktypes"] = {"page_view": want.clicks[t] - 1, "search": 1}
        totals.append(total)
    sessions = [{"id": f"sessions/{i}", "user_id": f"u-{i}"} for i in range(len(want.sessions))]
    return encoded(results), encoded(totals), encoded(sessions)


def encoded(records: list[dict]) -> list[bytes]:
    return [orjson.dumps(record) for record in records]


def window_of(value: bytes) -> tuple[str, str, str]:
    record = orjson.loads(value)
    return record["stream"], record["kind"], record["start"]


def sample() -> Expected:
    want = expected()
    for i, at in enumerate((S, S + 10, S + MIN, S + 40 * MIN)):
        want.add("clicks", i % 2, f"u-{i % 3}", at)
    want.add("orders", 1, "u-1", S + 20)
    return want


def test_the_right_output_passes_and_its_counts_are_reported():
    want = sample()
    results, totals, sessions = perfect_output(want)
    flush_total = {"stream": "clicks", "kind": "tumbling", "start": backfill.iso_ms(want.flush_ms)}
    derived = backfill.derive(
        want, results, [*totals, orjson.dumps(flush_total)], sessions, ["foreign_tick"], 0
    )  # fmt: skip
    assert backfill.check(want, derived) == []
    assert derived.flush_windows == 1
    assert derived.counts() == {
        "results": len(want.results()), "progress": 1, "totals": len(want.totals()),
        "sessions": len(want.sessions), "dead_letters": 0, "late_events": 0, "foreign_ticks": 1,
    }  # fmt: skip


def test_a_missing_repeated_or_miscounted_total_is_named():
    want = sample()
    results, totals, sessions = perfect_output(want)
    miscounted = {"stream": "clicks", "kind": "tumbling", "start": backfill.iso_ms(S),
                  "clicktypes": {"page_view": 7}}  # fmt: skip
    others = [t for t in totals if window_of(t) != ("clicks", "tumbling", backfill.iso_ms(S))]
    derived = backfill.derive(
        want,
        results[1:],
        [others[0], *others, orjson.dumps(miscounted)],
        sessions[1:],
        ["bad_value", "foreign_tick", "malformed_json"],
        0,
    )
    problems = backfill.check(want, derived)
    assert any(p.startswith("1 window totals sent twice") for p in problems)
    assert any(p.startswith("1 window results missing") for p in problems)
    assert f"1 clicks totals (pane/counted/due) with another click count ({S}/7/2)" in problems
    assert f"{len(want.sessions) - 1} sessions summarised, {len(want.sessions)} due" in problems
    assert "2 dead letters, 0 late events" in problems
    derived = backfill.derive(want, results, totals[1:], sessions, [], 0)
    assert [p.split(" (")[0] for p in backfill.check(want, derived)] == ["1 window totals missing"]


def test_an_unexpected_total_is_named():
    want = sample()
    results, totals, sessions = perfect_output(want)
    stray = {"stream": "orders", "kind": "tumbling", "start": backfill.iso_ms(S + 10 * MIN)}
    derived = backfill.derive(want, results, [*totals, orjson.dumps(stray)], sessions, [], 0)
    assert backfill.check(want, derived) == [
        f"1 unexpected window totals (orders/tumbling/{S + 10 * MIN})"
    ]


# ratios and the table


def run(scenario: str, round: int, import_s: float | None, **overrides: object) -> BackfillRun:
    fields: dict[str, object] = {
        "scenario": scenario, "round": round, "import_s": import_s, "first_total_s": 5.0,
        "committed_s": None, "counts": {"results": 10, "progress": 4, "totals": 6, "sessions": 2},
        "error": None,
    }  # fmt: skip
    fields.update(overrides)
    return BackfillRun(**fields)  # type: ignore[arg-type]


def test_the_ratio_is_sparse_over_packed_per_round_and_its_median():
    runs = [
        run("sparse", 1, 12.0), run("packed", 1, 10.0),
        run("packed", 2, 10.0), run("sparse", 2, 20.0),
        run("sparse", 3, 11.0), run("packed", 3, 10.0),
        run("sparse", 4, 99.0), run("packed", 4, None, error="timed out"),
        run("sparse", 5, 99.0),
    ]  # fmt: skip
    assert backfill.ratio(runs).per_round == pytest.approx((1.2, 2.0, 1.1))
    assert backfill.ratio(runs).median == pytest.approx(1.2)
    processing = backfill.ratio(runs, "processing_s")  # import - first total
    assert processing.per_round == pytest.approx((7 / 5, 15 / 5, 6 / 5))
    assert backfill.ratio([run("sparse", 1, 3.0)]).median is None


def test_the_table_shows_what_is_due_each_run_and_the_ratios():
    runs = [run("sparse", 1, 12.0, committed_s=13.0), run("packed", 1, None, error="timed out")]
    due = {
        name: {"events": {"clicks": 90, "orders": 10}, "first": "a", "last": "b",
               "span_minutes": 1.0, "panes_with_clicks": 3, "results": 9, "totals": 8,
               "sessions": 7}
        for name in ("sparse", "packed")
    }  # fmt: skip
    text = backfill.render(runs, due)
    assert "sparse  90 clicks, 10 orders" in text
    assert "due: 9 results, 8 totals, 7 sessions" in text
    rows = [line.split() for line in text.splitlines() if line.startswith(("sparse ", "packed "))]
    assert ["sparse", "1", "12.0", "5.0", "7.0", "13.0", "10", "4", "6", "2", "ok"] in rows
    assert ["packed", "1", "-", "5.0", "-", "-", "10", "4", "6", "2", "timed", "out"] in rows
    ratios = [line.split() for line in text.splitlines() if line.startswith("sparse / packed")]
    assert ratios[0] == ["sparse", "/", "packed", "import", "time", "-", "(per", "round:", "none",
                         "complete)"]  # fmt: skip
    body = backfill.to_json({"events": 100}, runs, due)
    assert body["runs"][0]["processing_s"] == 7.0 and body["ratios"][0]["what"] == "import_s"


# the CLI


def test_the_backfill_scenario_is_an_option_and_the_default_is_unchanged():
    assert parse_args([]).scenario == "throughput"
    args = parse_args(["--scenario", "backfill", "--events", "2000", "--rounds", "1"])
    assert (args.scenario, args.events, args.rounds, args.contenders) == ("backfill", 2000, 1, None)


@pytest.mark.parametrize(
    "argv",
    [
        ["--events", "2000"],  # throughput needs 10,000
        ["--scenario", "backfill", "--events", "1999"],
        ["--scenario", "backfill", "--contenders", "clickstream"],
        ["--scenario", "replay"],
    ],
)
def test_a_bad_scenario_option_is_one_line_and_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("bench: ") and err.count("\n") == 1


def test_layout_is_a_plain_value():
    assert Layout("packed", S, MIN, MIN).at(S + 5) == S + 5
