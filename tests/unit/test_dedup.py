"""The dedup index: ids by offset, and which buckets have expired by event time."""

from __future__ import annotations

import random

from tables.dedup import SeenIndex, seen_bucket_key


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
    assert len(index.offsets) == sum(len(ids) for _, ids in index.buckets.values())
