"""The status board: the in-memory place where edge modules publish what the status API serves.

Owns the latest published snapshot of every section (node conditions, link, pods, devices, MQTT, MetaManager),
the recent-events ring buffer, and the providers that refresh sections on demand.

Two ways in, both cheap and non-blocking:

- push: a module replaces a whole section when its state changes (``board.link = LinkStatus(...)``,
  ``board.pods = (...)``) and appends events (``board.events.append(...)`` or :meth:`StatusBoard.event`);
- pull: a :data:`Provider` registered with :meth:`StatusBoard.add_provider` is awaited by :meth:`refresh` before
  the server renders (at most once per ``min_refresh`` seconds), for data that is cheaper to read on demand
  (database size, certificate expiry, MetaManager counters).

Invariants: sections are immutable values replaced whole, so a reader never sees half an update; everything
runs on edgecore's trio thread (no locks needed); the event ring never holds more than
:data:`~kubeedge.kit.limits.STATUS_EVENTS` events. Failures: a provider that raises is logged, reported once
as a warning event (until it recovers), and leaves its section as it was; it never fails a request.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Final

from kubeedge.kit import limits, log
from kubeedge.kit import status as s

_log = log.get(__name__)

Provider = Callable[["StatusBoard"], Awaitable[None]]
"""``await provider(board)`` refreshes one or more sections of ``board`` (assigning new values)."""

MIN_REFRESH: Final = 1.0
"""Seconds between provider runs: several TUIs polling every second must not multiply database reads."""


class EventRing:
    """A bounded, oldest-first buffer of :class:`~kubeedge.kit.status.Event`; full means the oldest is dropped."""

    def __init__(self, size: int = limits.STATUS_EVENTS) -> None:
        self._items: deque[s.Event] = deque(maxlen=size)
        self.dropped = 0
        """Events overwritten since start."""

    def append(self, event: s.Event) -> None:
        """Add ``event`` (its strings clipped), dropping the oldest one when the ring is full."""
        if len(self._items) == self._items.maxlen:
            self.dropped += 1
        self._items.append(s.clip(event))

    def __iter__(self) -> Iterator[s.Event]:
        return iter(tuple(self._items))

    def __len__(self) -> int:
        return len(self._items)


@dataclass(eq=False)
class StatusBoard:
    """Latest status of every edge module; see the module docstring for how modules publish."""

    node: s.NodeStatus = field(default_factory=s.NodeStatus)
    """Identity and versions (filled by the node provider); ``conditions`` are replaced by :attr:`conditions`."""
    conditions: tuple[s.NodeCondition, ...] = ()
    """Node conditions, published by edged."""
    link: s.LinkStatus = field(default_factory=s.LinkStatus)
    """Published by EdgeHub; ``certificate`` is replaced by :attr:`certificate`."""
    certificate: s.CertificateStatus = field(default_factory=s.CertificateStatus)
    """Filled by the certificate provider."""
    pods: tuple[s.PodStatus, ...] = ()
    """Published by edged's pod manager."""
    devices: tuple[s.DeviceStatus, ...] = ()
    """Published by DeviceTwin."""
    mqtt: s.MqttStatus = field(default_factory=s.MqttStatus)
    """Published by EventBus."""
    meta: s.MetaStatus = field(default_factory=s.MetaStatus)
    """Filled by the MetaManager provider."""
    events: EventRing = field(default_factory=EventRing)
    clock: Callable[[], float] = time.time
    """Wall clock for ``generated_at`` and event times (fixed in tests)."""
    min_refresh: float = MIN_REFRESH
    _providers: list[tuple[str, Provider]] = field(default_factory=list)
    _failing: dict[str, str] = field(default_factory=dict)
    _refreshed_at: float | None = None

    def add_provider(self, name: str, provider: Provider) -> None:
        """Register ``provider`` under ``name`` (used in logs and warning events)."""
        self._providers.append((name, provider))

    def event(self, severity: s.Severity, source: str, reason: str, message: str = "", obj: str = "") -> None:
        """Append an event stamped with the board's clock."""
        self.events.append(s.Event(self.clock(), severity, source, reason, message, obj))

    def extend_events(self, events: Iterable[s.Event]) -> None:
        """Append several events, oldest first."""
        for e in events:
            self.events.append(e)

    async def refresh(self, now: float) -> None:
        """Run every provider, unless they ran less than ``min_refresh`` seconds before ``now`` (trio time)."""
        if self._refreshed_at is not None and now - self._refreshed_at < self.min_refresh:
            return
        self._refreshed_at = now
        for name, provider in self._providers:
            try:
                await provider(self)
            except Exception as exc:  # a broken provider must not take the status API down
                text = f"{type(exc).__name__}: {exc}"
                _log.warning("status provider failed", provider=name, error=text)
                if self._failing.get(name) != text:
                    self.event(s.Severity.WARNING, "status", "ProviderFailed", f"{name}: {text}")
                self._failing[name] = text
            else:
                self._failing.pop(name, None)

    def snapshot(self) -> s.Snapshot:
        """Everything on the board as one (unclipped) document."""
        return s.Snapshot(
            generated_at=self.clock(),
            node=_replace_conditions(self.node, self.conditions),
            link=_replace_certificate(self.link, self.certificate),
            pods=self.pods,
            devices=self.devices,
            mqtt=self.mqtt,
            meta=self.meta,
            events=tuple(self.events),
        )


def _replace_conditions(node: s.NodeStatus, conditions: tuple[s.NodeCondition, ...]) -> s.NodeStatus:
    return replace(node, conditions=conditions) if conditions else node


def _replace_certificate(link: s.LinkStatus, cert: s.CertificateStatus) -> s.LinkStatus:
    return replace(link, certificate=cert) if cert.path else link
