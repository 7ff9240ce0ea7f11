"""The runtime every processor plugs into: batched delivery below Faust's per-message path,
staged state, a crash-safe commit, idle ticks in an app-owned time log, and the only code that
knows Faust's and aiokafka's private names (pinned by tests/unit/test_engine_contract.py).

  engine.processor   the processor protocol: inputs, table, keyspace, outputs, a pure apply
  engine.runner      drives one processor: staging, commit interval, rebalances, poison records
  engine.time_log    where ticks go among input records; when an idle partition gets one
  engine.commit      the commit step: derived records, changelog writes, input offsets
  engine.state       the table behind a processor and its staged view
  engine.delivery    fetched record lists handed to runners inside Faust's consumer
  engine.topology    attach processors to a Faust app
  engine.internals   Faust's recovery and RocksDB details that clickstream/ reads (start logs)
  engine.testing     a processor, an in-memory runner and a virtual clock, without a broker
"""
