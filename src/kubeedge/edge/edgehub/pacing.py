"""Sans-io pacing for EdgeHub: the edge-to-cloud token bucket and the reconnect backoff defaults.

Owns a small clock-free token bucket (callers pass ``now`` in seconds) and the
reconnect window defaults; the backoff itself is :class:`kubeedge.kit.backoff.Backoff`.

* :class:`TokenBucket` is upstream's ``messageQPS``/``messageBurst`` limiter
  (Go ``x/time/rate`` semantics: a reservation may drive the balance negative
  and the caller waits the returned delay; the balance never exceeds ``burst``).
* Reconnects use exponential backoff with **full jitter**: the n-th
  consecutive failure waits ``uniform(0, min(cap, base * 2**n))``. Upstream
  sleeps a fixed 30 s, which brings every node of a site back in the same
  second after a cloud restart; full jitter spreads them over the window.

The bucket never raises after construction; it rejects a non-positive rate or
burst with :class:`ValueError` naming the upstream key.
"""

from __future__ import annotations

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
