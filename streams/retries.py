"""Re-injection: dead letters sent back in, judged as they would have been.

Two records, one per step:

  request  `<app>-retry`, partition = the original's (co-partitioned with the inputs)
           key, value: the original record's; headers: retry_of "<topic>/<partition>/<offset>"
           (the original's id), source_timestamp (its record timestamp, ms), reason (the
           dead letter's). Written by `clickstream dead-letters reinject`, never to an input.
  copy     `<clock app>-<stream>-ticks` (the time log), partition p
           key, value: the original's; headers: retry_of, source_timestamp, after (the source
           offset it follows, like a tick's), request (the request's offset), by (the app id
           that wrote it). Written by the worker that owns partition p.

Rule: the owner of source partition p copies each request of its source into p's time log,
after the source offset it has applied, and applies the copy as it writes it; every reader of
the time log (a restart, a replay following this clock, the fraud forwarder) applies the copy
at that place, as the original event parsed at its original record timestamp. So it gets the
verdict it would have had, given the event time reached there: late if its window has closed,
a duplicate if its event_id was counted (re-injecting twice counts once). A request is copied
once: not when a copy of it, or of a later request, is in the time log or applied.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

RETRY_OF = "retry_of"


@dataclass(frozen=True, slots=True)
class Request:
    """A dead letter's original, asked to be applied again."""

    topic: str  # the original's input topic
    partition: int
    offset: int
    timestamp_ms: int  # the original's record timestamp

    @property
    def source_id(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass(frozen=True, slots=True)
class Copy:
    """A request as the time log holds it: applied right after source offset `after`."""

    request: Request
    after: int
    request_offset: int
    by: str


def request_headers(original: Request, reason: str) -> list[tuple[str, bytes]]:
    return [
        (RETRY_OF, original.source_id.encode()),
        ("source_timestamp", str(original.timestamp_ms).encode()),
        ("reason", reason.encode()),
    ]


def copy_headers(
    original: Request, after: int, request_offset: int, by: str
) -> list[tuple[str, bytes]]:
    return [
        (RETRY_OF, original.source_id.encode()),
        ("source_timestamp", str(original.timestamp_ms).encode()),
        ("after", str(after).encode()),
        ("request", str(request_offset).encode()),
        ("by", by.encode()),
    ]


def is_retry(headers: Iterable[tuple[str, bytes]] | None) -> bool:
    """Whether a record carries a re-injection (ticks and most records have no headers)."""
    return bool(headers) and any(name == RETRY_OF for name, _ in headers)  # type: ignore[union-attr]


def read_request(headers: Iterable[tuple[str, bytes]] | None) -> Request | None:
    """The original a request or copy names, or None when its headers are not one's."""
    h = dict(headers or ())
    try:
        topic, partition, offset = h[RETRY_OF].decode().rsplit("/", 2)
        return Request(topic, int(partition), int(offset), int(h["source_timestamp"]))
    except (KeyError, ValueError, UnicodeDecodeError):
        return None


def read_copy(headers: Iterable[tuple[str, bytes]] | None) -> Copy | None:
    """The copy in a time log record's headers, or None when they are not a copy's."""
    request = read_request(headers)
    h = dict(headers or ())
    try:
        after, request_offset = int(h["after"]), int(h["request"])
        by = h["by"].decode()
    except (KeyError, ValueError, UnicodeDecodeError):
        return None
    if request is None or after < -1 or request_offset < 0:
        return None
    return Copy(request, after, request_offset, by)
