"""WindowTotal: a window's result over every source partition, with the exact top-K pages and
referrers. combine_window_parts collects the parts (agents.window_results) and emits each
total once.

Rule: total = the sum of the window's `partitions` parts (sketches: register-wise max),
complete once every partition's part is in. Each partition sends a part for every window
from its first watermark on, empty ones included (tables.window_state), and ticks move quiet
partitions, so every window after the start completes. Parts share the key
"<stream>/<kind>/<start ms>" (so they meet in one results partition), which is also the
total's key and id. A part sent again after its total went out (a crash upstream) changes
nothing. Kept state per window: the parts so far, then a "done" mark; dropped once the window
is older than the newest one seen minus the retention (event time).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import faust
import orjson

from serving import keys
from streams.eventtime import parse_timestamp
from tables import sketch
from tables.state_table import PartitionState

RESULT_FIELDS = frozenset({"id", "stream", "kind", "start", "end", "partition", "partitions"})
RANKED = {keys.PAGE_VIEWS: "top_pages", keys.REFERRERS: "top_referrers"}
TOTALLED_STREAMS = frozenset({"clicks", "orders"})  # attribution parts exist only with orders
DONE = b"done"


def window_total(parts: Sequence[dict[str, Any]], top_k: int) -> dict[str, Any]:
    """The total of one window's parts (one per source partition, all present)."""
    first = parts[0]
    total: dict[str, Any] = {
        "id": first["id"].rsplit("/p", 1)[0],
        **{name: first[name] for name in ("stream", "kind", "start", "end", "partitions")},
    }
    registers: dict[str, list[bytes]] = {}
    for part in parts:
        for metric, values in part.items():
            if metric in RESULT_FIELDS:
                continue
            if metric == keys.UNIQUES:
                for name, packed in values.items():
                    registers.setdefault(name, []).append(base64.b64decode(packed["registers"]))
            else:
                total[metric] = _summed(total.get(metric, {}), values)
    if registers:
        total[keys.UNIQUES] = {}
        for name, parts_registers in sorted(registers.items()):
            merged = sketch.union(parts_registers)
            total[keys.UNIQUES][name] = {
                "estimate": sketch.estimate(merged),
                "registers": base64.b64encode(merged).decode(),
            }
    for metric, ranked in RANKED.items():
        if metric in total:
            top = sorted(total[metric].items(), key=lambda item: (-item[1], item[0]))[:top_k]
            total[ranked] = [{"name": name, "count": count} for name, count in top]
    return total


def _summed(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Nested counts added key by key."""
    total = dict(a)
    for key, value in b.items():
        if isinstance(value, dict):
            total[key] = _summed(total.get(key, {}), value)
        else:
            total[key] = total.get(key, 0) + value
    return total


def collect(stored: bytes | None, part: dict[str, Any]) -> tuple[bytes, list[dict] | None]:
    """A window's stored parts with `part` added: (what to store now, all parts once complete)."""
    if stored == DONE:
        return DONE, None
    parts = orjson.loads(stored or b"{}")
    parts[str(part["partition"])] = part
    if len(parts) < part["partitions"]:
        return orjson.dumps(parts), None
    return DONE, [parts[p] for p in sorted(parts, key=int)]


def parts_key(partition: int, part: dict[str, Any]) -> bytes:
    """Per results partition, ordered by window start (so old windows are found first)."""
    start = parse_timestamp(part["start"])
    return f"{partition}|{start:020d}|{part['stream']}|{part['kind']}".encode()


def combine_window_parts(
    table: faust.Table, totals: faust.TopicT, top_k: int, retention_ms: int
) -> Any:
    """The agent: parts (raw window results) in, totals out; `table` keeps the parts."""
    newest: dict[int, int] = {}  # results partition -> newest window start seen

    async def combine(stream: faust.StreamT) -> None:
        async for event in stream.events():
            part = orjson.loads(event.value)
            partition, start = event.message.partition, parse_timestamp(part["start"])
            newest[partition] = max(newest.get(partition, start), start)
            oldest_kept = newest[partition] - retention_ms
            if part["stream"] not in TOTALLED_STREAMS or start < oldest_kept:
                continue
            key = parts_key(partition, part)
            stored, complete = collect(table.get(key), part)
            table[key] = stored
            if complete is not None:
                value = orjson.dumps(window_total(complete, top_k))
                await event.send(totals, key=event.key, value=value)  # sent with the ack
            _drop_older(table, partition, oldest_kept)

    return combine


def _drop_older(table: faust.Table, partition: int, oldest_kept: int) -> None:
    prefix = f"{partition}|".encode()
    stored = [key for key, _ in PartitionState(table, partition).items(prefix)]
    for key in stored:
        if int(key[len(prefix) :].split(b"|", 1)[0]) < oldest_kept:
            del table[key]
