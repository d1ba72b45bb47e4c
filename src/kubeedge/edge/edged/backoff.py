"""kubelet-style exponential back-off per key (crash loops, image pulls): 10 s doubling to 5 min.

Pure: every call takes ``now`` (Unix seconds). The first failure is retried at once; each later one waits
the current delay counted from when it happened, and the delay doubles on each retry. A key left alone
for twice the maximum starts over at the initial delay.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Final

INITIAL: Final = 10.0
"""kubelet's initial container back-off (s)."""
MAXIMUM: Final = 300.0
"""kubelet's MaxContainerBackOff (s)."""


class Backoff:
    """Delays per key; a plain object owned by one task."""

    def __init__(self, initial: float = INITIAL, maximum: float = MAXIMUM) -> None:
        self.initial = initial
        self.maximum = maximum
        self._entries: dict[Hashable, tuple[float, float]] = {}

    def remaining(self, key: Hashable, since: float, now: float) -> float:
        """Seconds still to wait before retrying ``key`` whose last failure happened at ``since``."""
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        delay, last = entry
        if now - last > 2 * self.maximum:
            return 0.0
        return max(0.0, since + delay - now)

    def delay(self, key: Hashable) -> float:
        """The current delay of ``key`` (0 when none)."""
        entry = self._entries.get(key)
        return entry[0] if entry else 0.0

    def next(self, key: Hashable, now: float) -> float:
        """Record a retry of ``key`` at ``now``; returns the delay the next failure will wait."""
        entry = self._entries.get(key)
        if entry is None or now - entry[1] > 2 * self.maximum:
            delay = self.initial
        else:
            delay = min(entry[0] * 2, self.maximum)
        self._entries[key] = (delay, now)
        return delay

    def reset(self, key: Hashable) -> None:
        """Forget ``key``."""
        self._entries.pop(key, None)

    def gc(self, now: float) -> None:
        """Drop keys idle for more than twice the maximum."""
        for key in [k for k, (_, last) in self._entries.items() if now - last > 2 * self.maximum]:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)
