"""`clickstream import`'s validation and sort (clickstream/import_history.py), without Kafka:
dry runs, the external sort, CSV mappings."""

from __future__ import annotations

import random
from contextlib import ExitStack
from pathlib import Path

import orjson
import pytest

from clickstream.import_history import ImportFailed, Mapping, Runs, import_file
from clickstream.settings import load
from generator.produce import ProgressLines
from tests.builders import click_bytes, order_json

SETTINGS = load({"CLICKSTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:9"}, dotenv=None)  # never reached
T0 = 1_767_225_600_000


def dry_run(path: Path, mapping: Mapping | None = None, **options):
    said: list[str] = []
    quiet = lambda total, doing: ProgressLines(total, None)  # noqa: E731
    checked = import_file(SETTINGS, path, mapping, True, False, said.append, quiet, **options)
    return checked, said


def test_runs_spilled_to_disk_merge_into_event_time_order_stable_for_equal_times(tmp_path):
    rng = random.Random(5)
    entries = [(T0 + rng.randrange(20) * 1000, f"u{i}", b"%d" % i) for i in range(57)]
    runs = Runs(tmp_path, run_lines=8)
    for time_ms, key, value in entries:
        runs.add("clicks", key, time_ms, value)
    assert len(runs.files) == 7
    with ExitStack() as stack:
        merged = [(t, k, v) for t, _, _, k, v in runs.sorted(stack)]
    by_time = sorted(range(len(entries)), key=lambda i: (entries[i][0], i))
    assert merged == [entries[i] for i in by_time]


def test_a_dry_run_counts_valid_and_rejected_lines_and_says_why(tmp_path):
    lines = [click_bytes(event_id=f"c{i}", occurred_at_ms=T0 + (9 - i) * 1000) for i in range(10)]
    lines.append(orjson.dumps(order_json(event_id="o1", occurred_at_ms=T0)))
    lines += [b"{not json", orjson.dumps({"schema": "click", "version": 7})]
    path = tmp_path / "history.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n\n")
    checked, said = dry_run(path)
    assert checked.valid == {"clicks": 10, "orders": 1}
    assert sum(checked.rejected.values()) == 2 and "malformed_json" in checked.rejected
    assert checked.out_of_order == 9  # each click older than the one before it
    assert checked.first_ms == T0 and checked.last_ms == T0 + 9_000
    assert "rejected 2" in said[0] and "(sorted)" in said[0]
    rejected = [orjson.loads(line) for line in (tmp_path / "history.jsonl.rejected.jsonl").open()]
    assert [r["line"] for r in rejected] == [12, 13]
    assert all(r["reason"] and r["detail"] for r in rejected)


def test_events_in_windows_already_closed_are_announced_as_late(tmp_path):
    path = tmp_path / "old.jsonl"
    path.write_bytes(b"\n".join(click_bytes(occurred_at_ms=T0 + i * 60_000) for i in range(5)))
    checked, said = dry_run(path, closed_before_ms=T0 + 120_000)
    assert checked.late == 2
    assert "2 events fall in windows the version has closed already" in said[0]


ORDERS_CSV = """order,customer,placed,total,currency
1001,alice,2026-01-01 10:00:00,12.50,EUR
1002,bob,2026-01-01T10:05:00+01:00,900,JPY
1003,carol,yesterday,1.00,EUR
"""


def test_a_csv_mapping_builds_events_and_rejects_rows_it_cannot(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text(ORDERS_CSV)
    columns = {"id": "order", "user_id": "customer", "occurred_at": "placed", "amount": "total",
               "currency": "currency"}  # fmt: skip
    checked, _ = dry_run(path, Mapping("orders", columns, {"items": "[]"}))
    assert checked.valid == {"orders": 2}
    assert checked.rejected == {"bad_value": 1}  # "yesterday" is no time
    checked, _ = dry_run(path, Mapping("orders", columns, {}))
    assert checked.valid == {} and checked.rejected == {"missing_field": 2, "bad_value": 1}

    row = {"order": "7", "customer": "c", "placed": "2026-01-01 00:00:00", "total": "1.00",
           "currency": "EUR"}  # fmt: skip
    event = Mapping("orders", columns, {"items": "[]", "payment.method": "card"}).event(row, 2)
    assert event["id"] == 7 and event["occurred_at"] == "2026-01-01T00:00:00.000Z"
    assert event["items"] == [] and event["payment"] == {"method": "card"}
    # an id from the row's content: the same file imported twice counts once
    assert event["event_id"] == Mapping("orders", columns, {}).event(row, 9)["event_id"]


def test_a_csv_mapping_naming_a_missing_column_fails_in_one_line(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text(ORDERS_CSV)
    with pytest.raises(ImportFailed, match=r"has no column 'buyer'.*fix the --map options"):
        dry_run(path, Mapping("orders", {"user_id": "buyer"}, {}))
