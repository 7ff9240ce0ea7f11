"""bench CLI and progress file: bad options end in one line and exit 2; progress round-trips."""

from __future__ import annotations

import pytest

from bench.__main__ import parse_args
from bench.progress import ProgressFile, read_progress


def test_defaults_run_every_contender_three_rounds():
    args = parse_args([])
    assert args.contenders == [
        "clickstream",
        "clickstream-pageviews",
        "clickstream-with-fraud",
        "faust-naive",
        "faust-naive-full",
        "aiokafka-loop",
        "quix",
        "quix-eos",
        "bytewax",
    ]
    assert (args.rounds, args.partitions) == (3, 4)


def test_contenders_are_chosen_by_name_in_order():
    args = parse_args(["--contenders", "faust-naive, clickstream", "--rounds", "5"])
    assert args.contenders == ["faust-naive", "clickstream"] and args.rounds == 5


@pytest.mark.parametrize(
    "argv",
    [
        ["--events", "5"],
        ["--events", "many"],
        ["--rounds", "0"],
        ["--partitions", "1000"],
        ["--contenders", "flink"],
        ["--contenders", "clickstream,clickstream"],
        ["--no-such-option"],
    ],
)
def test_a_bad_option_is_one_line_and_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("bench: ") and err.count("\n") == 1


def test_progress_file_reads_back_what_was_reported(tmp_path):
    path = tmp_path / "progress"
    assert read_progress(path) is None
    ProgressFile(path, expected=100).report(42)
    count, at = read_progress(path) or (0, 0.0)
    assert count == 42 and at > 0


def test_progress_is_reported_at_once_when_all_messages_are_done(tmp_path):
    path = tmp_path / "progress"
    progress = ProgressFile(path, expected=100, every_s=3600)
    progress.maybe_report(1)  # the first report is immediate
    progress.maybe_report(50)  # within the interval: not written
    assert (read_progress(path) or (0,))[0] == 1
    progress.maybe_report(100)
    assert (read_progress(path) or (0,))[0] == 100
