"""Dead letters: the records the app could not take, copied with the reason why.

  topic:   <app>-dead-letters, partition by the original key
  key:     the original key           value: the original bytes (at most DEAD_LETTER_BYTES)
  headers: id (= source_id: "<topic>/<partition>/<offset>" of the source record), reason,
           detail, source_topic, source_partition, source_offset, source_timestamp (the
           record timestamp, ms), and `truncated` (the original size) when the value was cut;
           a re-injected copy's letter (streams.retries) also names its original: retry_of,
           and source_timestamp is the original's
The id is derived from the source record alone, so a letter repeated after a crash has the
same id (consumers dedupe by it). Writer (the engine's processors) and reader (the CLI) share
this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from streams.retries import RETRY_OF, Request, is_retry, read_request, request_headers

DEAD_LETTER_BYTES = 512 * 1024  # of a rejected payload copied (the source keeps it whole)
DETAIL_CHARS = 500  # of an exception's message kept in a processing_error's detail


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: str
    detail: str
    source: str  # its id: topic/partition/offset
    payload: bytes
    key: bytes | None = None  # the original key
    # the record first rejected: the one retry_of names, else the source; None in a letter
    # without source_timestamp (written before it was) or without its source
    original: Request | None = None
    truncated: bool = False  # payload is the first DEAD_LETTER_BYTES of the original only


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
    original = read_request(record.headers) if is_retry(record.headers) else None
    if original is None:
        headers.append(("source_timestamp", str(record.timestamp).encode()))
    else:  # a re-injected copy (streams.retries) rejected again: it names its original
        headers += request_headers(original, reason)[:2]
    value = record.value
    if value is not None and len(value) > DEAD_LETTER_BYTES:
        headers.append(("truncated", str(len(value)).encode()))
        value = value[:DEAD_LETTER_BYTES]
    return record.key, value, headers


def processing_error_detail(exc: BaseException) -> str:
    """The detail of a record whose processing raised (not an invalid event)."""
    return f"{type(exc).__name__}: {exc}"[:DETAIL_CHARS]


def read_dead_letter(
    headers: Iterable[tuple[str, bytes]], value: bytes | None, key: bytes | None = None
) -> DeadLetter:
    h = {name: raw.decode(errors="replace") for name, raw in headers}
    return DeadLetter(
        reason=h.get("reason", "?"),
        detail=h.get("detail", ""),
        source=h.get("id", "?"),
        payload=value or b"",
        key=key,
        original=_original(h),
        truncated="truncated" in h,
    )


def _original(h: dict[str, str]) -> Request | None:
    try:
        topic, partition, offset = h.get(RETRY_OF, h.get("id", "")).rsplit("/", 2)
        return Request(topic, int(partition), int(offset), int(h["source_timestamp"]))
    except (KeyError, ValueError):
        return None
