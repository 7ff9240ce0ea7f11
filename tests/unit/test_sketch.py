"""HyperLogLog: estimates within the documented error bound, unions equal the sketch of the
union, adding again changes nothing."""

from __future__ import annotations

import pytest

from tables import sketch


def sketch_of(values) -> bytes:
    registers = sketch.empty()
    for value in values:
        sketch.add(registers, *sketch.position(value))
    return bytes(registers)


@pytest.mark.parametrize("n", [0, 1, 10, 300])
def test_small_counts_are_exact_or_nearly(n):
    assert abs(sketch.estimate(sketch_of(f"user-{i}" for i in range(n))) - n) <= max(0.01 * n, 0)


@pytest.mark.parametrize("n", [3_000, 12_000, 40_000])
def test_error_matches_the_documented_standard_error(n):
    # 20 independent populations of n users: the RMS relative error is the standard error
    errors = [
        sketch.estimate(sketch_of(f"{k}-user-{i}" for i in range(n))) / n - 1 for k in range(20)
    ]
    rms = (sum(e * e for e in errors) / len(errors)) ** 0.5
    assert rms <= 1.5 * sketch.STANDARD_ERROR
    assert max(map(abs, errors)) <= 4 * sketch.STANDARD_ERROR


def test_union_of_sketches_is_the_sketch_of_the_union():
    left = sketch_of(f"u{i}" for i in range(0, 6_000))
    right = sketch_of(f"u{i}" for i in range(4_000, 9_000))
    assert sketch.union([left, right]) == sketch_of(f"u{i}" for i in range(9_000))


def test_adding_a_value_twice_is_idempotent():
    assert sketch_of(["a", "b", "a", "a"]) == sketch_of(["b", "a"])


def test_positions_are_stable_across_processes():
    # a fixed hash, not Python's per-process salted hash(): sketches are stored and merged
    assert sketch.position("user-42") == sketch.position("user-42")
    index, rank = sketch.position("user-42")
    assert 0 <= index < sketch.REGISTERS and rank >= 1
    assert (index, rank) == (1786, 5)
