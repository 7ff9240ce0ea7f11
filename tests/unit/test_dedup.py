"""The dedup index: ids by offset, and which buckets have expired by event time."""

from __future__ import annotations

import random

import orjson

from engine.state import StagedState
from engine.testing import DictStore
from tables.dedup import BatchIds, SeenIndex, seen_bucket_key


def test_expired_buckets_are_exactly_those_whose_newest_event_is_older_than_the_bound():
    rng = random.Random(7)
    index = SeenIndex()
    newest: dict[bytes, int] = {}  # the reference: key -> newest event time
    offset = 0
    for _ in range(400):
        if rng.random() < 0.6:
            times = [rng.randrange(10_000) for _ in range(rng.randrange(1, 4))]
            key = seen_bucket_key(0, offset)
            index.add(key, [(f"e-{offset + i}", offset + i, t) for i, t in enumerate(times)])
            newest[key] = max(times)
            offset += len(times)
        bound = rng.randrange(10_000)
        expired = index.expired(bound)
        assert sorted(expired) == sorted(k for k, t in newest.items() if t < bound)
        if rng.random() < 0.5:
            index.drop(expired)
            for key in expired:
                del newest[key]
    assert len(index.offsets) == sum(len(ids) for *_, ids in index.buckets.values())


def test_an_id_seen_anew_past_the_horizon_outlives_the_record_it_was_first_seen_in():
    store: dict[bytes, bytes] = {}
    index = SeenIndex()
    first = (seen_bucket_key(0, 0), [("e1", 0, 1_000)])
    index.add(*first)
    store[first[0]] = orjson.dumps(first[1])
    ids = BatchIds(0, index, StagedState(DictStore(store), {}), horizon_ms=60_000)
    assert ids.duplicate("e1", 5, 1_000, watermark_ms=30_000)  # within the horizon
    assert not ids.duplicate("e1", 6, 1_000, watermark_ms=120_000)  # forgotten: new again
    writes: dict = {}
    (key, entries), *_ = ids.finish(settled_ms=120_000, writes=writes)[0]
    assert writes[first[0]] is None  # the old record goes (committed watermark past it)
    index.add(key, entries)
    index.drop([first[0]])
    assert index.offset_of("e1") == 6
