"""Which originals `clickstream dead-letters reinject` sends: the letters chosen by reason,
original topic and time, each original once, a re-injected copy's letter resolved to its
original, a cut or old letter read from the input, internal records skipped."""

from __future__ import annotations

from collections import Counter
from typing import Any

from clickstream.dead_letters import Reinjected, Reinjection, Unread, select_originals
from engine.processor import InputRecord
from streams.dead_letters import DEAD_LETTER_BYTES, DeadLetter, dead_letter, read_dead_letter
from streams.retries import Request, copy_headers

INPUTS = ("clicks", "orders")
T0 = 1_767_225_600_000


def make_letter(
    reason: str = "malformed_json", at: int = T0, drop: tuple[str, ...] = (), **record: Any
) -> tuple[int, DeadLetter]:
    """(letter time, letter) as the writer writes it and the reader reads it back; `drop`:
    headers a letter written before them lacks."""
    fields = {"topic": "clicks", "partition": 0, "offset": 5, "timestamp": T0 - 1_000,
              "key": b"u-1", "value": b"{oops"} | record  # fmt: skip
    key, value, headers = dead_letter(InputRecord(**fields), reason, "detail")
    kept = [(name, raw) for name, raw in headers if name not in drop]
    return at, read_dead_letter(kept, value, key)


def copy_letter(original: Request, reason: str = "malformed_json", at: int = T0) -> Any:
    """The letter of a re-injected copy of `original`, rejected again from the time log."""
    return make_letter(
        reason, at, topic="clicks-ticks", partition=original.partition, offset=40,
        timestamp=T0 + 9_000, headers=copy_headers(original, 39, 0, "app"),
    )  # fmt: skip


def test_a_whole_letter_is_sent_as_its_original_from_the_letter_alone():
    chosen = select_originals([make_letter()], INPUTS)

    assert chosen.whole == [
        Reinjection(Request("clicks", 0, 5, T0 - 1_000), b"u-1", b"{oops", "malformed_json")
    ]
    assert (chosen.unread, chosen.not_reinjectable, chosen.letters) == ([], 0, 1)


def test_letters_are_chosen_by_reason_original_topic_and_time():
    letters = [
        make_letter("malformed_json", at=T0, offset=1),
        make_letter("unknown_schema_version", at=T0 + 1, offset=2),
        make_letter("malformed_json", at=T0 + 2, topic="orders", offset=3),
        make_letter("malformed_json", at=T0 + 3, offset=4),
    ]

    def offsets(**filters: Any) -> list[int]:
        return [r.request.offset for r in select_originals(letters, INPUTS, **filters).whole]

    assert offsets(reason="malformed_json") == [1, 3, 4]
    assert offsets(source="orders") == [3]
    assert offsets(since_ms=T0 + 2) == [3, 4]
    assert offsets(reason="malformed_json", source="clicks", since_ms=T0 + 1) == [4]


def test_the_same_original_is_sent_once_however_many_letters_name_it():
    original = Request("clicks", 0, 5, T0 - 1_000)
    letters = [make_letter(at=T0), make_letter(at=T0 + 5), copy_letter(original, at=T0 + 9)]

    chosen = select_originals(letters, INPUTS)

    assert chosen.letters == 3
    assert [r.request for r in chosen.whole] == [original]


def test_a_copy_letter_resolves_to_the_original_it_names():
    original = Request("orders", 2, 17, T0 - 60_000)

    chosen = select_originals([copy_letter(original, "processing_error")], INPUTS)

    assert chosen.whole == [Reinjection(original, b"u-1", b"{oops", "processing_error")]
    assert select_originals([copy_letter(original)], INPUTS, source="orders").letters == 1
    assert select_originals([copy_letter(original)], INPUTS, source="clicks-ticks").letters == 0


def test_a_truncated_letter_or_one_without_its_timestamp_is_read_from_the_input():
    big = b"x" * (DEAD_LETTER_BYTES + 1)
    cut_copy = make_letter(
        topic="clicks-ticks", offset=41, value=big,
        headers=copy_headers(Request("orders", 1, 9, T0), 40, 1, "app"),
    )  # fmt: skip
    letters = [
        make_letter(offset=7, value=big),
        make_letter(offset=8, drop=("source_timestamp",)),
        cut_copy,
    ]

    chosen = select_originals(letters, INPUTS)

    assert chosen.whole == []
    assert chosen.unread == [
        Unread("clicks", 0, 7, b"u-1", "malformed_json"),
        Unread("clicks", 0, 8, b"u-1", "malformed_json"),
        Unread("orders", 1, 9, b"u-1", "malformed_json"),
    ]


def test_an_unread_original_takes_the_input_records_bytes_and_timestamp():
    source = InputRecord("clicks", 0, 7, T0 - 5, b"u-1", b"{whole}")

    sent = Unread("clicks", 0, 7, b"u-1", "processing_error").read(source)

    assert sent == Reinjection(Request("clicks", 0, 7, T0 - 5), b"u-1", b"{whole}",
                               "processing_error")  # fmt: skip


def test_originals_of_internal_records_or_of_no_source_are_counted_not_sent():
    letters = [
        make_letter(topic="app-clicks-ticks", offset=1),
        make_letter(topic="app-order-facts", offset=2),
        make_letter(topic="app-fraud-repartition", offset=3),
        (T0, read_dead_letter([("reason", b"malformed_json")], b"{", None)),
        make_letter(offset=4),
    ]

    chosen = select_originals(letters, INPUTS)

    assert chosen.not_reinjectable == 4
    assert [r.request.source_id for r in chosen.whole] == ["clicks/0/4"]


def test_the_report_gives_counts_per_reason_and_what_was_skipped_and_why():
    report = Reinjected(
        "app-retry", 6, Counter(malformed_json=2, processing_error=1), 2, 1, dry_run=True
    )

    assert report.describe().splitlines() == [
        "would re-inject 3 originals of 6 dead letters into app-retry (dry run: nothing sent)",
        "       2  malformed_json",
        "       1  processing_error",
        "skipped: 2 not re-injectable (not from an input topic), 1 original gone (no longer in "
        "its input topic)",
    ]
