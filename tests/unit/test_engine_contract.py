"""Every private (or undocumented) Faust, aiokafka and mode name the project relies on exists,
with the shape we rely on, in the installed libraries. The list, with who uses each name and
why, is the docstring of engine/internals.py (keep the two in step).

A failure names the name, what changed, the module that relies on it and what it does with it.
The library versions this list was checked against are pinned in pyproject.toml: an upgrade
fails test_installed_versions_are_the_checked_ones until every name here is checked again.
"""

from __future__ import annotations

import inspect
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import aiokafka
import faust
import mode
import pytest
from aiokafka.producer.message_accumulator import BatchBuilder
from faust.stores.memory import Store as MemoryStore
from faust.stores.rocksdb import Store as RocksDBStore
from faust.tables.base import Collection
from faust.tables.manager import TableManager
from faust.transport.base import Transport
from faust.transport.consumer import Consumer as BaseConsumer
from faust.transport.consumer import ThreadDelegateConsumer
from faust.transport.drivers.aiokafka import (
    AIOKafkaConsumerThread,
    Consumer,
    ConsumerRebalanceListener,
    Producer,
)
from faust.types import TP
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"
MODE_CHECKED = "0.7.1"  # mode-streaming, as faust-streaming 0.15.3 pulled it in (not pinned)
TEST_TP = TP("contract", 0)


def _pinned() -> dict[str, Version]:
    """Distribution -> the lowest version pyproject.toml allows (the one checked)."""
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    pinned = {}
    for line in dependencies:
        requirement = Requirement(line)
        floors = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "==")]
        if floors:
            pinned[requirement.name] = max(floors)
    return pinned


@pytest.mark.parametrize("distribution", ["faust-streaming", "aiokafka"])
def test_installed_versions_are_the_checked_ones(distribution):
    pinned = _pinned()
    assert distribution in pinned, f"pyproject.toml no longer pins {distribution}"
    installed = Version(version(distribution))
    assert installed == pinned[distribution], (
        f"{distribution} {installed} is installed, but the private names in "
        f"tests/unit/test_engine_contract.py (listed in engine/internals.py) were checked against "
        f"{pinned[distribution]}, the version pyproject.toml pins. After an upgrade, re-check "
        f"this list against the new source (and the engine modules it names), then raise the pin "
        f"in pyproject.toml to {installed}."
    )


def test_installed_mode_is_the_checked_one():
    installed = version("mode-streaming")
    assert installed == MODE_CHECKED, (
        f"mode-streaming {installed} is installed, but the mode names in "
        f"tests/unit/test_engine_contract.py were checked against {MODE_CHECKED} (pyproject.toml "
        f"does not pin mode; faust-streaming pulls it in). Re-check this list, then update "
        f"MODE_CHECKED."
    )


# --- shapes ----------------------------------------------------------------------------------


class Changed(Exception):
    """What is no longer as the engine expects."""


def _attr(owner: Any, name: str) -> Any:
    try:
        return getattr(owner, name)
    except AttributeError:
        raise Changed(f"{_label(owner)} has no attribute {name!r}") from None


def _label(owner: Any) -> str:
    cls = owner if isinstance(owner, type) else type(owner)
    return f"{cls.__module__}.{cls.__qualname__}"


def _method(
    owner: Any,
    name: str,
    params: list[str],
    *,
    coroutine: bool | None = None,
    exact: bool = True,
) -> Any:
    """`owner.name` is a function whose parameters are `params` (self first); `exact` False:
    `params` come first, more may follow."""
    fn = _attr(owner, name)
    if not callable(fn):
        raise Changed(f"{name} is no longer callable")
    names = list(inspect.signature(fn).parameters)
    if (names if exact else names[: len(params)]) != params:
        raise Changed(f"{name} takes ({', '.join(names)}), not ({', '.join(params)})")
    if coroutine is not None and inspect.iscoroutinefunction(fn) != coroutine:
        raise Changed(f"{name} is {'no longer' if coroutine else 'now'} a coroutine function")
    return fn


def _calls(fn: Any, *snippets: str) -> None:
    """The source of `fn` still contains each of `snippets` (whitespace-insensitive)."""
    source = re.sub(r"\s+", "", inspect.getsource(fn))
    for snippet in snippets:
        if re.sub(r"\s+", "", snippet) not in source:
            raise Changed(f"{fn.__qualname__} no longer contains `{snippet}`")


def _self_names(fn: Any) -> set[str]:
    return set(re.findall(r"self\.(_[a-z_]+)", inspect.getsource(fn)))


def _app(**kwargs: Any) -> faust.App:
    return faust.App("contract", store="memory://", env={}, **kwargs)


def _consumer() -> Consumer:
    """Faust's aiokafka consumer, built as the app builds it (nothing started)."""
    app = _app()
    return Consumer(
        app.transport,
        callback=lambda message: None,
        on_partitions_revoked=lambda revoked: None,
        on_partitions_assigned=lambda assigned: None,
    )


def _is(value: Any, kind: type | tuple[type, ...], what: str) -> None:
    if not isinstance(value, kind):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        wanted = " or ".join(k.__name__ for k in kinds)
        raise Changed(f"{what} is a {type(value).__name__}, not a {wanted}")


# --- engine.delivery -------------------------------------------------------------------------


def _new_consumer_thread() -> None:
    _method(Consumer, "_new_consumer_thread", ["self"])
    _calls(ThreadDelegateConsumer.__init__, "self._thread = self._new_consumer_thread()")
    _calls(
        Consumer._new_consumer_thread,
        "AIOKafkaConsumerThread(self, loop=self.loop, beacon=self.beacon)",
    )
    _method(AIOKafkaConsumerThread, "__init__", ["self", "consumer", "kwargs"])


def _wait_next_records() -> None:
    _method(Consumer, "_wait_next_records", ["self", "timeout"], coroutine=True)
    _calls(
        BaseConsumer.getmany, "records, active_partitions = await self._wait_next_records(timeout)"
    )
    _calls(BaseConsumer._wait_next_records, "return records, active_partitions")


def _flow_active() -> None:
    _is(_attr(_consumer(), "flow_active"), bool, "Consumer.flow_active")
    _calls(BaseConsumer.getmany, "if self.flow_active:")


def _commit() -> None:
    _method(Consumer, "_commit", ["self", "offsets"], coroutine=True)
    _calls(BaseConsumer._commit_offsets, "did_commit = await self._commit(committable_offsets)")


def _thread() -> None:
    consumer = _consumer()
    _is(_attr(consumer, "_thread"), AIOKafkaConsumerThread, "Consumer._thread")
    for service in (consumer, consumer._thread):
        _is(_attr(service, "crashed"), bool, f"{_label(service)}.crashed")
        _is(_attr(service, "should_stop"), bool, f"{_label(service)}.should_stop")


def _offset_map(name: str) -> Callable[[], None]:
    def check() -> None:
        offsets = _attr(_consumer(), name)
        if offsets[TEST_TP] is not None:  # a defaultdict: unknown partitions read None
            raise Changed(f"Consumer.{name}[tp] of a new partition is {offsets[TEST_TP]!r}")
        offsets[TEST_TP] = 7
        if offsets[TEST_TP] != 7:
            raise Changed(f"Consumer.{name} does not keep what is written to it")

    return check


def _add_gap() -> None:
    _method(BaseConsumer, "_add_gap", ["self", "tp", "offset_from", "offset_to"], coroutine=True)
    _calls(BaseConsumer._drain_messages, "await self._add_gap(tp, r_offset + 1, offset)")


def _acked_index() -> None:
    index = _attr(_consumer(), "_acked_index")
    _is(index[TEST_TP], set, "Consumer._acked_index[tp]")  # a defaultdict(set)
    _calls(BaseConsumer._new_offset, "self._acked_index[tp].difference_update(batch)")


def _acked() -> None:
    acked = _attr(_consumer(), "_acked")
    _is(acked[TEST_TP], list, "Consumer._acked[tp]")  # a defaultdict(list)
    _calls(BaseConsumer._new_offset, "acked = self._acked[tp]", "acked.sort()")


def _n_acked() -> None:
    n = _attr(_consumer(), "_n_acked")
    if type(n) is not int or n != 0:
        raise Changed(f"Consumer._n_acked of a new consumer is {n!r}, not 0")
    _calls(BaseConsumer._drain_messages, "if self._n_acked >= commit_every:")


def _ack_bookkeeping() -> None:
    """What ack() keeps per acked offset is still what _ack_offsets keeps (plus the Message
    bookkeeping, which records delivered whole never enter), and gaps are as _drain_messages
    makes them."""
    kept = _self_names(BaseConsumer.ack)
    expected = {"_committed_offset", "_acked_index", "_acked", "_n_acked"}
    messages_only = {"_unacked_messages", "_waiting_for_ack"}
    if kept != expected | messages_only:
        raise Changed(f"Consumer.ack now keeps {sorted(kept)}, not {sorted(expected)}")
    _calls(BaseConsumer.ack, "if committed is None or offset >= committed:")
    _calls(BaseConsumer._drain_messages, "set_read_offset(tp, offset)")


def _create_worker_consumer() -> None:
    _method(AIOKafkaConsumerThread, "_create_worker_consumer", ["self", "transport"])
    _calls(
        AIOKafkaConsumerThread._create_consumer, "return self._create_worker_consumer(transport)"
    )
    _calls(AIOKafkaConsumerThread._create_worker_consumer, "return aiokafka.AIOKafkaConsumer(")


def _fetch_max_wait_ms() -> None:
    _calls(aiokafka.AIOKafkaConsumer.__init__, "self._fetch_max_wait_ms = fetch_max_wait_ms")
    _calls(aiokafka.AIOKafkaConsumer.start, "fetch_max_wait_ms=self._fetch_max_wait_ms")
    _calls(aiokafka.AIOKafkaConsumer.start, "self._fetcher = Fetcher(")


def _fetch_min_bytes() -> None:
    _calls(aiokafka.AIOKafkaConsumer.__init__, "self._fetch_min_bytes = fetch_min_bytes")
    _calls(aiokafka.AIOKafkaConsumer.start, "fetch_min_bytes=self._fetch_min_bytes")


def _faust_fetch_max_wait() -> None:
    # still hard-coded; if it became a setting, engine.delivery should set that instead
    _calls(AIOKafkaConsumerThread._create_worker_consumer, "fetch_max_wait_ms=1500")


def _consumer_generation_id() -> None:
    _is(_attr(_app(), "consumer_generation_id"), int, "App.consumer_generation_id")
    _calls(
        ConsumerRebalanceListener.on_partitions_assigned,
        "self._thread.app.consumer_generation_id = generation",
    )


def _consumer_reads() -> None:
    _method(Consumer, "assignment", ["self"])
    _method(Consumer, "highwater", ["self", "tp"])
    _method(Consumer, "highwaters", ["self", "partitions"], coroutine=True)


# --- engine.topology -------------------------------------------------------------------------


def _transport_consumer() -> None:
    transport = _app().transport
    if _attr(transport, "Consumer") is not Consumer:
        raise Changed(f"app.transport.Consumer is {transport.Consumer!r}, not {Consumer!r}")
    _calls(Transport.create_consumer, "return self.Consumer(self, callback=callback,")
    _calls(faust.App._new_consumer, "return self.transport.create_consumer(")


def _take_events() -> None:
    fn = _method(faust.Stream, "take_events", ["self", "max_", "within"])
    if not inspect.isasyncgenfunction(inspect.unwrap(fn)):
        raise Changed("Stream.take_events is no longer an async generator")


# --- engine.commit ---------------------------------------------------------------------------


def _ensure_producer() -> None:
    _method(Producer, "_ensure_producer", ["self"])
    _calls(Producer._ensure_producer, "return self._producer")
    _calls(Producer.on_start, "producer = self._producer = self._new_producer()")
    _calls(Producer._new_producer, "return self._producer_type(")
    if Producer(_app().transport)._producer_type is not aiokafka.AIOKafkaProducer:
        raise Changed("Faust's Producer no longer builds an aiokafka.AIOKafkaProducer")
    if _app().conf.producer_threaded:  # a threaded producer's client runs on another loop
        raise Changed("producer_threaded is now on by default")


def _producer_batches() -> None:
    _method(aiokafka.AIOKafkaProducer, "create_batch", ["self"], coroutine=False)
    _method(
        aiokafka.AIOKafkaProducer,
        "send_batch",
        ["self", "batch", "topic", "partition"],
        coroutine=True,
    )
    partition = inspect.signature(aiokafka.AIOKafkaProducer.send_batch).parameters["partition"]
    if partition.kind is not inspect.Parameter.KEYWORD_ONLY:
        raise Changed("send_batch's partition is no longer keyword-only")


def _batch_append() -> None:
    _method(BatchBuilder, "append", ["self", "timestamp", "key", "value"], exact=False)
    batch = BatchBuilder(200, 0)
    appended = 0
    while batch.append(timestamp=None, key=b"k", value=b"v" * 50) is not None:
        appended += 1
        if appended > 100:
            raise Changed("BatchBuilder.append never returns None on a full batch")
    if appended == 0:
        raise Changed("BatchBuilder.append takes nothing into a fresh batch")


def _producer_send() -> None:
    params = ["self", "topic", "key", "value", "partition", "timestamp", "headers"]
    _method(Producer, "send", params, coroutine=True, exact=False)


def _apply_changelog_batch() -> None:
    _method(faust.Table, "apply_changelog_batch", ["self", "batch"])
    _calls(Collection.apply_changelog_batch, "self.data.apply_changelog_batch(")
    # what the stores read of each event: engine.commit._Acked has exactly these
    _calls(
        RocksDBStore.apply_changelog_batch, "tp, offset = event.message.tp, event.message.offset"
    )
    _calls(MemoryStore._create_batch_iterator, "key = to_key(event.key)", "to_value(event.value)")


# --- engine.state ----------------------------------------------------------------------------


def _db_for_partition() -> None:
    _method(RocksDBStore, "_db_for_partition", ["self", "partition"])


def _memory_data() -> None:
    table = _app().Table("contract", key_type=bytes, value_type=bytes)
    _is(table.data, MemoryStore, "a memory:// table's data")
    _is(_attr(table.data, "data"), dict, "memory Store.data")


def _table_serializers() -> None:
    table = _app().Table("contract", key_type=bytes, value_type=bytes)
    table.key_serializer = table.value_serializer = "raw"
    topic = table.changelog_topic  # built on first use, from the serializers set by then
    if (topic.key_serializer, topic.value_serializer) != ("raw", "raw"):
        raise Changed(
            f"the changelog topic's serializers are {topic.key_serializer!r}, "
            f"{topic.value_serializer!r}: not taken from the table's when first built"
        )


# --- clickstream.state_dir (engine.internals.rocksdb_saved_offset) ---------------------------


def _partition_path() -> None:
    fn = _method(RocksDBStore, "partition_path", ["self", "partition"])
    if inspect.signature(fn).return_annotation not in (Path, "Path"):
        raise Changed("RocksDB Store.partition_path no longer returns a Path")


def _offset_key() -> None:
    _is(_attr(RocksDBStore, "offset_key"), bytes, "RocksDB Store.offset_key")
    _calls(
        RocksDBStore.set_persisted_offset,
        "self._db_for_partition(tp.partition).put(self.offset_key, str(offset).encode())",
    )
    _calls(RocksDBStore.persisted_offset, "return int(offset)")


# --- clickstream.logs (engine.internals.active_recovery) -------------------------------------


def _recovery() -> None:
    if not isinstance(TableManager.__dict__.get("recovery"), property):
        raise Changed("TableManager.recovery is no longer a property")
    recovery = _app().tables.recovery
    for name in ("active_highwaters", "active_offsets"):
        _is(_attr(recovery, name), dict, f"Recovery.{name}")  # Counters: TP -> offset


def _rebalance_complete() -> None:
    from faust.tables.recovery import Recovery

    _calls(Recovery.on_recovery_completed, "await self.app.on_rebalance_complete.send()")
    source = inspect.getsource(Recovery.on_recovery_completed)
    if source.index("on_rebalance_complete.send") > source.index("resume_partitions"):
        raise Changed("on_rebalance_complete is sent after the streams resume")
    _attr(_attr(_app(), "on_rebalance_complete"), "connect")  # a signal receivers connect to
    # app.rebalancing: set as a rebalance begins, cleared only once a recovery finished (one
    # superseded by a newer generation returns before that)
    _calls(faust.App.on_rebalance_start, "self.rebalancing = True")
    _calls(faust.App.on_rebalance_end, "self.rebalancing = False")
    if source.index("on_rebalance_end()") < source.index("consumer_generation_id != generation_id"):
        raise Changed("Recovery ends the rebalance before it checks for a newer generation")


# --- clickstream.worker ----------------------------------------------------------------------


def _admin_send_request() -> None:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.protocol.admin import DeleteGroupsRequest

    _method(AIOKafkaAdminClient, "_send_request", ["self", "request", "node_id"], coroutine=True)
    DeleteGroupsRequest(["group"])  # built from the group names alone


def _worker_hooks() -> None:
    _method(faust.Worker, "on_setup_root_logger", ["self", "logger", "level"], coroutine=False)
    _method(faust.Worker, "on_execute", ["self"], coroutine=True)
    _calls(mode.Worker._setup_logging, "self.on_setup_root_logger(_logging.root, _loglevel)")
    _calls(mode.Worker.default_on_first_start, "await self.on_execute()")


@dataclass(frozen=True)
class Use:
    name: str  # as the engine/internals.py list names it
    user: str  # the module relying on it
    what: str  # what that module does with it
    check: Callable[[], None]


DELIVERY, TOPOLOGY, COMMIT, STATE = (
    "engine.delivery",
    "engine.topology",
    "engine.commit",
    "engine.state",
)
STATE_DIR = "clickstream.state_dir via engine.internals.rocksdb_saved_offset"
LOGS = "clickstream.logs via engine.internals.active_recovery"

USES = [
    Use(
        "Consumer._new_consumer_thread()",
        DELIVERY,
        "overrides it to build its AIOKafkaConsumerThread subclass as Faust builds its own",
        _new_consumer_thread,
    ),
    Use(
        "Consumer._wait_next_records(timeout)",
        DELIVERY,
        "overrides it to take its topics' fetched (records by TP, active partitions) before "
        "getmany() makes Messages of them",
        _wait_next_records,
    ),
    Use(
        "Consumer.flow_active",
        DELIVERY,
        "delivers nothing while Faust has paused the flow (rebalance)",
        _flow_active,
    ),
    Use(
        "Consumer._commit(offsets)",
        DELIVERY,
        "overrides it to skip a commit once the consumer or its thread crashed (else "
        "Faust's shutdown waits for it forever)",
        _commit,
    ),
    Use(
        "Consumer._thread / Service.crashed / should_stop",
        DELIVERY,
        "reads whether the consumer thread crashed, and whether the consumer stops",
        _thread,
    ),
    Use(
        "Consumer._read_offset",
        DELIVERY,
        "_ack_offsets reads it to find gaps and sets it to the last offset acked",
        _offset_map("_read_offset"),
    ),
    Use(
        "Consumer._add_gap(tp, offset_from, offset_to)",
        DELIVERY,
        "_ack_offsets marks offsets never delivered as done, as _drain_messages does",
        _add_gap,
    ),
    Use(
        "Consumer._committed_offset",
        DELIVERY,
        "_ack_offsets drops acks below the committed offset, as ack() does",
        _offset_map("_committed_offset"),
    ),
    Use(
        "Consumer._acked_index",
        DELIVERY,
        "_ack_offsets adds acked offsets to it, as ack() does",
        _acked_index,
    ),
    Use(
        "Consumer._acked",
        DELIVERY,
        "_ack_offsets appends acked offsets, which _new_offset() turns into the commit",
        _acked,
    ),
    Use(
        "Consumer._n_acked",
        DELIVERY,
        "_ack_offsets counts its acks there (broker_commit_every)",
        _n_acked,
    ),
    Use(
        "Consumer.ack / _drain_messages (mirrored)",
        DELIVERY,
        "_ack_offsets does what ack() does per message, once per run of offsets",
        _ack_bookkeeping,
    ),
    Use(
        "AIOKafkaConsumerThread._create_worker_consumer(transport)",
        DELIVERY,
        "overrides it to change the worker's aiokafka consumer before it starts",
        _create_worker_consumer,
    ),
    Use(
        "AIOKafkaConsumer._fetch_max_wait_ms",
        DELIVERY,
        "sets it after construction (Fetch.max_wait_ms); start() must pass it to its Fetcher",
        _fetch_max_wait_ms,
    ),
    Use(
        "AIOKafkaConsumer._fetch_min_bytes",
        DELIVERY,
        "sets it after construction (Fetch.min_bytes); start() must pass it to its Fetcher",
        _fetch_min_bytes,
    ),
    Use(
        "Faust's fetch_max_wait_ms=1500",
        DELIVERY,
        "overrides Faust's hard-coded fetch wait; if it became a setting, set that instead",
        _faust_fetch_max_wait,
    ),
    Use(
        "App.consumer_generation_id",
        DELIVERY,
        "FaustConsumerView.generation(): runners drop what a rebalance outdated",
        _consumer_generation_id,
    ),
    Use(
        "Consumer.assignment() / highwater(tp) / highwaters(*tps)",
        DELIVERY,
        "FaustConsumerView: assigned partitions and their end offsets",
        _consumer_reads,
    ),
    Use(
        "app.transport.Consumer",
        TOPOLOGY,
        "replaces it with the batch-delivering consumer class before the consumer is built",
        _transport_consumer,
    ),
    Use(
        "Stream.take_events(max_, within)",
        TOPOLOGY,
        "the agent path (test_context) takes events in batches",
        _take_events,
    ),
    Use(
        "Producer._ensure_producer()",
        COMMIT,
        "write_changelog gets the aiokafka producer under app.producer",
        _ensure_producer,
    ),
    Use(
        "AIOKafkaProducer.create_batch() / send_batch(batch, topic, *, partition)",
        COMMIT,
        "write_changelog sends changelog writes as whole batches, one future each",
        _producer_batches,
    ),
    Use(
        "BatchBuilder.append(*, timestamp, key, value)",
        COMMIT,
        "write_changelog fills a batch until append() returns None (full)",
        _batch_append,
    ),
    Use(
        "Producer.send(topic, key, value, partition, timestamp, headers)",
        COMMIT,
        "KafkaCommitter calls it positionally for derived records and ticks",
        _producer_send,
    ),
    Use(
        "Table.apply_changelog_batch(batch)",
        COMMIT,
        "applies acked changelog records locally as duck-typed events (_Acked)",
        _apply_changelog_batch,
    ),
    Use(
        "RocksDB Store._db_for_partition(partition)",
        STATE,
        "PartitionState reads partition p's rocksdict (get, items(from_key=))",
        _db_for_partition,
    ),
    Use(
        "memory Store.data",
        STATE,
        "PartitionState reads the one dict behind every partition",
        _memory_data,
    ),
    Use(
        "Table.key_serializer / value_serializer",
        STATE,
        "declare_state_table sets them to raw before the changelog topic is first built",
        _table_serializers,
    ),
    Use(
        "RocksDB Store.partition_path(partition)",
        STATE_DIR,
        "finds a table partition's RocksDB folder, to read its saved offset",
        _partition_path,
    ),
    Use(
        "RocksDB Store.offset_key",
        STATE_DIR,
        "reads the saved changelog offset (ASCII decimal) from the folder",
        _offset_key,
    ),
    Use(
        "app.tables.recovery .active_highwaters / .active_offsets",
        LOGS,
        "counts the changelog partitions and records recovery reads, for one summary line",
        _recovery,
    ),
    Use(
        "App.on_rebalance_complete (a signal, sent by Recovery.on_recovery_completed)",
        "engine.delivery",
        "FaustConsumerView.recovered: the assignment's tables are readable, restates may run",
        _rebalance_complete,
    ),
    Use(
        "AIOKafkaAdminClient._send_request(request, node_id)",
        "clickstream.retire",
        "delete_consumer_group sends DeleteGroupsRequest to the group's coordinator",
        _admin_send_request,
    ),
    Use(
        "faust.Worker.on_setup_root_logger(logger, level) / on_execute()",
        "clickstream.worker",
        "overrides them: log rules on the root handlers; the state folder check at start",
        _worker_hooks,
    ),
]


@pytest.mark.parametrize("use", USES, ids=[use.name for use in USES])
def test_private_name_has_the_shape_the_project_relies_on(use: Use) -> None:
    try:
        use.check()
        problem = None
    except Exception as exc:
        problem = str(exc) if isinstance(exc, Changed) else repr(exc)
    if problem is not None:
        pytest.fail(
            f"{use.name} changed: {problem}. {use.user} relies on it: {use.what}. "
            f"The faust-streaming and aiokafka versions it was checked against are pinned in "
            f"pyproject.toml; read the installed source, adapt {use.user}, then this test "
            f"and the list in engine/internals.py.",
            pytrace=False,
        )


def test_every_use_is_listed_in_engine_internals():
    """The closing note's list (engine/internals.py) and this test name the same users."""
    listed = (ROOT / "engine" / "internals.py").read_text()
    for use in USES:
        module = use.user.split(" ")[0]
        assert module in listed, f"engine/internals.py does not list {module} ({use.name})"


# --- the same names at work: engine code against the installed Faust ------------------------


async def test_acked_offsets_commit_as_faust_acked_messages_would():
    """engine.delivery._ack_offsets, then Faust's own commit arithmetic (_new_offset)."""
    from engine.delivery import batch_delivering_consumer

    consumer = batch_delivering_consumer({})(
        _app().transport,
        callback=lambda message: None,
        on_partitions_revoked=lambda revoked: None,
        on_partitions_assigned=lambda assigned: None,
    )
    why = (
        "engine.delivery._ack_offsets no longer acks as Faust's Consumer.ack() and "
        "_drain_messages do (see the Consumer._* names above; versions pinned in pyproject.toml)"
    )
    consumer._read_offset[TEST_TP] = 2
    await consumer._ack_offsets(TEST_TP, [5, 6])  # 3 and 4 never came: a gap, done
    assert consumer._new_offset(TEST_TP) == 7, why
    assert consumer._n_acked == 2, why
    consumer._committed_offset[TEST_TP] = 10
    await consumer._ack_offsets(TEST_TP, [8, 9, 10, 11])  # read again below the commit
    assert consumer._new_offset(TEST_TP) == 12, why
    assert consumer._read_offset[TEST_TP] == 11, why


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_acked_changelog_records_are_what_partition_state_reads(store, tmp_path):
    """engine.commit's duck-typed changelog events through Table.apply_changelog_batch, read
    back by engine.state.PartitionState (_db_for_partition / Store.data)."""
    from engine.commit import _Acked
    from engine.state import PartitionState, declare_state_table

    app = faust.App("contract", store=store, datadir=str(tmp_path), env={})
    table = declare_state_table(app, "state", "contract", partitions=2)
    app.conf.tabledir.mkdir(parents=True, exist_ok=True)
    changelog = TP(table.changelog_topic.get_topic_name(), 1)
    table.apply_changelog_batch(
        [  # duck-typed events, as engine.commit passes them
            _Acked(changelog, 40, b"b|2", b"two"),
            _Acked(changelog, 41, b"a|1", b"one"),
            _Acked(changelog, 42, b"b|1", b"one"),
            _Acked(changelog, 43, b"a|1", None),
        ]
    )
    state = PartitionState(table, 1)
    why = (
        f"a {store} table no longer applies engine.commit's changelog events as "
        f"engine.state.PartitionState reads them (versions pinned in pyproject.toml)"
    )
    assert state.get(b"b|2") == b"two" and state.get(b"a|1") is None, why
    assert list(state.items(b"b|")) == [(b"b|1", b"one"), (b"b|2", b"two")], why
    if store.startswith("rocksdb"):
        assert table.data.persisted_offset(changelog) == 43, why
