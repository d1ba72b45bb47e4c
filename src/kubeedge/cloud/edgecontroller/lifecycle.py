"""Node liveness as the Kubernetes node lifecycle controller sees it, without evicting anything.

Owns :class:`Liveness` (sans-io): per edge node, whether its CloudHub session is
up, when it was last heard from, and whether its conditions were already set to
Unknown. :meth:`Liveness.due` says, at an explicit ``now`` (monotonic seconds),
which nodes need their conditions marked Unknown (silent past the grace period,
session or not) and which need their heartbeat refreshed (session up, heard
within the grace period, status older than ``update_frequency``). Also owns the
condition rewrites (:func:`unknown_conditions`, :func:`refreshed_conditions`).

Invariants: a node is marked Unknown once per silence (until heard again); no
taint is ever added, so pods on an unreachable edge node are never evicted.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

UNKNOWN_REASON: Final = "NodeStatusUnknown"
UNKNOWN_MESSAGE: Final = "Kubelet stopped posting node status."
NODE_MONITOR_GRACE: Final = 40.0
"""Seconds of silence before conditions go Unknown (kube-controller-manager's nodeMonitorGracePeriod, 40 s)."""


class Action(StrEnum):
    """What to do to a node's status."""

    MARK_UNKNOWN = "mark-unknown"
    REFRESH = "refresh"


@dataclass(slots=True)
class _Node:
    connected: bool
    last_heard: float
    unknown: bool = False


class Liveness:
    """Session and heartbeat bookkeeping for every edge node."""

    def __init__(self, *, grace: float = NODE_MONITOR_GRACE, update_frequency: float = 10.0) -> None:
        if grace <= 0 or update_frequency <= 0:
            raise ValueError(f"grace {grace!r} and update frequency {update_frequency!r} must be > 0")
        self.grace = grace
        self.update_frequency = update_frequency
        self._nodes: dict[str, _Node] = {}

    def known(self, node: str, now: float) -> None:
        """An edge node exists (seen in the cluster); its silence counts from ``now`` if it is new."""
        self._nodes.setdefault(node, _Node(False, now))

    def forget(self, node: str) -> None:
        """The node was deleted."""
        self._nodes.pop(node, None)

    def connected(self, node: str, now: float) -> None:
        """Its session came up."""
        state = self._nodes.setdefault(node, _Node(True, now))
        state.connected = True
        state.last_heard = now

    def disconnected(self, node: str, now: float) -> None:
        """Its session ended; silence counts from the last message heard."""
        state = self._nodes.setdefault(node, _Node(False, now))
        state.connected = False

    def heard(self, node: str, now: float) -> bool:
        """A message arrived from the node; True if it had been marked Unknown (it is live again)."""
        state = self._nodes.setdefault(node, _Node(True, now))
        state.last_heard = now
        was_unknown, state.unknown = state.unknown, False
        return was_unknown

    def is_connected(self, node: str) -> bool:
        """True while the node's session is up."""
        state = self._nodes.get(node)
        return state is not None and state.connected

    def due(self, now: float, heartbeat_age: dict[str, float]) -> list[tuple[str, Action]]:
        """Nodes needing action; ``heartbeat_age[node]`` = seconds since its Ready heartbeat (absent: unknown)."""
        out: list[tuple[str, Action]] = []
        for node, state in sorted(self._nodes.items()):
            silent = now - state.last_heard > self.grace
            if silent:
                if not state.unknown:
                    out.append((node, Action.MARK_UNKNOWN))
            elif state.connected and heartbeat_age.get(node, 0.0) >= self.update_frequency:
                out.append((node, Action.REFRESH))
        return out

    def marked_unknown(self, node: str) -> None:
        """The Unknown status was written."""
        state = self._nodes.get(node)
        if state is not None:
            state.unknown = True


def rfc3339(when: dt.datetime) -> str:
    """Kubernetes' timestamp spelling (second precision, UTC ``Z``)."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: Any) -> dt.datetime | None:
    """Parse a Kubernetes timestamp; None if absent or malformed."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


_DEFAULT_TYPES: Final = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")


def unknown_conditions(conditions: list[dict[str, Any]], now: dt.datetime) -> list[dict[str, Any]]:
    """Every condition set to Unknown with upstream's reason and message (Ready added if missing)."""
    stamp = rfc3339(now)
    by_type: dict[str, dict[str, Any]] = {
        str(c.get("type")): dict(c) for c in conditions if isinstance(c, dict) and c.get("type")
    }
    for default in _DEFAULT_TYPES:
        by_type.setdefault(default, {"type": default, "lastHeartbeatTime": stamp})
    out = []
    for ctype, cond in by_type.items():
        if cond.get("status") != "Unknown":
            cond["lastTransitionTime"] = stamp
        cond.update(type=ctype, status="Unknown", reason=UNKNOWN_REASON, message=UNKNOWN_MESSAGE)
        cond.setdefault("lastHeartbeatTime", stamp)
        out.append(cond)
    return out


def refreshed_conditions(conditions: list[dict[str, Any]], now: dt.datetime) -> list[dict[str, Any]]:
    """The same conditions with ``lastHeartbeatTime`` = now."""
    stamp = rfc3339(now)
    return [{**c, "lastHeartbeatTime": stamp} for c in conditions if isinstance(c, dict)]


def heartbeat_age(node: dict[str, Any], now: dt.datetime) -> float:
    """Seconds since the Ready condition's last heartbeat (infinite without one)."""
    for cond in (node.get("status") or {}).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == "Ready":
            when = parse_time(cond.get("lastHeartbeatTime"))
            if when is not None:
                return max(0.0, (now - when).total_seconds())
    return float("inf")
