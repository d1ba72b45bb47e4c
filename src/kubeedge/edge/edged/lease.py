"""The node Lease edged renews, as kubelet's node lease controller does (coordination.k8s.io/v1).

Owns :class:`LeaseRenewer`, a sans-io core: :meth:`LeaseRenewer.next_lease` builds the Lease to write at
``now`` (``kube-node-lease/<node>``, ``holderIdentity`` = the node, ``leaseDurationSeconds`` from
``nodeLeaseDurationSeconds``, ``renewTime`` in MicroTime), carrying the ``resourceVersion`` of the last Lease
the cloud returned so that a concurrent writer is detected (the update is refused with a conflict); after a
refusal or an unreadable answer the next write goes without it and overwrites, as kubelet's falls back to a
fresh get. Renewals happen every quarter of the duration (kubelet's ``renewIntervalFraction``).

Invariants: the Lease names only this node. Failures are reported by the shell through
:meth:`LeaseRenewer.failed`; nothing here raises on a bad answer.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Final

LEASE_NAMESPACE: Final = "kube-node-lease"
RENEW_FRACTION: Final = 0.25
"""kubelet renews its lease every quarter of ``leaseDurationSeconds`` (10 s for the default 40 s)."""


def micro_time(ts: float) -> str:
    """Kubernetes ``MicroTime``: RFC 3339 UTC with microseconds."""
    whole = int(ts)
    micros = min(999_999, round((ts - whole) * 1_000_000))
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{micros:06d}Z"


class LeaseRenewer:
    """What to write next for ``node``'s Lease; fed back the cloud's answers."""

    def __init__(self, node: str, duration_seconds: int) -> None:
        if duration_seconds <= 0:
            raise ValueError(f"nodeLeaseDurationSeconds must be > 0, got {duration_seconds}")
        self.node = node
        self.duration_seconds = duration_seconds
        self._resource_version = ""

    @property
    def interval(self) -> float:
        """Seconds between renewals."""
        return self.duration_seconds * RENEW_FRACTION

    def next_lease(self, now: float) -> dict[str, Any]:
        """The Lease object to update (or create) now."""
        metadata: dict[str, Any] = {"name": self.node, "namespace": LEASE_NAMESPACE}
        if self._resource_version:
            metadata["resourceVersion"] = self._resource_version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": self.node,
                "leaseDurationSeconds": self.duration_seconds,
                "renewTime": micro_time(now),
            },
        }

    def renewed(self, lease: Any) -> None:
        """The cloud accepted the write and answered with ``lease``: remember its resourceVersion."""
        metadata = lease.get("metadata") if isinstance(lease, Mapping) else None
        version = metadata.get("resourceVersion") if isinstance(metadata, Mapping) else None
        self._resource_version = version if isinstance(version, str) and len(version) <= 64 else ""

    def failed(self) -> None:
        """The write was refused or not answered: the next one overwrites whatever the API holds."""
        self._resource_version = ""
