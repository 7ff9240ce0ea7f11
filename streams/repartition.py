"""Repartition records: a stream re-keyed through the app's own `<app>-<name>-repartition`
topic (engine.repartition), with the source's partition count.

  entry:  key: the new key (partition: Kafka's default partitioner of that key, murmur2)
          value: the entry's bytes, as the re-keying function made them
          headers: id  "<source topic>/<source partition>/<source offset>/<index>": the
                       source record and which of its entries (deterministic: a batch
                       forwarded again after a crash carries the same ids)
                   at  "<event ms>/<release ms>": the entry's event time, and the source
                       partition's watermark before it, raised to the event time
  mark:   key: none, to every partition; headers: mark "1"
          value: {"source": topic, "partition": q, "watermark_ms": W}: partition q of the
                 source topic has passed W; every entry it sends later has release time >= W

Several sources may forward into one topic (clicks and orders by user, for fraud). A reader
releases entries in the order (release ms, source, source partition, offset, index) once every
source partition's mark has passed their release time: one order, however the sources'
records interleaved in the topic (engine.repartition.Alignment).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import orjson

MARK = (("mark", b"1"),)


@dataclass(frozen=True, slots=True)
class EntryHeader:
    topic: str  # the source's
    partition: int
    offset: int
    index: int  # of the entry among its source record's
    time_ms: int  # event time
    release_ms: int  # max(event time, the source partition's watermark before it)

    @property
    def id(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}/{self.index}"


@dataclass(frozen=True, slots=True)
class Mark:
    source: str  # the source topic
    partition: int
    watermark_ms: int


def entry_headers(head: EntryHeader) -> list[tuple[str, bytes]]:
    return [("id", head.id.encode()), ("at", f"{head.time_ms}/{head.release_ms}".encode())]


def mark_value(source: str, partition: int, watermark_ms: int) -> bytes:
    return orjson.dumps({"source": source, "partition": partition, "watermark_ms": watermark_ms})


def is_mark(headers: Iterable[tuple[str, bytes]]) -> bool:
    return ("mark", b"1") in list(headers or ())


def read_entry(headers: Iterable[tuple[str, bytes]]) -> EntryHeader | None:
    """An entry's header, or None when the record has none (the engine did not write it)."""
    h = dict(headers or ())
    try:
        topic, partition, offset, index = h["id"].decode().rsplit("/", 3)
        time_ms, release_ms = h["at"].decode().split("/")
        return EntryHeader(
            topic, int(partition), int(offset), int(index), int(time_ms), int(release_ms)
        )
    except (KeyError, ValueError, UnicodeDecodeError):
        return None


def read_mark(value: bytes | None) -> Mark | None:
    try:
        body = orjson.loads(value or b"")
        source, partition, watermark_ms = body["source"], body["partition"], body["watermark_ms"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    if type(source) is str and type(partition) is int and type(watermark_ms) is int:
        return Mark(source, partition, watermark_ms) if partition >= 0 else None
    return None
