"""Dead letters: the records the app could not take, copied with the reason why.

  topic:   <app>-dead-letters, partition by the original key
  key:     the original key           value: the original bytes (at most DEAD_LETTER_BYTES)
  headers: id (= source_id: "<topic>/<partition>/<offset>" of the source record), reason,
           detail, source_topic, source_partition, source_offset, and `truncated` (the original
           size) when the value was cut
The id is derived from the source record alone, so a letter repeated after a crash has the
same id (consumers dedupe by it). Writer (the engine's processors) and reader (the CLI) share
this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

DEAD_LETTER_BYTES = 512 * 1024  # of a rejected payload copied (the source keeps it whole)
DETAIL_CHARS = 500  # of an exception's message kept in a processing_error's detail


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: str
    detail: str
    source: str  # its id: topic/partition/offset
    payload: bytes


def source_id(record: Any) -> str:
    """The id of a source record, and of every record derived from it alone."""
    return f"{record.topic}/{record.partition}/{record.offset}"


def source_headers(record: Any) -> list[tuple[str, bytes]]:
    return [
        ("id", source_id(record).encode()),
        ("source_topic", record.topic.encode()),
        ("source_partition", str(record.partition).encode()),
        ("source_offset", str(record.offset).encode()),
    ]


def dead_letter(
    record: Any, reason: str, detail: str
) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """(key, value, headers) of the dead letter of `record`."""
    headers = [
        *source_headers(record),
        ("reason", reason.encode()),
        ("detail", detail.encode(errors="replace")),
    ]
    value = record.value
    if value is not None and len(value) > DEAD_LETTER_BYTES:
        headers.append(("truncated", str(len(value)).encode()))
        value = value[:DEAD_LETTER_BYTES]
    return record.key, value, headers


def processing_error_detail(exc: BaseException) -> str:
    """The detail of a record whose processing raised (not an invalid event)."""
    return f"{type(exc).__name__}: {exc}"[:DETAIL_CHARS]


def read_dead_letter(headers: Iterable[tuple[str, bytes]], value: bytes | None) -> DeadLetter:
    h = {name: raw.decode(errors="replace") for name, raw in headers}
    return DeadLetter(h.get("reason", "?"), h.get("detail", ""), h.get("id", "?"), value or b"")
