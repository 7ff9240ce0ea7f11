"""What the app reads of Faust's internals outside the engine proper, behind small functions.

Every private or undocumented Faust / aiokafka / mode name the project relies on, and where
(each pinned by tests/unit/test_engine_contract.py, against the versions pyproject.toml pins):

engine.delivery (batched delivery inside Faust's consumer)
  faust aiokafka Consumer             subclassed: the consumer class the transport builds
  Consumer._new_consumer_thread()     overridden: build our consumer thread subclass
  AIOKafkaConsumerThread(c, loop=, beacon=)  built as Faust builds it there
  Consumer._wait_next_records(timeout)  overridden: take our topics' fetched record lists
                                      before getmany() makes Messages of them; returns
                                      (records by TP, active partitions or None)
  Consumer.flow_active                read: deliver nothing while Faust has paused the flow
  Consumer._commit(offsets) -> bool   overridden: skip the commit once the consumer (thread)
                                      crashed, or Faust's shutdown waits for it forever
  Consumer._thread (.crashed)         read: the consumer thread, whether it crashed
  Consumer._read_offset[tp]           read/written by _ack_offsets: last offset read (as
                                      _drain_messages keeps it), gaps are measured from it
  Consumer._add_gap(tp, from, to)     called: offsets never delivered (compacted, control
                                      records) still let the commit pass them
  Consumer._committed_offset[tp]      read: acks below the committed offset are dropped
  Consumer._acked_index[tp]           updated: set of acked offsets (as ack() does)
  Consumer._acked[tp]                 extended: acked offsets, read by _new_offset() to commit
  Consumer._n_acked                   incremented: acks since the last commit (commit_every)
  Consumer.ack / _drain_messages      mirrored (not called) by _ack_offsets, for a run of
                                      offsets at once; ack() holds faust.types.tuples.ack_lock
  AIOKafkaConsumerThread._create_worker_consumer(transport)
                                      overridden: the aiokafka consumer of a worker
  aiokafka AIOKafkaConsumer._fetch_max_wait_ms, _fetch_min_bytes
                                      set after construction (Faust hard-codes 1500 ms and
                                      1 byte); read by start() when it builds the Fetcher
  app.consumer_generation_id          read: the current rebalance generation (set by Faust's
                                      rebalance listener), to drop what a rebalance outdated
  Consumer.assignment() / highwater(tp) / highwaters(*tps)
                                      called (public, undocumented): assigned partitions, ends
engine.topology (attaching processors)
  app.transport.Consumer              replaced: Transport.create_consumer builds self.Consumer
  Stream.take_events(max_, within)    called: the agent path (test_context)
engine.commit (the commit step)
  faust Producer._ensure_producer()   called: the aiokafka producer under app.producer
  AIOKafkaProducer.create_batch() / send_batch(batch, topic, *, partition)
                                      called: changelog writes as whole batches, one future
                                      each, resolving to the batch's base offset
  BatchBuilder.append(*, timestamp, key, value)  called: None once the batch is full
  faust Producer.send(topic, key, value, partition, timestamp, headers)  called positionally
  Table.apply_changelog_batch(batch)  called with duck-typed events: the stores read
                                      event.key/value and event.message.tp/partition/offset/
                                      key/value (the path recovery takes)
engine.state (the table behind a processor)
  RocksDB Store._db_for_partition(p)  called: partition p's rocksdict (raw mode), read with
                                      get() and items(from_key=) (sorted prefix scans)
  memory Store.data                   read: the one dict behind every partition
  Table.key_serializer/value_serializer  set before the changelog topic is first built
clickstream.state_dir (through rocksdb_saved_offset below)
  RocksDB Store.partition_path(p)     called: partition p's RocksDB folder
  RocksDB Store.offset_key            read: the key of the saved changelog offset (an ASCII
                                      decimal, as set_persisted_offset writes it, raw mode)
engine.delivery (FaustConsumerView.recovered)
  App.on_rebalance_complete           connected: sent by Recovery once the assignment's active
                                      tables are recovered, before streams resume
  App.rebalancing                     read: True from a rebalance's start until a recovery
                                      finished (Recovery.on_recovery_completed's last step)
clickstream.logs (through active_recovery below)
  app.tables.recovery                 read: the table manager's Recovery service (not on
                                      TableManagerT)
  Recovery.active_highwaters / active_offsets
                                      read: per active changelog partition, its end and where
                                      recovery starts, for the one recovery summary line
  (the log templates it matches are pinned by tests/unit/test_logs.py)
clickstream.worker
  faust.Worker.on_setup_root_logger(logger, level) / on_execute()
                                      overridden (mode Worker hooks): log rules, state folder
clickstream.retire (through delete_consumer_group below)
  AIOKafkaAdminClient._send_request(request, node_id)
                                      called: aiokafka 0.14 has no delete_consumer_groups();
                                      its protocol has DeleteGroupsRequest (public module)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupIdNotFound, for_code
from aiokafka.protocol.admin import DeleteGroupsRequest
from faust.tables.base import Collection
from faust.types import TP, AppT


def rocksdb_saved_offset(table: Collection, partition: int) -> int | None:
    """The changelog offset Faust's RocksDB store saved in partition `partition` of `table`'s
    local files, or None (no files, or no offset in them). Opens the files read-only."""
    store: Any = table.data
    path: Path = store.partition_path(partition)
    if not path.is_dir():
        return None
    import rocksdict

    db = rocksdict.Rdict(
        str(path),
        options=rocksdict.Options(raw_mode=True),
        access_type=rocksdict.AccessType.read_only(),
    )
    try:
        offset = db.get(store.offset_key)
    finally:
        db.close()
    return None if offset is None else int(offset)


def active_recovery(app: AppT) -> tuple[Mapping[TP, int], Mapping[TP, int]]:
    """Per active changelog partition recovery reads: (its end offset, the offset recovery
    starts from). Raises if Faust's Recovery no longer has them."""
    recovery: Any = app.tables.recovery  # type: ignore[attr-defined]
    return recovery.active_highwaters, recovery.active_offsets


async def delete_consumer_group(admin: AIOKafkaAdminClient, group: str) -> None:
    """Delete a consumer group with no members (its committed offsets go with it); a group
    that does not exist is no error. Raises the broker's error otherwise."""
    coordinator = await admin.find_coordinator(group)
    response: Any = await admin._send_request(DeleteGroupsRequest([group]), coordinator)
    for _name, code in response.results:
        if code and code != GroupIdNotFound.errno:
            raise for_code(code)(f"cannot delete consumer group {group}")
