"""Validation fuzzed: any JSON value in any field of a valid click or order (v2 or legacy v1),
fields added or removed, and any bytes at all, is either accepted, and then what it adds to the
state encodes, reads back equal and closes into a window result orjson encodes, or rejected
with a documented reason. Nothing else is ever raised."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from typing import Any

import orjson
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agents.clicks import aggregate_clicks
from agents.orders import aggregate_orders
from agents.window_results import window_result
from agents.windowed import EventKind
from streams.eventtime import event_time_ms, format_timestamp
from streams.records import ClickType, OrderItem
from streams.upcast import is_legacy_order
from streams.validation import (
    CURRENCY_DIGITS,
    EARLIEST_MS,
    MAX_MINOR_UNITS,
    MAX_ORDER_ID,
    InvalidEvent,
    Limits,
    parse_click,
    parse_click_fields,
    parse_order,
)
from tables.dedup import SeenIndex, seen_prefix
from tables.user_sessions import SESSIONS_ENDED, load_sessions
from tables.window_state import Observation, Tick, apply_batch
from tables.windows import WindowSpec
from tests.builders import T0, click_json, legacy_order_json, make_order, order_json
from tests.unit.test_validation import LOG_TIME, verdict_agreed

REASONS = {
    "malformed_json",
    "not_an_object",
    "oversized",
    "unknown_schema_version",
    "missing_field",
    "wrong_type",
    "bad_value",
    "bad_timestamp",
}
LIMITS = Limits()
SPEC = WindowSpec(size_ms=60_000, grace_ms=10_000, dedup_horizon_ms=3_600_000, hop_ms=180_000)
GAP_MS = 120_000
LONG_AFTER_MS = 3_600_000  # a tick this long after the event closes its panes and its session
CLICKS, ORDERS = aggregate_clicks(), aggregate_orders()
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DELETE = object()  # as a mutation's value: the field is removed

# bases: valid events, the order with three items so that items[2].* exists
ITEMS = tuple(OrderItem(f"sku-{n}", n, 100 * n) for n in (1, 2, 3))
CLICK = click_json()
ORDER = order_json(items=ITEMS, amount_cents=1400)
ORDER_IN_YEN = order_json(items=ITEMS, amount_cents=1400, currency="JPY")  # no minor digits
LEGACY_ORDER = legacy_order_json()
FIELD_NAMES = sorted({*CLICK, *CLICK["device"], *ORDER, *ORDER["payment"], *LEGACY_ORDER})

# any JSON value, with the edges of every bound and of the encoders nearby
edge_numbers = st.sampled_from(
    [
        *(0, 1, -1, 2**31, 2**53 - 1, 2**53, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63) - 1),
        *(MAX_ORDER_ID, MAX_MINOR_UNITS, MAX_MINOR_UNITS + 1, 10**30, 0.1, 0.01, 19.99, 49.9),
        *(-0.0, 1e-7, 1e16, 1e308, -1e308, 5e-324, 1e10, 9999999999.99, 10000000000.01),
    ]
)
plausible_texts = st.sampled_from(
    [
        *(kind.value for kind in ClickType),
        *("EUR", "JPY", "KRW", "USD", "\u00c4\u00d6\u00dc", "click", "OrderCreated"),
        *("NaN", "Infinity", "-0", "1e999", "1_000", " 5", "+5", ".5", "5.", "", " ", "\x00"),
        *("https://a.example/?q=1", "android-app://x", "/p/42?x=1#top", "\u0661\u0662"),
    ]
)
money_texts = st.decimals(min_value=0, max_value=10**13, places=2).map(str) | st.decimals().map(str)
timestamps = st.integers(EARLIEST_MS - 1, LOG_TIME + LIMITS.max_future_skew_ms + 1).map(
    format_timestamp
)
numbers = st.one_of(
    edge_numbers,
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.integers(min_value=0, max_value=2 * 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=1e9, allow_infinity=False),  # near and past the money bound
    st.integers(min_value=10**9, max_value=2**64),
    st.decimals(min_value=0, max_value=10**11, places=3).map(float),
    money_texts,
    st.sampled_from(["NaN", "Infinity", "-0", "1e999", "-5", "0", "0.00", " 5", "1_000"]),
)
NUMBER_FIELDS = [("version",), ("id",), ("amount",), ("orderId",), ("total",)] + [
    (*item, name) for item in (("items", 0), ("items", 2)) for name in ("quantity", "unit_price")
]
long_texts = st.builds(
    lambda char, size: char * size,
    st.characters(),
    st.sampled_from([1, 2047, 2048, 2049, 70_000]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),  # json.dumps writes them, orjson reads
    st.integers(min_value=0, max_value=3 * 10**6),
    st.floats(),  # NaN and infinities too: json.dumps writes them as (invalid) NaN, Infinity
    edge_numbers,
    st.text(max_size=20),
    plausible_texts,
    money_texts,
    timestamps,
    long_texts,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)

ANY_VALUE_OR_REMOVED = st.just(DELETE) | json_values
Path = tuple[str | int, ...]


def paths_of(value: Any, prefix: Path = ()) -> list[Path]:
    """Every field and list element inside `value`, as a path from its top."""
    if isinstance(value, dict):
        children: Any = value.items()
    elif isinstance(value, list):
        children = enumerate(value)
    else:
        return []
    found: list[Path] = []
    for key, child in children:
        found.append((*prefix, key))
        found.extend(paths_of(child, (*prefix, key)))
    return found


def objects_of(value: Any) -> list[Path]:
    """The paths of the objects inside `value` (and () for itself): where a field can be added."""
    return [(), *(path for path in paths_of(value) if isinstance(_at(value, path), dict))]


def _at(value: Any, path: Path) -> Any:
    for key in path:
        value = value[key]
    return value


def put(body: dict[str, Any], path: Path, value: Any) -> None:
    """Set (or with DELETE remove) the field at `path`; nothing if an earlier change removed
    its parent."""
    try:
        parent = _at(body, path[:-1])
        key = path[-1]
        if isinstance(parent, list) and not (isinstance(key, int) and key < len(parent)):
            return
        if not isinstance(parent, dict | list):
            return
        if value is DELETE:
            if isinstance(parent, dict):
                parent.pop(key, None)
            else:
                del parent[key]
        else:
            parent[key] = value
    except (KeyError, IndexError, TypeError):
        return


def mutations_of(
    base: dict[str, Any],
    targets: st.SearchStrategy[Path] | None = None,
    values: st.SearchStrategy[Any] = ANY_VALUE_OR_REMOVED,
) -> st.SearchStrategy[bytes]:
    """`base` with one to three fields (by default any, or one added) set to one of `values`
    or removed, as the bytes a producer would send (json.dumps: unlike orjson it writes
    integers of any size)."""
    if targets is None:
        added = st.tuples(
            st.sampled_from(objects_of(base)), st.sampled_from(FIELD_NAMES) | st.text()
        )
        targets = st.sampled_from(paths_of(base)) | added.map(lambda at: (*at[0], at[1]))
    change = st.tuples(targets, values)

    def mutated(changes: list[tuple[Path, Any]]) -> bytes:
        body = copy.deepcopy(base)
        for path, value in changes:
            put(body, path, value)
        return json.dumps(body).encode()

    return st.lists(change, min_size=1, max_size=3).map(mutated)


def spliced(valid: bytes) -> st.SearchStrategy[bytes]:
    """A valid event's bytes with a stretch replaced by arbitrary bytes."""
    return st.tuples(st.integers(0, len(valid)), st.integers(0, 8), st.binary(max_size=8)).map(
        lambda cut: valid[: cut[0]] + cut[2] + valid[cut[0] + cut[1] :]
    )


def accepted_or_rejected(kind: EventKind, raw: bytes) -> str:
    """The verdict; asserts a rejection's reason is documented, an acceptance's state sound."""
    try:
        parsed = kind.parse(raw, LOG_TIME, LIMITS)
    except InvalidEvent as exc:
        assert exc.reason in REASONS, (exc.reason, raw[:200])
        assert len(exc.detail) <= 200, exc.detail  # it travels in a dead letter's header
        exc.detail.encode()
        return exc.reason
    state_round_trips(kind, parsed)
    return "accepted"


def fuzzed(kind: EventKind, raw: bytes) -> str:
    """accepted_or_rejected, counted: --hypothesis-show-statistics shows the mix of verdicts."""
    verdict = accepted_or_rejected(kind, raw)
    event(f"{kind.stream}: {verdict}")
    return verdict


def state_round_trips(kind: EventKind, accepted: Any) -> None:
    """The worker's Observation of `accepted` applied to an empty partition, read back after a
    restart, and closed by a tick: every write decodes and re-encodes equal, the event's pane
    holds exactly its counts, and every closed window's result encodes."""
    time_ms = event_time_ms(accepted)
    observation = Observation(0, accepted.event_id, time_ms, *kind.measure(accepted))
    store: dict[bytes, bytes] = {}
    sessions = kind is CLICKS
    for batch in ([observation], [Tick(1, time_ms + LONG_AFTER_MS)]):
        # each batch from the stored state only, as after a restart
        out = apply_batch(
            0,
            batch,
            SPEC,
            _Store(store),
            SeenIndex.load(_Store(store).items(seen_prefix(0))),
            load_sessions(0, SPEC, GAP_MS, _Store(store)) if sessions else None,
        )
        for key, value in out.writes.items():
            if value is None:
                store.pop(key, None)
                continue
            assert type(value) is bytes
            if not key.startswith(b"H|"):  # sketch registers are raw bytes, the rest JSON
                decoded = orjson.loads(value)
                assert orjson.loads(orjson.dumps(decoded)) == decoded
            store[key] = value
    pane = next(w for w in out.closed if w.start_ms <= time_ms < w.end_ms)
    counted = dict(pane.counts)
    counted.pop(SESSIONS_ENDED, None)  # the session's own count, in its expiry pane
    assert counted == {dimension: list(amounts) for dimension, amounts in observation.increments}
    for window in out.closed:
        result = window_result(kind.stream, 0, 1, window, SPEC.size_ms)
        assert orjson.loads(orjson.dumps(result)) == result


def minor_units(written: str | int | Decimal, currency: str) -> Decimal:
    return Decimal(written).scaleb(CURRENCY_DIGITS.get(currency, 2))


class _Store:
    """A plain dict read as one partition's stored state."""

    def __init__(self, store: dict[bytes, bytes]) -> None:
        self.store = store

    def get(self, key: bytes) -> bytes | None:
        return self.store.get(key)

    def items(self, prefix: bytes) -> list[tuple[bytes, bytes]]:
        return [(k, v) for k, v in sorted(self.store.items()) if k.startswith(prefix)]


def test_the_valid_bases_are_accepted_and_sound():
    assert accepted_or_rejected(CLICKS, orjson.dumps(CLICK)) == "accepted"
    assert accepted_or_rejected(ORDERS, orjson.dumps(ORDER)) == "accepted"
    assert accepted_or_rejected(ORDERS, orjson.dumps(LEGACY_ORDER)) == "accepted"
    assert parse_order(orjson.dumps(ORDER), LOG_TIME) == make_order(items=ITEMS, amount_cents=1400)
    assert event_time_ms(parse_click(orjson.dumps(CLICK), LOG_TIME)) == T0


@FUZZ
@given(mutations_of(CLICK))
def test_any_value_in_any_click_field_is_accepted_soundly_or_rejected_with_a_reason(raw):
    verdict = fuzzed(CLICKS, raw)
    assert verdict_agreed(raw) == verdict  # fast path and reference: same verdict and detail


@FUZZ
@given(mutations_of(ORDER))
def test_any_value_in_any_order_field_is_accepted_soundly_or_rejected_with_a_reason(raw):
    fuzzed(ORDERS, raw)


@FUZZ
@given(
    mutations_of(ORDER, st.sampled_from(NUMBER_FIELDS), numbers)
    | mutations_of(LEGACY_ORDER, st.sampled_from(NUMBER_FIELDS), numbers)
    | mutations_of(ORDER_IN_YEN, st.sampled_from(NUMBER_FIELDS), numbers)
)
def test_any_number_in_any_number_field_is_accepted_exactly_or_rejected_with_a_reason(raw):
    if fuzzed(ORDERS, raw) == "accepted":
        order = parse_order(raw, LOG_TIME)
        written = json.loads(raw, parse_float=Decimal)  # the numbers as written, exactly
        legacy = is_legacy_order(written)  # no items, and its amount is `total`
        amount = written["total"] if legacy else written["amount"]
        prices = [] if legacy else [item["unit_price"] for item in written["items"]]
        assert [order.amount_cents, *(i.unit_price_cents for i in order.items)] == [
            minor_units(money, order.currency) for money in (amount, *prices)
        ]


@FUZZ
@given(mutations_of(LEGACY_ORDER))
def test_any_value_in_any_legacy_order_field_is_accepted_soundly_or_rejected(raw):
    fuzzed(ORDERS, raw)


@FUZZ
@given(st.binary(max_size=256) | spliced(orjson.dumps(CLICK)) | spliced(orjson.dumps(ORDER)))
def test_any_bytes_are_accepted_soundly_or_rejected_with_a_reason(raw):
    fuzzed(ORDERS, raw)
    fuzzed(CLICKS, raw)
    verdict_agreed(raw)
    for parse in (parse_click, parse_click_fields):
        try:
            parse(raw, LOG_TIME, LIMITS)
        except InvalidEvent as exc:
            assert exc.reason in REASONS
