"""Finding a batch's source record by input and offset (for dead letters and late events)."""

from __future__ import annotations

from types import SimpleNamespace

from agents.windowed import _RecordsByOffset
from tables.window_state import FACTS, SOURCE


def test_records_are_found_by_offset_with_and_without_gaps():
    for offsets in ([5, 6, 7, 8], [5, 7, 8, 20, 21], [0], [3, 4, 9]):
        records = [SimpleNamespace(topic="clicks", offset=o, value=f"v{o}") for o in offsets]
        find = _RecordsByOffset(records, {"clicks": SOURCE})
        assert [find(SOURCE, o).value for o in offsets] == [f"v{o}" for o in offsets]


def test_records_of_two_inputs_with_the_same_offsets_are_told_apart():
    records = [
        SimpleNamespace(topic=topic, offset=o, value=f"{topic}{o}")
        for topic in ("facts", "clicks")
        for o in (1, 2)
    ]
    find = _RecordsByOffset(records, {"clicks": SOURCE, "facts": FACTS})
    assert find(SOURCE, 2).value == "clicks2" and find(FACTS, 2).value == "facts2"
