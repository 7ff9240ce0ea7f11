"""Finding a batch's source record by offset (for dead letters and late events)."""

from __future__ import annotations

from types import SimpleNamespace

from agents.windowed import _RecordsByOffset


def test_records_are_found_by_offset_with_and_without_gaps():
    for offsets in ([5, 6, 7, 8], [5, 7, 8, 20, 21], [0], [3, 4, 9]):
        records = [SimpleNamespace(offset=o, value=f"v{o}") for o in offsets]
        by_offset = _RecordsByOffset(records)
        assert [by_offset[o].value for o in offsets] == [f"v{o}" for o in offsets]
