"""Backoff: full-jitter bounds, growth, cap, reset, validation."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubeedge.kit.backoff import Backoff


def test_delays_stay_within_the_doubling_ceiling() -> None:
    backoff = Backoff(0.5, 8.0, random.Random(1))
    for n in range(12):
        ceiling = min(8.0, 0.5 * 2**n)
        assert backoff.ceiling() == ceiling
        delay = backoff.next_delay()
        assert 0.0 <= delay <= ceiling


def test_delays_are_jittered_over_the_whole_range() -> None:
    # Full jitter: at a fixed ceiling, draws spread over [0, ceiling], not clustered near it.
    backoff = Backoff(1.0, 1.0, random.Random(7))
    delays = [backoff.next_delay() for _ in range(500)]
    assert min(delays) < 0.1
    assert max(delays) > 0.9
    assert len(set(delays)) == len(delays)


def test_sequence_is_reproducible_with_a_seeded_rng() -> None:
    a = Backoff(1.0, 30.0, random.Random(42))
    b = Backoff(1.0, 30.0, random.Random(42))
    assert [a.next_delay() for _ in range(10)] == [b.next_delay() for _ in range(10)]


def test_reset_starts_over_from_base() -> None:
    backoff = Backoff(1.0, 64.0, random.Random(3))
    for _ in range(5):
        backoff.next_delay()
    assert backoff.attempt == 5
    assert backoff.ceiling() == 32.0
    backoff.reset()
    assert backoff.attempt == 0
    assert backoff.ceiling() == 1.0
    assert 0.0 <= backoff.next_delay() <= 1.0


def test_long_crash_loop_neither_overflows_nor_exceeds_cap() -> None:
    backoff = Backoff(0.001, 30.0, random.Random(5))
    for _ in range(100_000):
        assert 0.0 <= backoff.next_delay() <= 30.0
    assert backoff.ceiling() == 30.0
    assert backoff.attempt < 20


@given(
    base=st.floats(min_value=1e-6, max_value=1e3),
    factor=st.floats(min_value=1.0, max_value=1e4),
    seed=st.integers(min_value=0, max_value=2**32),
    draws=st.integers(min_value=1, max_value=64),
)
def test_every_delay_is_bounded(base: float, factor: float, seed: int, draws: int) -> None:
    cap = base * factor
    backoff = Backoff(base, cap, random.Random(seed))
    for n in range(draws):
        ceiling = min(cap, base * 2.0**n)
        assert 0.0 <= backoff.next_delay() <= ceiling


@pytest.mark.parametrize(
    ("base", "cap", "text"),
    [
        (0.0, 1.0, "base"),
        (-1.0, 1.0, "base"),
        (float("inf"), float("inf"), "base"),
        (float("nan"), 1.0, "base"),
        (2.0, 1.0, "cap"),
        (1.0, float("inf"), "cap"),
    ],
)
def test_bad_parameters_are_refused_with_a_clear_error(base: float, cap: float, text: str) -> None:
    with pytest.raises(ValueError, match=f"backoff {text}"):
        Backoff(base, cap)
