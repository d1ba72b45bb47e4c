"""Exponential backoff with full jitter, as a small sans-io counter.

Owns the retry delay policy shared by module restarts, EdgeHub reconnects and
certificate rotation. The n-th delay (n counting from 0 since the last
:meth:`Backoff.reset`) is drawn uniformly from ``[0, min(cap, base * 2**n)]``
("full jitter": retries of many peers spread out instead of arriving in
waves). No clock and no sleeping here: the caller decides when a run counts
as stable enough to :meth:`~Backoff.reset` and sleeps for the delay itself.

Invariants: ``0 < base <= cap``; a delay is never negative and never above
``cap``; the attempt counter stops growing once the ceiling has reached
``cap``, so a crash loop of any length cannot overflow.
"""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """Delays for successive retries: ``uniform(0, min(cap, base * 2**attempt))``.

    ``rng`` is any :class:`random.Random`; pass a seeded one in tests to get a
    reproducible sequence. Raises :class:`ValueError` if ``base``/``cap`` are
    not finite positive numbers with ``base <= cap``.
    """

    __slots__ = ("_attempt", "_rng", "base", "cap")

    def __init__(self, base: float, cap: float, rng: random.Random | None = None) -> None:
        if not (0.0 < base < float("inf")):
            raise ValueError(f"backoff base {base!r}: must be a finite number > 0")
        if not (base <= cap < float("inf")):
            raise ValueError(f"backoff cap {cap!r}: must be a finite number >= base ({base!r})")
        self.base = float(base)
        """Ceiling of the first delay, in seconds."""
        self.cap = float(cap)
        """Largest ceiling any delay can have, in seconds."""
        self._rng = rng if rng is not None else random.Random()
        self._attempt = 0

    @property
    def attempt(self) -> int:
        """Delays drawn since the last reset (frozen once the ceiling reaches ``cap``)."""
        return self._attempt

    def ceiling(self) -> float:
        """Upper bound of the next delay: ``min(cap, base * 2**attempt)``."""
        return min(self.cap, self.base * 2.0**self._attempt)

    def next_delay(self) -> float:
        """Draw the next delay in seconds and advance the attempt counter."""
        ceiling = self.ceiling()
        if ceiling < self.cap:
            self._attempt += 1
        return self._rng.uniform(0.0, ceiling)

    def reset(self) -> None:
        """Start over from ``base``: call after the guarded thing has been healthy for a while."""
        self._attempt = 0
