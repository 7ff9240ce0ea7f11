"""WindowTotal: a window's result over every source partition, with the exact top-K pages and
referrers; and the window's funnel once both streams have passed it. The processor
combine_window_parts (on the engine's batched runner) collects the parts
(agents.window_results) and emits each total once.

Rule: a window's total = the sum of the parts that came (sketches: register-wise max), once
every source partition of its stream has passed it (progress watermark >= end + grace; a
partition with nothing in the window sends no part, agents.window_results). A window with no
part anywhere gets no total. All parts of a window share the key "<kind>/<start ms>" (so they
meet in one results partition, where every partition's progress comes too, after its parts);
a total's id and key are "<stream>/<kind>/<start ms>". A part sent again after its total went
out (a crash upstream) changes nothing. Kept state is bounded by the partitions' progress:
only windows some partition has not yet passed.

  funnel (stream "funnel", once both streams passed the window and either has a total):
  distinct users per step page_view -> add_to_cart -> checkout (clicks sketches) -> buyers
  (orders sketch); each step's conversion = its users / the previous step's.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, cast

import orjson

from agents.window_results import counted, counts_of
from engine.processor import (
    Inputs,
    Keyspace,
    Outcome,
    Poisoned,
    Position,
    Prefix,
    Record,
    Send,
    Store,
)
from serving import keys
from streams.dead_letters import dead_letter, processing_error_detail
from streams.eventtime import parse_timestamp
from streams.topics import PARTS_TABLE, Topology
from tables import sketch
from tables.bounded import OTHER
from tables.window_state import NO_WATERMARK
from tables.windows import MAX_COUNT

RANKED = {keys.PAGE_VIEWS: "top_pages", keys.REFERRERS: "top_referrers"}
TOTALLED_STREAMS = frozenset({"clicks", "orders"})  # attribution parts exist only with orders
FUNNEL = {"clicks": ("page_view", "add_to_cart", "checkout"), "orders": ("buyers",)}


def window_total(parts: Sequence[dict[str, Any]], top_k: int) -> dict[str, Any]:
    """The total of one window's parts (one per source partition that had data in it)."""
    first = parts[0]
    total: dict[str, Any] = {
        "id": first["id"].rsplit("/p", 1)[0],
        **{name: first[name] for name in ("stream", "kind", "start", "end", "partitions")},
    }
    registers: dict[str, list[bytes]] = {}
    counts: dict[str, list[int]] = {}
    for part in parts:
        for dimension, values in counts_of(part).items():
            total_values = counts.get(dimension)
            counts[dimension] = (
                values
                if total_values is None
                else [min(a + b, MAX_COUNT) for a, b in zip(total_values, values, strict=True)]
            )
        for name, packed in part.get(keys.UNIQUES, {}).items():
            registers.setdefault(name, []).append(base64.b64decode(packed["registers"]))
    for metric, ranked in RANKED.items():  # over every name the parts kept
        prefix = metric + keys.SEP
        names = [(d[len(prefix) :], v[0]) for d, v in counts.items() if d.startswith(prefix)]
        top = sorted((n for n in names if n[0] != OTHER), key=lambda n: (-n[1], n[0]))[:top_k]
        if names:
            total[ranked] = [{"name": name, "count": count} for name, count in top]
    total.update(counted(counts))
    for part in parts:  # names folded upstream are folded here too (at most this many)
        for metric, n in part.get("folded", {}).items():
            folded = total.setdefault("folded", {})
            folded[metric] = folded.get(metric, 0) + n
    if registers:
        total[keys.UNIQUES] = {}
        for name, parts_registers in sorted(registers.items()):
            merged = sketch.union(parts_registers)
            total[keys.UNIQUES][name] = {
                "estimate": sketch.estimate(merged),
                "registers": base64.b64encode(merged).decode(),
            }
    return total


def funnel_total(totals: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The funnel of one window from its clicks and orders totals (sketch estimates; a stream
    without a total had no users there)."""
    window = next(iter(totals.values()))
    steps: list[dict[str, Any]] = []
    for stream, names in FUNNEL.items():
        uniques = totals.get(stream, {}).get(keys.UNIQUES, {})
        for name in names:
            users = uniques.get(name, {}).get("estimate", 0)
            previous = steps[-1]["users"] if steps else None
            conversion = None if previous is None else (users / previous if previous else 0.0)
            steps.append({"step": name, "users": users, "conversion": conversion})
    return {
        "id": f"funnel/{window['kind']}/{parse_timestamp(window['start'])}",
        "stream": "funnel",
        **{name: window[name] for name in ("kind", "start", "end")},
        "steps": steps,
    }


# T: a kept part or funnel; M: a stream's progress marks. A part is written before the marks
# that pass its window, and deleted only after them: a recovered prefix never has the marks of
# a window whose parts are lost (a redo would total it from what is left).
KEYSPACE = Keyspace(
    Prefix("T", "window parts and funnels awaiting their totals", 0, deletes=2),
    Prefix("M", "each stream's source partitions' progress (watermarks passed)", 1),
)


def parts_key(partition: int, part: dict[str, Any], stream: str | None = None) -> bytes:
    """Per results partition, ordered by window start (so old windows are found first); a
    part's own key ends with its source partition (each part is a record of its own)."""
    start = parse_timestamp(part["start"])
    source = "" if stream else part["partition"]
    name = stream or part["stream"]
    return f"T|{partition}|{start:020d}|{name}|{part['kind']}|{source}".encode()


def progress_key(partition: int, stream: str) -> bytes:
    return f"M|{partition}|{stream}".encode()


class PartsStore(Protocol):
    """One results partition's kept state (keys and values raw bytes)."""

    def get(self, key: bytes) -> bytes | None: ...

    def items(self, prefix: bytes) -> Iterable[tuple[bytes, bytes]]: ...

    def __setitem__(self, key: bytes, value: bytes) -> None: ...

    def __delitem__(self, key: bytes) -> None: ...


def combine(store: PartsStore, partition: int, record: dict[str, Any], top_k: int) -> list[dict]:
    """Take one record of results partition `partition` (a part or a progress record); return
    the totals and funnels it completes, in order.

    Kept: per window with parts, each part as {"end_ms", "part"} until the window's total is
    out; per window with a total, its funnel's {"end_ms", "totals": {stream: total}} until
    the funnel is out; per stream, {"grace_ms", "n": source partitions, "w": {source partition:
    watermark passed}}. A part of a window its partition had already passed is one sent again
    (a crash upstream): its original came before that progress, so it is ignored."""
    stream = record["stream"]
    if stream not in TOTALLED_STREAMS:
        return []
    progress = {name: _progress(store, partition, name) for name in FUNNEL}
    ours = progress[stream]
    source = str(record["partition"])
    if record["kind"] != "progress":
        end_ms = parse_timestamp(record["end"])
        if end_ms + ours.get("grace_ms", 0) <= ours.get("w", {}).get(source, NO_WATERMARK):
            return []  # sent again
        store[parts_key(partition, record)] = orjson.dumps({"end_ms": end_ms, "part": record})
        return []
    marks = ours.setdefault("w", {})
    marks[source] = max(marks.get(source, NO_WATERMARK), record["watermark_ms"])
    ours["n"], ours["grace_ms"] = record["partitions"], record["grace_ms"]
    store[progress_key(partition, stream)] = orjson.dumps(ours)
    passed = {name: _slowest(kept) for name, kept in progress.items()}
    grace, out = record["grace_ms"], []
    closing: dict[bytes, list[dict[str, Any]]] = {}  # window -> its parts, in key order
    for key, kept in _kept(store, partition, stream, passed[stream]):
        if kept["end_ms"] + grace <= passed[stream]:
            del store[key]
            closing.setdefault(key.rsplit(b"|", 1)[0], []).append(kept)
    for kept_parts in closing.values():
        parts = sorted((kept["part"] for kept in kept_parts), key=lambda p: p["partition"])
        total = window_total(parts, top_k)
        out.append(total)
        end_ms = kept_parts[0]["end_ms"]
        funnel_key = parts_key(partition, total, "funnel")
        store[funnel_key] = _with_total(store.get(funnel_key), total, end_ms)
    both = min(passed.values())
    for key, kept in _kept(store, partition, "funnel", both):
        if kept["end_ms"] + grace <= both:
            del store[key]
            out.append(funnel_total(kept["totals"]))
    return out


def _kept(
    store: PartsStore, partition: int, name: str, until_ms: int
) -> list[tuple[bytes, dict[str, Any]]]:
    """The kept windows of stream `name` (or "funnel") starting at or before `until_ms`
    (whatever is later cannot close yet), oldest first."""
    prefix, found = f"T|{partition}|".encode(), []
    for key, raw in store.items(prefix):  # sorted by window start
        start, kept_name, _kind, _source = key[len(prefix) :].decode().split("|")
        if int(start) > until_ms:
            break
        if kept_name == name:
            found.append((key, orjson.loads(raw)))
    return found


def _progress(store: PartsStore, partition: int, stream: str) -> dict[str, Any]:
    return cast(dict[str, Any], orjson.loads(store.get(progress_key(partition, stream)) or b"{}"))


def _slowest(progress: dict[str, Any]) -> int:
    """The slowest source partition's watermark (NO_WATERMARK while some has sent none)."""
    marks = progress.get("w", {})
    return min(marks.values()) if marks and len(marks) >= progress["n"] else NO_WATERMARK


def _with_total(raw: bytes | None, total: dict[str, Any], end_ms: int) -> bytes:
    """A window's stream totals so far (what its funnel reads), with `total` added."""
    kept = orjson.loads(raw or b"{}")
    kept["end_ms"] = end_ms
    kept.setdefault("totals", {})[total["stream"]] = {
        k: total[k] for k in ("stream", "kind", "start", "end", keys.UNIQUES) if k in total
    }
    return orjson.dumps(kept)


class _Overlay:
    """A PartsStore over a partition's staged state that collects the batch's writes."""

    def __init__(self, state: Store) -> None:
        self.state = state
        self.writes: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.writes[key] if key in self.writes else self.state.get(key)

    def items(self, prefix: bytes) -> Iterable[tuple[bytes, bytes]]:
        merged: dict[bytes, bytes | None] = dict(self.state.items(prefix))
        merged.update((k, v) for k, v in self.writes.items() if k.startswith(prefix))
        return [(k, v) for k, v in sorted(merged.items()) if v is not None]

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.writes[key] = value

    def __delitem__(self, key: bytes) -> None:
        self.writes[key] = None


class WindowTotals:
    """combine_window_parts, an engine processor: parts and progress in, totals out."""

    name = "combine_window_parts"
    table = PARTS_TABLE
    keyspace = KEYSPACE
    sink = None

    def __init__(self, topics: Topology, top_k: int) -> None:
        self.inputs = Inputs(source=topics.window_results.name)
        self.outputs = {
            "totals": topics.window_totals.name,
            "dead_letters": topics.dead_letters.name,
        }
        self.top_k = top_k

    def apply(
        self, partition: int, records: Sequence[Record | Poisoned], state: Store, settled: Store
    ) -> Outcome:
        store, sends = _Overlay(state), []
        for record in records:
            if isinstance(record, Poisoned):  # not a result of ours: kept, with the reason
                detail = processing_error_detail(record.error)
                key, value, headers = dead_letter(record.record, "processing_error", detail)
                sends.append(Send("dead_letters", key, value, headers=headers))
                continue
            for total in combine(store, partition, orjson.loads(record.value or b""), self.top_k):
                sends.append(Send("totals", total["id"].encode(), orjson.dumps(total)))
        return Outcome(partition, store.writes, sends)

    def position(self, partition: int, state: Store) -> Position:
        return Position(-1)  # no time log: parts are redone by their own rule (combine)

    def forget(self, partition: int) -> None:
        pass  # no in-memory indexes
