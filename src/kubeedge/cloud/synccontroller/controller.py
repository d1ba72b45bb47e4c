"""SyncController: persists what edges acknowledged and repairs what they missed.

Owns the ObjectSync/ClusterObjectSync objects (``reliablesyncs.kubeedge.io/v1alpha1``,
name ``<node>.<objectUID>``) through :class:`SyncStore`, and the periodic
reconcile: for every record of a connected node, an object that vanished (or
was replaced, or the node no longer needs) gets a delete, an object newer than
the acknowledged version gets an update; records of deleted nodes are dropped.

Messages in (module ``synccontroller``): op ``acked`` from CloudHub (content
``{"node","objectUID","objectKind","objectAPIVersion","objectName",
"objectNamespace","deleted"}``, ``resourceversion`` header = acked version);
ops ``connected``/``disconnected`` on ``node/<node>``.

Invariants: an acknowledged version is written at most once per change and
never lowered; writes for one record are serialised (the latest wanted state
wins); a delete the edge never acknowledges is retried
:data:`ORPHAN_ATTEMPTS` times, then the record is removed and logged, so an
orphan is never resent forever. Kubernetes errors while writing are logged and
retried on the next ack or reconcile; nothing here can stop CloudHub.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any, Final, Protocol

import trio

from kubeedge.cloud import kubeapi
from kubeedge.cloud.edgecontroller import downstream
from kubeedge.cloud.synccontroller.index import SyncIndex, SyncRecord, record_of, sync_object
from kubeedge.kit import log
from kubeedge.kit.beehive import BeehiveError, Context
from kubeedge.proto import resource as resources
from kubeedge.proto.message import Message
from kubeedge.proto.vocab import CloudModule, Operation

_log = log.get(__name__)

OP_ACKED: Final = "acked"
"""kubeedge-py internal operation (never on the wire): CloudHub reports an edge acknowledgement."""

RESYNC_PERIOD: Final = 5.0
"""Seconds between reconciles (upstream's SyncController runs every 5 s)."""

RESEND_PATIENCE: Final = 30.0
"""Seconds a sent, unacknowledged version is left to CloudHub's own retries (5 tries 5 s apart upstream) before
the reconcile sends it again."""

ORPHAN_ATTEMPTS: Final = 12
"""Unacknowledged delete rounds (one minute at the default period) before a record is dropped as an orphan."""


class ObjectSource(Protocol):
    """What the reconcile needs to know about the cluster (EdgeController's caches provide it)."""

    @property
    def synced(self) -> bool:
        """True once the caches hold a full list."""

    def lookup(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The current object of Kubernetes ``kind``, if it exists."""

    def node_exists(self, node: str) -> bool:
        """True if ``node`` is a known edge node."""

    def wanted(self, node: str, kind: str, namespace: str, name: str) -> bool:
        """True if ``node`` should hold that object (a pod bound to it, an object its pods reference)."""


def session_node(resource: str) -> str:
    """The node of a session event's ``node/<node>`` resource ('' if it is not one)."""
    prefix, _, node = resource.partition("/")
    if prefix != resources.NODE_PREFIX or not node or "/" in node:
        return ""
    return node


def _kind_of(record: SyncRecord) -> kubeapi.Kind:
    return kubeapi.OBJECTSYNCS if record.namespace else kubeapi.CLUSTEROBJECTSYNCS


class SyncStore:
    """The index plus the Kubernetes writes that keep ObjectSync objects in step with it."""

    def __init__(self, api: kubeapi.KubeAPI, index: SyncIndex | None = None) -> None:
        self.api = api
        self.index = index or SyncIndex()

    async def ensure(self, node: str, obj: dict[str, Any]) -> None:
        """Make sure a record exists for ``obj`` on ``node`` before it is first sent (status version 0).

        Written before the send, as upstream does, so that an object deleted while cloudcore was down
        still gets its delete even if the edge's ack for it was never recorded.
        """
        meta = obj.get("metadata") or {}
        uid = meta.get("uid", "")
        if not uid or self.index.get(node, uid) is not None:
            return
        record = self.index.put(
            SyncRecord(node, uid, meta.get("namespace", ""), obj.get("apiVersion", ""), obj.get("kind", ""),
                       meta.get("name", ""), 0)
        )  # fmt: skip
        try:
            await self.api.create(_kind_of(record), record.namespace, sync_object(record))
        except kubeapi.KubeError as exc:
            if not exc.conflict:
                _log.warning("objectsync create failed", name=record.sync_name, error=str(exc))

    async def write_acked(self, record: SyncRecord) -> None:
        """Persist ``record.acked`` (create the object if it is missing)."""
        kind = _kind_of(record)
        status = {"status": {"objectResourceVersion": str(record.acked)}}
        try:
            await self.api.patch(kind, record.namespace, record.sync_name, status,
                                 content_type=kubeapi.MERGE_PATCH, subresource="status")  # fmt: skip
            return
        except kubeapi.KubeError as exc:
            if not exc.not_found:
                raise
        with contextlib.suppress(kubeapi.KubeError):
            await self.api.create(kind, record.namespace, sync_object(record))
        await self.api.patch(kind, record.namespace, record.sync_name, status,
                             content_type=kubeapi.MERGE_PATCH, subresource="status")  # fmt: skip

    async def remove(self, record: SyncRecord) -> None:
        """Delete the record's object (absent is fine) and forget it."""
        self.index.remove(record.node, record.uid)
        try:
            await self.api.delete(_kind_of(record), record.namespace, record.sync_name)
        except kubeapi.KubeError as exc:
            if not exc.not_found:
                raise


class SyncController:
    """The ``synccontroller`` beehive module (group ``synccontroller``)."""

    name = CloudModule.SYNCCONTROLLER.value
    group = CloudModule.SYNCCONTROLLER.value

    def __init__(
        self, store: SyncStore, source: ObjectSource, *, period: float = RESYNC_PERIOD,
        patience: float = RESEND_PATIENCE,
    ) -> None:  # fmt: skip
        self.store = store
        self.source = source
        self.period = period
        self.patience = patience
        self.connected: set[str] = set()
        self.orphans_removed = 0
        self._delete_rounds: dict[tuple[str, str], int] = {}
        self._wanted: dict[tuple[str, str], SyncRecord | None] = {}
        self._busy: set[tuple[str, str]] = set()
        self._reflectors = [
            kubeapi.Reflector(store.api, kubeapi.OBJECTSYNCS),
            kubeapi.Reflector(store.api, kubeapi.CLUSTEROBJECTSYNCS),
        ]

    async def run(
        self, ctx: Context, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Load the records, then handle acks/session events and reconcile every ``period`` seconds."""
        async with trio.open_nursery() as nursery:
            for reflector in self._reflectors:
                await nursery.start(reflector.run, self._on_record)
            nursery.start_soon(self._ticker, ctx)
            task_status.started()
            async for msg in ctx:
                await self._handle(ctx, nursery, msg)

    async def _on_record(
        self, type_: kubeapi.EventType, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> None:
        record = record_of(obj)
        if record is None:
            return
        if type_ is kubeapi.EventType.DELETED:
            self.store.index.remove(record.node, record.uid)
        else:
            self.store.index.put(record)

    async def _handle(self, ctx: Context, nursery: trio.Nursery, msg: Message) -> None:
        op = msg.route.operation
        if op == OP_ACKED:
            self._acked(nursery, msg)
        elif op in (Operation.CONNECTED, Operation.DISCONNECTED):
            node = session_node(msg.route.resource)
            if not node:
                _log.warning("session event without a node", resource=msg.route.resource)
                return
            self.store.index.clear_sent(node)
            if op == Operation.CONNECTED:
                self.connected.add(node)
                nursery.start_soon(self._reconcile_nodes, ctx, [node])
            else:
                self.connected.discard(node)
        else:
            _log.warning(
                "unexpected message", operation=op, source=msg.route.source, resource=msg.route.resource
            )

    def _acked(self, nursery: trio.Nursery, msg: Message) -> None:
        content = msg.content if isinstance(msg.content, dict) else {}
        node, uid = content.get("node"), content.get("objectUID")
        if not isinstance(node, str) or not isinstance(uid, str) or not node or not uid:
            _log.warning("ack without node or objectUID", resource=msg.route.resource)
            return
        kind = content.get("objectKind")
        if kind and kind not in downstream.BY_KIND:
            # Devices and models are acked too (DeviceController's traffic is ack-mode), but their
            # resync is DeviceController's own list+watch: an ObjectSync would only be reconciled away.
            _log.debug("ack of a kind without ObjectSync", node=node, kind=kind)
            return
        key = (node, uid)
        self._delete_rounds.pop(key, None)
        if content.get("deleted"):
            record = self.store.index.get(node, uid) or SyncRecord(
                node, uid, content.get("objectNamespace") or "", "", "", "", 0
            )
            self.store.index.remove(node, uid)
            self._schedule(nursery, key, None, record)
            return
        try:
            version = int(msg.header.resource_version)
        except ValueError:
            _log.warning("ack with a bad resourceversion", node=node, uid=uid, rv=msg.header.resource_version)
            return
        record = self.store.index.put(
            SyncRecord(node, uid, content.get("objectNamespace") or "", content.get("objectAPIVersion") or "",
                       content.get("objectKind") or "", content.get("objectName") or "", version)
        )  # fmt: skip
        self._schedule(nursery, key, record, record)

    def _schedule(
        self, nursery: trio.Nursery, key: tuple[str, str], want: SyncRecord | None, record: SyncRecord
    ) -> None:
        # Coalesce: one writer per record; it writes the latest wanted state until none is pending.
        self._wanted[key] = want
        if key in self._busy:
            return
        self._busy.add(key)
        nursery.start_soon(self._persist, key, record)

    async def _persist(self, key: tuple[str, str], record: SyncRecord) -> None:
        try:
            while key in self._wanted:
                want = self._wanted.pop(key)
                try:
                    if want is None:
                        await self.store.remove(record)
                    else:
                        await self.store.write_acked(want)
                except kubeapi.KubeError as exc:
                    _log.warning("objectsync write failed", name=record.sync_name, error=str(exc))
        finally:
            self._busy.discard(key)

    async def _ticker(self, ctx: Context) -> None:
        while True:
            await trio.sleep(self.period)
            await self._reconcile_nodes(ctx, None)

    async def _reconcile_nodes(self, ctx: Context, nodes: Iterable[str] | None) -> None:
        if not self.source.synced:
            return
        wanted_nodes = set(nodes) if nodes is not None else None
        for record in self.store.index.records():
            if wanted_nodes is not None and record.node not in wanted_nodes:
                continue
            try:
                await self.reconcile(ctx, record)
            except (BeehiveError, kubeapi.KubeError) as exc:
                _log.warning("reconcile failed", name=record.sync_name, error=str(exc))

    async def reconcile(self, ctx: Context, record: SyncRecord) -> None:
        """Repair one record: drop it, send a delete, or resend a newer version."""
        key = (record.node, record.uid)
        if key in self._busy:
            return
        if not self.source.node_exists(record.node):
            _log.info("dropping sync of a deleted node", name=record.sync_name)
            await self.store.remove(record)
            return
        rtype = downstream.BY_KIND.get(record.kind)
        if rtype is None:
            _log.warning("dropping sync of a kind this controller does not manage", name=record.sync_name,
                         kind=record.kind)  # fmt: skip
            await self.store.remove(record)
            return
        if record.node not in self.connected:
            return
        obj = self.source.lookup(record.kind, record.namespace, record.name)
        gone = (
            obj is None
            or (obj.get("metadata") or {}).get("uid") != record.uid
            or not self.source.wanted(record.node, record.kind, record.namespace, record.name)
        )
        if gone:
            rounds = self._delete_rounds.get(key, 0) + 1
            if rounds > ORPHAN_ATTEMPTS:
                _log.warning("removing orphan objectsync: the edge never acknowledged its delete",
                             name=record.sync_name, rounds=rounds - 1)  # fmt: skip
                self._delete_rounds.pop(key, None)
                self.orphans_removed += 1
                await self.store.remove(record)
                return
            self._delete_rounds[key] = rounds
            stub = downstream.tombstone(downstream.KINDS[rtype], record.namespace, record.name, record.uid)
            await ctx.send(CloudModule.CLOUDHUB, downstream.object_message(
                record.node, Operation.DELETE, rtype, stub, now_ms=ctx.now_ms()))  # fmt: skip
            return
        assert obj is not None
        self._delete_rounds.pop(key, None)
        rv, now = kubeapi.rv_of(obj), trio.current_time()
        index = self.store.index
        if index.needs_send(record.node, record.uid, rv) and not index.in_flight(
            record.node, record.uid, rv, now, self.patience
        ):
            index.note_sent(record.node, record.uid, rv, now)
            await ctx.send(CloudModule.CLOUDHUB, downstream.object_message(
                record.node, Operation.UPDATE, rtype, obj, now_ms=ctx.now_ms()))  # fmt: skip
