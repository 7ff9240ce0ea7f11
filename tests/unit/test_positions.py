"""Positions (tables.positions): a time-log record's At(N, t) sorts between source offsets N
and N + 1, after the ticks before it; ints compare as they are; stored as [N, t]."""

from __future__ import annotations

import orjson

from engine.testing import DictStore
from tables.dedup import SeenIndex, seen_bucket_key, seen_chunks
from tables.positions import At, as_json, decoded


def test_an_at_sorts_between_its_source_offset_and_the_next():
    assert 4 < At(4, 0) < At(4, 9) < 5
    assert At(4, 0) > 4 and At(4, 0) >= 4 and not At(4, 0) <= 4
    assert At(4, 9) < 5 and max(4, At(4, 0), 3) == At(4, 0)
    assert sorted([5, At(4, 2), 4, At(4, 1), At(3, 7)]) == [At(3, 7), 4, At(4, 1), At(4, 2), 5]
    assert At(4, -1) == 4 and hash(At(4, -1)) == hash(4) and At(4, 0) != 4


def test_stored_as_a_pair_and_read_back():
    raw = orjson.dumps({"o": At(7, 3), "p": 7}, default=as_json)
    assert raw == b'{"o":[7,3],"p":7}'
    stored = orjson.loads(raw)
    assert decoded(stored["o"]) == At(7, 3) and decoded(stored["p"]) == 7


def test_a_reinjected_id_is_remembered_at_its_position_apart_from_the_source_buckets():
    entries = [("e1", At(10, 4), 1_000)]
    [(_, encoded)] = seen_chunks(entries)
    source = [("e0", 10, 900), ("e2", 11, 1_100)]
    [(_, source_encoded)] = seen_chunks(source)
    store = {seen_bucket_key(0, 4, "r"): encoded, seen_bucket_key(0, 10): source_encoded}
    index = SeenIndex.load(sorted(store.items()))
    assert index.offset_of("e1") == At(10, 4) and index.offset_of("e2") == 11
    assert index.time_of(At(10, 4), DictStore(store)) == 1_000
    assert index.time_of(11, DictStore(store)) == 1_100
