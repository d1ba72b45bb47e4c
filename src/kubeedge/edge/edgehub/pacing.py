"""Sans-io pacing for EdgeHub: the edge-to-cloud token bucket and the reconnect backoff.

Owns two small clocks-free state machines; callers pass ``now`` (seconds) and
an explicit :class:`random.Random`, so tests replay them exactly.

* :class:`TokenBucket` is upstream's ``messageQPS``/``messageBurst`` limiter
  (Go ``x/time/rate`` semantics: a reservation may drive the balance negative
  and the caller waits the returned delay; the balance never exceeds ``burst``).
* :class:`ReconnectBackoff` is exponential backoff with **full jitter**: the
  n-th consecutive failure waits ``uniform(0, min(cap, base * 2**n))``. Upstream
  sleeps a fixed 30 s, which brings every node of a site back in the same
  second after a cloud restart; full jitter spreads them over the window.

Neither raises after construction; constructors reject non-positive rates,
bursts, bases and caps with :class:`ValueError` naming the bad value.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Final

MESSAGE_QPS: Final = 30.0
"""``edgeHub.messageQPS`` default."""
MESSAGE_BURST: Final = 60
"""``edgeHub.messageBurst`` default."""


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; starts full."""

    rate: float = MESSAGE_QPS
    burst: int = MESSAGE_BURST
    _tokens: float = field(init=False)
    _last: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError(f"messageQPS must be > 0, got {self.rate}")
        if self.burst < 1:
            raise ValueError(f"messageBurst must be >= 1, got {self.burst}")
        self._tokens = float(self.burst)

    def _refill(self, now: float) -> None:
        if self._last is not None and now > self._last:
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
        if self._last is None or now > self._last:
            self._last = now

    def reserve(self, now: float) -> float:
        """Take one token; return how many seconds the caller must wait before sending (0 if none)."""
        self._refill(now)
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def available(self, now: float) -> float:
        """Tokens on hand at ``now`` (negative while reservations are outstanding)."""
        self._refill(now)
        return self._tokens


RECONNECT_BASE: Final = 30.0
"""First reconnect window in seconds: upstream's fixed 30 s pause becomes the *upper bound* (mean 15 s), so
5,000 nodes dropped at once by a cloud restart return at ~170/s instead of all in one second."""
RECONNECT_CAP: Final = 120.0
"""Longest reconnect window (seconds) while the cloud keeps refusing; the mean wait then is 60 s."""


@dataclass(slots=True)
class ReconnectBackoff:
    """Exponential backoff with full jitter; :meth:`reset` after a healthy session."""

    rng: random.Random
    base: float = RECONNECT_BASE
    cap: float = RECONNECT_CAP
    failures: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.base <= self.cap:
            raise ValueError(f"reconnect backoff needs 0 < base <= cap, got base={self.base} cap={self.cap}")

    def window(self) -> float:
        """Upper bound of the next delay."""
        return min(self.cap, self.base * 2.0 ** min(self.failures, 62))

    def next_delay(self) -> float:
        """Delay before the next dial; counts one more failure."""
        delay = self.rng.uniform(0.0, self.window())
        self.failures += 1
        return delay

    def reset(self) -> None:
        """Start over from ``base`` (after a session that proved healthy)."""
        self.failures = 0
