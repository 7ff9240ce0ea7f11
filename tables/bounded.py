"""Every record the app writes fits in a Kafka message, however many names a window counts.

Rule: a window's counts (dimension "<metric>|<name>" -> counts) that would encode to more than
RESULT_BYTES keep their largest names (by first count, descending; ties by dimension) while
they fit, and each metric's other names are summed into its name OTHER; `folded` says how many
names each metric folded. The same counts always give the same result (replays agree). Within
the budget nothing changes: a window of usual traffic is exact to the last name.
"""

from __future__ import annotations

from collections.abc import Mapping

from tables.windows import MAX_COUNT

RESULT_BYTES = 256 * 1024  # of a window's counts; Kafka's default message limit is 1 MiB
RECORD_BYTES = 900_000  # any record the app writes (state or derived); under Faust's 1e6 bytes
OTHER = "(other)"
_RESERVED = 8 * 1024  # of the budget, for the OTHER entries and the record's other fields


def size_of(dimension: str, counts: list[int]) -> int:
    """About what one entry adds to a JSON record: its name, its counts, the punctuation."""
    return len(dimension.encode()) + 21 * len(counts) + 8


def bounded(
    counts: Mapping[str, list[int]], budget: int = RESULT_BYTES
) -> tuple[dict[str, list[int]], dict[str, int]]:
    """(counts within `budget`, metric -> names folded into OTHER)."""
    if sum(size_of(d, c) for d, c in counts.items()) <= budget:
        return dict(counts), {}
    kept: dict[str, list[int]] = {}
    others: dict[str, list[int]] = {}
    folded: dict[str, int] = {}
    room = budget - _RESERVED
    for dimension, values in sorted(counts.items(), key=lambda kv: (-kv[1][0], kv[0])):
        cost = size_of(dimension, values)
        metric = dimension.split("|", 1)[0]
        if cost <= room and dimension != f"{metric}|{OTHER}":
            kept[dimension] = values
            room -= cost
            continue
        other = others.setdefault(metric, [0] * len(values))
        others[metric] = [min(a + b, MAX_COUNT) for a, b in zip(other, values, strict=True)]
        if dimension != f"{metric}|{OTHER}":
            folded[metric] = folded.get(metric, 0) + 1
    for metric, values in others.items():
        kept[f"{metric}|{OTHER}"] = values
    return kept, folded
