"""bench.report: steady throughput per run, medians per contender, paired ratios, the table."""

from __future__ import annotations

import json

import pytest

from bench.report import RunResult, ratios, render_table, run_result, summarize, to_json


def make_run(contender: str = "clickstream", round: int = 1, **overrides: object) -> RunResult:
    fields: dict[str, object] = {
        "contender": contender,
        "round": round,
        "events": 10_000,
        "startup_s": 3.0,
        "steady_s": 2.0,
        "steady_events": 8_000,
        "error": None,
    }
    fields.update(overrides)
    return RunResult(**fields)  # type: ignore[arg-type]


def test_rate_counts_only_the_steady_part():
    assert make_run(steady_s=2.0, steady_events=8_000).rate == 4_000


def test_a_failed_run_has_no_rate():
    assert make_run(error="timed out").rate is None
    assert make_run(steady_s=0.0).rate is None


def test_run_result_measures_from_the_first_observed_message():
    run = run_result("faust-naive", 2, 10_000, spawned_at=100.0, first=(500, 104.0), done_at=109.0)
    assert (run.startup_s, run.steady_s, run.steady_events) == (4.0, 5.0, 9_500)
    assert run.rate == 1_900
    assert run.error is None


def test_run_result_without_an_end_is_an_error():
    run = run_result("clickstream", 1, 10_000, 100.0, first=(2_000, 103.0), done_at=None)
    assert run.error == "did not finish" and run.rate is None
    assert run.startup_s == 3.0


def test_run_result_keeps_the_callers_reason():
    run = run_result("clickstream", 1, 10_000, 100.0, None, None, error="exited with code 2")
    assert run.error == "exited with code 2" and run.startup_s is None


def test_a_run_done_at_its_first_observation_asks_for_more_events():
    run = run_result("aiokafka-loop", 1, 10_000, 100.0, first=(10_000, 100.5), done_at=100.5)
    assert run.rate is None and run.error is not None and "--events" in run.error


def test_summary_takes_medians_over_successful_runs_only():
    runs = [
        make_run(round=1, steady_s=1.0, steady_events=3_000, startup_s=2.0),
        make_run(round=2, steady_s=1.0, steady_events=5_000, startup_s=4.0),
        make_run(round=3, steady_s=1.0, steady_events=4_000, startup_s=9.0),
        make_run(round=4, error="timed out", startup_s=1.0),
    ]
    [summary] = summarize(runs, ["clickstream"])
    assert (summary.runs, summary.ok) == (4, 3)
    assert (summary.median_rate, summary.min_rate, summary.max_rate) == (4_000, 3_000, 5_000)
    assert summary.median_startup_s == 4.0


def test_summary_of_a_contender_without_a_successful_run_is_empty():
    [summary] = summarize([make_run(error="exited with code 1")], ["clickstream"])
    assert summary.ok == 0 and summary.median_rate is None and summary.min_rate is None


def test_ratios_pair_runs_of_the_same_round():
    runs = [
        make_run("clickstream", 1, steady_s=1.0, steady_events=10_000),
        make_run("faust-naive-full", 1, steady_s=1.0, steady_events=2_000),
        make_run("clickstream", 2, steady_s=1.0, steady_events=6_000),
        make_run("faust-naive-full", 2, steady_s=1.0, steady_events=3_000),
        make_run("clickstream", 3, steady_s=1.0, steady_events=9_000),
        make_run("faust-naive-full", 3, steady_s=1.0, steady_events=3_000),
    ]
    [ratio] = ratios(runs)
    assert (ratio.numerator, ratio.denominator) == ("clickstream", "faust-naive-full")
    assert ratio.per_round == (5.0, 2.0, 3.0)
    assert ratio.median == 3.0


def test_a_round_where_either_side_failed_gives_no_ratio():
    runs = [
        make_run("aiokafka-loop", 1, steady_events=20_000),
        make_run("clickstream", 1, steady_events=2_000),
        make_run("aiokafka-loop", 2, error="timed out"),
        make_run("clickstream", 2, steady_events=2_000),
    ]
    [ratio] = ratios(runs)
    assert ratio.per_round == (10.0,) and ratio.median == 10.0


def test_pairs_with_a_contender_that_did_not_run_are_left_out():
    assert ratios([make_run("faust-naive"), make_run("aiokafka-loop")]) == []


def test_our_worker_is_compared_with_the_naive_peer_doing_the_same_work():
    names = ["clickstream", "clickstream-pageviews", "faust-naive", "faust-naive-full"]
    pairs = [(r.numerator, r.denominator) for r in ratios(make_run(name) for name in names)]
    assert pairs == [("clickstream", "faust-naive-full"), ("clickstream-pageviews", "faust-naive")]


def test_table_lists_each_contender_and_each_ratio():
    runs = [
        make_run("clickstream", 1, steady_s=1.0, steady_events=12_345),
        make_run("faust-naive-full", 1, steady_s=1.0, steady_events=2_000),
        make_run("aiokafka-loop", 1, error="timed out"),
    ]
    names = ["clickstream", "faust-naive-full", "aiokafka-loop"]
    table = render_table(summarize(runs, names), ratios(runs))
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["contender", "median"]
    assert "12,345" in lines[2] and lines[2].rstrip().endswith("1/1")
    assert lines[4].split()[:2] == ["aiokafka-loop", "-"] and lines[4].endswith("0/1")
    full = "clickstream / faust-naive-full"
    assert any(line.startswith(full) and "6.17x" in line for line in lines)
    assert any("aiokafka-loop / clickstream" in line and "none complete" in line for line in lines)


@pytest.mark.parametrize("error", [None, "timed out"])
def test_json_report_holds_every_run_with_its_rate(error):
    runs = [make_run(error=error)]
    report = to_json({"events": 10_000}, runs, summarize(runs, ["clickstream"]), ratios(runs))
    decoded = json.loads(json.dumps(report))
    assert decoded["events"] == 10_000
    assert decoded["runs"][0]["rate"] == (None if error else 4_000)
    assert decoded["summary"][0]["contender"] == "clickstream"
