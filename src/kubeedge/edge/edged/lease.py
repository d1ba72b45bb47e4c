"""The node Lease edged renews, as kubelet's node lease controller does (coordination.k8s.io/v1).

Owns :class:`LeaseRenewer`, a sans-io core: :meth:`LeaseRenewer.next_lease` builds the Lease to write at
``now`` (``kube-node-lease/<node>``, ``holderIdentity`` = the node, ``leaseDurationSeconds`` from
``nodeLeaseDurationSeconds``, ``renewTime`` in MicroTime), carrying the ``resourceVersion`` of the last Lease
the API returned so that a concurrent writer is detected (the update is refused with a conflict). At start
and after a refused or unanswered write, :attr:`LeaseRenewer.needs_read` asks the shell to read the Lease
first, as kubelet does a fresh get; a Lease that does not exist yet is created by the cloud. Renewals happen
every quarter of the duration (kubelet's ``renewIntervalFraction``). Like kubelet's, the Lease is owned by
its Node (``ownerReferences``) once the Node's UID is known, from the Node or from the stored Lease, so that
deleting the Node deletes the Lease.

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
        self._node_uid = ""

    def owned_by(self, node_uid: str) -> None:
        """The Node's UID is known: from now on the Lease carries the Node as its owner."""
        if 0 < len(node_uid) <= 64:
            self._node_uid = node_uid

    @property
    def owner_known(self) -> bool:
        """Whether :meth:`owned_by` was told the Node's UID."""
        return bool(self._node_uid)

    @property
    def interval(self) -> float:
        """Seconds between renewals."""
        return self.duration_seconds * RENEW_FRACTION

    def next_lease(self, now: float) -> dict[str, Any]:
        """The Lease object to update (or create) now."""
        metadata: dict[str, Any] = {"name": self.node, "namespace": LEASE_NAMESPACE}
        if self._resource_version:
            metadata["resourceVersion"] = self._resource_version
        if self._node_uid:
            metadata["ownerReferences"] = [
                {"apiVersion": "v1", "kind": "Node", "name": self.node, "uid": self._node_uid}
            ]
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

    @property
    def needs_read(self) -> bool:
        """Whether the shell should read the Lease before writing (nothing known of the stored one)."""
        return not self._resource_version

    def seen(self, lease: Any) -> None:
        """The API returned ``lease`` (to a read or a write): remember its version and its Node owner."""
        metadata = lease.get("metadata") if isinstance(lease, Mapping) else None
        if not isinstance(metadata, Mapping):
            self._resource_version = ""
            return
        version = metadata.get("resourceVersion")
        self._resource_version = version if isinstance(version, str) and len(version) <= 64 else ""
        owners = metadata.get("ownerReferences")
        for owner in owners[:16] if isinstance(owners, list) else ():
            if isinstance(owner, Mapping) and owner.get("kind") == "Node" and owner.get("name") == self.node:
                uid = owner.get("uid")
                if isinstance(uid, str) and not self._node_uid:
                    self.owned_by(uid)

    def failed(self) -> None:
        """The write was refused or not answered: read the Lease again before the next write."""
        self._resource_version = ""
