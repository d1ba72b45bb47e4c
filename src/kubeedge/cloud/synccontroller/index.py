"""What each edge node has acknowledged: the in-memory index of ObjectSync/ClusterObjectSync records.

Owns :class:`SyncIndex` (sans-io) and the mapping between a record and its
Kubernetes object (:func:`sync_name`, :func:`record_of`, :func:`sync_object`).
The Kubernetes objects are the durable truth; the index mirrors them (fed by a
watch) plus what this process wrote itself, so a decision never waits for the
API server.

Invariants: one record per ``(node, object UID)``; a record's ``acked`` version
only grows (an older ack arriving late never lowers it); ``needs_send`` is
false exactly when the edge acknowledged that version or a newer one, or an
equivalent one (a status-only change, remembered in memory only).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from kubeedge.cloud import kubeapi


@dataclass(frozen=True, slots=True)
class SyncRecord:
    """One ObjectSync (``namespace`` set) or ClusterObjectSync (``namespace`` empty)."""

    node: str
    uid: str
    namespace: str
    api_version: str
    kind: str
    name: str
    acked: int
    """``status.objectResourceVersion`` as an integer; 0 = sent, not acknowledged yet."""

    @property
    def sync_name(self) -> str:
        """``<node>.<objectUID>``, the record's object name."""
        return sync_name(self.node, self.uid)


def sync_name(node: str, uid: str) -> str:
    """Upstream's ObjectSync name."""
    return f"{node}.{uid}"


def record_of(obj: dict[str, Any]) -> SyncRecord | None:
    """Parse an ObjectSync/ClusterObjectSync; None if its name or spec is not one we can use."""
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    node, dot, uid = name.rpartition(".")
    # Node names may contain dots; UIDs never do, so the last dot separates them.
    spec = obj.get("spec") or {}
    if not dot or not node or not uid or not spec.get("objectName") or not spec.get("objectKind"):
        return None
    try:
        acked = int((obj.get("status") or {}).get("objectResourceVersion") or 0)
    except ValueError:
        acked = 0
    return SyncRecord(
        node=node,
        uid=uid,
        namespace=meta.get("namespace", "") if obj.get("kind") != "ClusterObjectSync" else "",
        api_version=spec.get("objectAPIVersion", ""),
        kind=spec["objectKind"],
        name=spec["objectName"],
        acked=max(acked, 0),
    )


def sync_object(record: SyncRecord) -> dict[str, Any]:
    """The ObjectSync/ClusterObjectSync for ``record`` (status included, for create + status update)."""
    kind = kubeapi.OBJECTSYNCS if record.namespace else kubeapi.CLUSTEROBJECTSYNCS
    meta: dict[str, Any] = {"name": record.sync_name}
    if record.namespace:
        meta["namespace"] = record.namespace
    return {
        "apiVersion": kind.api_version,
        "kind": kind.kind,
        "metadata": meta,
        "spec": {
            "objectAPIVersion": record.api_version,
            "objectKind": record.kind,
            "objectName": record.name,
        },
        "status": {"objectResourceVersion": str(record.acked)},
    }


class SyncIndex:
    """``(node, uid) -> SyncRecord``, plus in-memory equivalences for status-only changes."""

    def __init__(self) -> None:
        self._records: dict[tuple[str, str], SyncRecord] = {}
        self._equivalent: dict[tuple[str, str], int] = {}
        self._sent: dict[tuple[str, str], tuple[int, float]] = {}

    def __len__(self) -> int:
        return len(self._records)

    def get(self, node: str, uid: str) -> SyncRecord | None:
        """The record, if any."""
        return self._records.get((node, uid))

    def put(self, record: SyncRecord) -> SyncRecord:
        """Store ``record``, never lowering the acked version already known; returns what is stored."""
        key = (record.node, record.uid)
        old = self._records.get(key)
        if old is not None and old.acked > record.acked:
            record = replace(record, acked=old.acked)
        self._records[key] = record
        return record

    def remove(self, node: str, uid: str) -> SyncRecord | None:
        """Forget a record (its object was deleted at the edge, or the node is gone)."""
        self._equivalent.pop((node, uid), None)
        self._sent.pop((node, uid), None)
        return self._records.pop((node, uid), None)

    def note_sent(self, node: str, uid: str, rv: int, now: float) -> None:
        """Version ``rv`` was handed to CloudHub at ``now`` (monotonic seconds); forgotten once acknowledged."""
        self._sent[(node, uid)] = (rv, now)

    def clear_sent(self, node: str) -> None:
        """The node's session began or ended: CloudHub's queue for it is gone, nothing is in flight."""
        for key in [k for k in self._sent if k[0] == node]:
            del self._sent[key]

    def in_flight(self, node: str, uid: str, rv: int, now: float, patience: float) -> bool:
        """True if version ``rv`` (or newer) was sent less than ``patience`` seconds ago and not yet acknowledged.

        CloudHub already retries what it holds; resending it from the reconcile would only add load.
        """
        sent = self._sent.get((node, uid))
        if sent is None:
            return False
        acked = self.acked(node, uid)
        if acked is not None and acked >= sent[0]:
            del self._sent[(node, uid)]
            return False
        return sent[0] >= rv and now - sent[1] < patience

    def acked(self, node: str, uid: str) -> int | None:
        """The version the edge holds (acked, or known equivalent), None if no record exists."""
        record = self._records.get((node, uid))
        if record is None:
            return None
        return max(record.acked, self._equivalent.get((node, uid), 0))

    def needs_send(self, node: str, uid: str, rv: int) -> bool:
        """True unless the edge already holds version ``rv`` or newer."""
        acked = self.acked(node, uid)
        return acked is None or acked == 0 or rv > acked

    def note_equivalent(self, node: str, uid: str, old_rv: int, new_rv: int) -> None:
        """A change from ``old_rv`` to ``new_rv`` was status-only: if the edge holds ``old_rv``, it holds ``new_rv``."""
        acked = self.acked(node, uid)
        if acked is not None and acked == old_rv > 0:
            self._equivalent[(node, uid)] = max(new_rv, self._equivalent.get((node, uid), 0))

    def records(self) -> list[SyncRecord]:
        """Every record (a snapshot)."""
        return list(self._records.values())

    def for_node(self, node: str) -> list[SyncRecord]:
        """The records of one node."""
        return [r for r in self._records.values() if r.node == node]
