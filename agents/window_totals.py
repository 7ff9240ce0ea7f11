"""WindowTotal: a window's result over every source partition, with the exact top-K pages and
referrers; and the window's funnel once both streams' totals are in. combine_window_parts
collects the parts (agents.window_results) and emits each total once.

Rule: total = the sum of the window's `partitions` parts (sketches: register-wise max),
complete once every partition's part is in. Each partition sends a part for every window
from its first watermark on, empty ones included (tables.window_state), and ticks move quiet
partitions, so every window after the start completes. All parts of a window share the key
"<kind>/<start ms>" (so they meet in one results partition); a total's id and key are
"<stream>/<kind>/<start ms>". A part sent again after its total went out (a crash upstream)
changes nothing. Kept state per window and stream: the parts so far, then a "done" mark;
dropped once the window is older than the newest one seen minus the retention (event time).

  funnel (stream "funnel", once the clicks and orders totals are in): distinct users per step
  page_view -> add_to_cart -> checkout (clicks sketches) -> buyers (orders sketch); each
  step's conversion = its users / the previous step's.
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
from tables.windows import MAX_COUNT

RESULT_FIELDS = frozenset(
    {"id", "stream", "kind", "start", "end", "partition", "partitions", "saturated"}
)
RANKED = {keys.PAGE_VIEWS: "top_pages", keys.REFERRERS: "top_referrers"}
TOTALLED_STREAMS = frozenset({"clicks", "orders"})  # attribution parts exist only with orders
FUNNEL = {"clicks": ("page_view", "add_to_cart", "checkout"), "orders": ("buyers",)}
DONE = b"done"


def window_total(parts: Sequence[dict[str, Any]], top_k: int) -> dict[str, Any]:
    """The total of one window's parts (one per source partition, all present)."""
    first = parts[0]
    total: dict[str, Any] = {
        "id": first["id"].rsplit("/p", 1)[0],
        **{name: first[name] for name in ("stream", "kind", "start", "end", "partitions")},
    }
    registers: dict[str, list[bytes]] = {}
    saturated = {d for part in parts for d in part.get("saturated", ())}
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
    saturated |= _saturated(total)
    if saturated:
        total["saturated"] = sorted(saturated)
    for metric, ranked in RANKED.items():
        if metric in total:
            top = sorted(total[metric].items(), key=lambda item: (-item[1], item[0]))[:top_k]
            total[ranked] = [{"name": name, "count": count} for name, count in top]
    return total


def _summed(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Nested counts added key by key (saturating at MAX_COUNT)."""
    total = dict(a)
    for key, value in b.items():
        if isinstance(value, dict):
            total[key] = _summed(total.get(key, {}), value)
        else:
            total[key] = min(total.get(key, 0) + value, MAX_COUNT)
    return total


def _saturated(total: dict[str, Any]) -> set[str]:
    """Dimensions ("<metric>|<name>") with a count at MAX_COUNT."""
    return {
        f"{metric}{keys.SEP}{name}"
        for metric, values in total.items()
        if metric not in RESULT_FIELDS and metric != keys.UNIQUES and isinstance(values, dict)
        for name, value in values.items()
        if value == MAX_COUNT or (isinstance(value, dict) and MAX_COUNT in value.values())
    }


def collect(stored: bytes | None, part: dict[str, Any]) -> tuple[bytes, list[dict] | None]:
    """A window's stored parts with `part` added: (what to store now, all parts once complete)."""
    if stored == DONE:
        return DONE, None
    parts = orjson.loads(stored or b"{}")
    parts[str(part["partition"])] = part
    if len(parts) < part["partitions"]:
        return orjson.dumps(parts), None
    return DONE, [parts[p] for p in sorted(parts, key=int)]


def funnel_total(totals: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The funnel of one window from its clicks and orders totals (sketch estimates)."""
    clicks = totals["clicks"]
    steps: list[dict[str, Any]] = []
    for stream, names in FUNNEL.items():
        uniques = totals[stream].get(keys.UNIQUES, {})
        for name in names:
            users = uniques.get(name, {}).get("estimate", 0)
            previous = steps[-1]["users"] if steps else None
            conversion = None if previous is None else (users / previous if previous else 0.0)
            steps.append({"step": name, "users": users, "conversion": conversion})
    return {
        "id": f"funnel/{clicks['kind']}/{parse_timestamp(clicks['start'])}",
        "stream": "funnel",
        **{name: clicks[name] for name in ("kind", "start", "end")},
        "steps": steps,
    }


def collect_funnel(stored: bytes | None, total: dict[str, Any]) -> tuple[bytes, dict | None]:
    """A window's stream totals so far with `total` added: (what to store, the funnel once both
    streams are in)."""
    if stored == DONE:
        return DONE, None
    totals = orjson.loads(stored or b"{}")
    totals[total["stream"]] = {
        k: total[k] for k in ("stream", "kind", "start", "end", keys.UNIQUES) if k in total
    }
    if totals.keys() < FUNNEL.keys():
        return orjson.dumps(totals), None
    return DONE, funnel_total(totals)


def parts_key(partition: int, part: dict[str, Any], stream: str | None = None) -> bytes:
    """Per results partition, ordered by window start (so old windows are found first)."""
    start = parse_timestamp(part["start"])
    return f"{partition}|{start:020d}|{stream or part['stream']}|{part['kind']}".encode()


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
                total = window_total(complete, top_k)
                await _send(event, totals, total)
                funnel_key = parts_key(partition, part, "funnel")
                stored, funnel = collect_funnel(table.get(funnel_key), total)
                table[funnel_key] = stored
                if funnel is not None:
                    await _send(event, totals, funnel)
            _drop_older(table, partition, oldest_kept)

    return combine


async def _send(event: faust.EventT, totals: faust.TopicT, total: dict[str, Any]) -> None:
    """Sent with the part's ack (Faust sends attached records before committing its offset)."""
    await event.send(totals, key=total["id"].encode(), value=orjson.dumps(total))


def _drop_older(table: faust.Table, partition: int, oldest_kept: int) -> None:
    prefix = f"{partition}|".encode()
    stored = [key for key, _ in PartitionState(table, partition).items(prefix)]
    for key in stored:
        if int(key[len(prefix) :].split(b"|", 1)[0]) < oldest_kept:
            del table[key]
