"""The ``edgecontroller`` beehive module: Kubernetes watches in, edge messages out, edge requests applied.

Owns the watches (edge nodes by label, all pods, configmaps, secrets), the
reference map (:class:`~kubeedge.cloud.edgecontroller.locations.Locations`), the
node liveness table, and the handling of messages from CloudHub.

Downstream: every change of a pod bound to an edge node (status-only changes
excepted), of a configmap/secret such pods use (to exactly the nodes using it)
and of an edge Node goes to module ``cloudhub`` (see
:mod:`~kubeedge.cloud.edgecontroller.downstream`), but only to connected nodes
and only if the edge has not already acknowledged that version or a newer one
(:class:`~kubeedge.cloud.synccontroller.index.SyncIndex`). A node that connects
gets everything it should hold and has not acknowledged; deletes of what
vanished meanwhile come from SyncController.

Upstream: requests are authorized and applied by
:class:`~kubeedge.cloud.edgecontroller.upstream.Upstream`, at most
:data:`~kubeedge.kit.limits.CONTROLLER_MAX_QUERY_WORKERS` at once; replies go to
``cloudhub`` with ``parent_msg_id`` = request id.

Lifecycle: every ``nodeUpdateFrequency`` seconds, silent nodes get Unknown
conditions (no taints, no evictions) and connected live nodes with a stale
Ready heartbeat get it refreshed.

Failures: Kubernetes errors on the downstream path are logged (the periodic
resync repairs them); a bad message from an edge is answered with an error and
logged; a crash of the module restarts it with fresh watches (the acked-version
check keeps that from resending what edges hold).
"""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Callable
from typing import Any

import trio

from kubeedge.cloud import kubeapi
from kubeedge.cloud.edgecontroller import downstream, lifecycle
from kubeedge.cloud.edgecontroller.locations import Locations, Ref, RefKind, spec_changed
from kubeedge.cloud.edgecontroller.upstream import EDGE_LABEL, Upstream
from kubeedge.cloud.synccontroller.controller import SyncStore, session_node
from kubeedge.kit import limits, log
from kubeedge.kit.beehive import BeehiveError, Context
from kubeedge.proto import resource as resources
from kubeedge.proto.message import Message
from kubeedge.proto.vocab import CloudModule, Group, Operation, ResourceType

_log = log.get(__name__)

_EventType = kubeapi.EventType


class EdgeController:
    """The module; also the :class:`~kubeedge.cloud.synccontroller.controller.ObjectSource` for SyncController."""

    name = CloudModule.EDGECONTROLLER.value
    group = CloudModule.EDGECONTROLLER.value

    def __init__(
        self,
        api: kubeapi.KubeAPI,
        sync: SyncStore,
        *,
        node_update_frequency: float = 10.0,
        node_grace: float = lifecycle.NODE_MONITOR_GRACE,
        cloudcore_id: str = "",
        wall_clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.api = api
        self.sync = sync
        self.node_update_frequency = node_update_frequency
        self.locations = Locations()
        self.liveness = lifecycle.Liveness(grace=node_grace, update_frequency=node_update_frequency)
        self._wall = wall_clock or (lambda: dt.datetime.now(dt.UTC))
        self.nodes = kubeapi.Reflector(api, kubeapi.NODES, label_selector=EDGE_LABEL)
        self.pods = kubeapi.Reflector(api, kubeapi.PODS)
        self.configmaps = kubeapi.Reflector(api, kubeapi.CONFIGMAPS)
        self.secrets = kubeapi.Reflector(api, kubeapi.SECRETS)
        self._by_kind = {r.kind.kind: r for r in (self.nodes, self.pods, self.configmaps, self.secrets)}
        self.upstream = Upstream(
            api, self.locations, lookup=self._lookup_kind, cloudcore_id=cloudcore_id or socket.gethostname(),
            now=self._wall,
        )  # fmt: skip
        self._synced = False
        self._ctx: Context | None = None
        self._nursery: trio.Nursery | None = None
        self._outboxes: dict[str, trio.MemorySendChannel[tuple[str, ResourceType, dict[str, Any]]]] = {}
        self._workers = trio.CapacityLimiter(limits.CONTROLLER_MAX_QUERY_WORKERS)
        self.sent = 0

    # --- ObjectSource ----------------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        """True once every watch has delivered its first list."""
        return self._synced

    def lookup(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The cached object of Kubernetes ``kind``."""
        reflector = self._by_kind.get(kind)
        return (
            reflector.get(namespace if reflector and reflector.kind.namespaced else "", name)
            if reflector
            else None
        )

    def _lookup_kind(self, kind: kubeapi.Kind, namespace: str, name: str) -> dict[str, Any] | None:
        return self.lookup(kind.kind, namespace, name)

    def node_exists(self, node: str) -> bool:
        """True if ``node`` is an edge node."""
        return self.nodes.get("", node) is not None

    def wanted(self, node: str, kind: str, namespace: str, name: str) -> bool:
        """True if ``node`` should hold the object."""
        if kind == "Pod":
            return self.locations.node_has_pod(node, namespace, name)
        if kind in ("ConfigMap", "Secret"):
            return self.locations.node_uses(node, Ref(RefKind(kind.lower()), namespace, name))
        if kind == "Node":
            return name == node
        return False

    # --- run -------------------------------------------------------------------------------------------

    async def run(
        self, ctx: Context, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Start the watches (nodes first), then serve CloudHub's messages and the lifecycle ticker."""
        self._ctx = ctx
        self._outboxes = {}
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.nodes.run, self._on_node)
            await nursery.start(self.configmaps.run, self._on_ref_object)
            await nursery.start(self.secrets.run, self._on_ref_object)
            await nursery.start(self.pods.run, self._on_pod)
            self._synced = True
            nursery.start_soon(self._ticker)
            task_status.started()
            async for msg in ctx:
                await self._dispatch(nursery, msg)

    # --- downstream ------------------------------------------------------------------------------------

    async def _send(self, node: str, op: str, rtype: ResourceType, obj: dict[str, Any]) -> None:
        """Queue ``obj`` for ``node`` unless the node is offline or already holds that version."""
        if not self.liveness.is_connected(node):
            return
        if op != Operation.DELETE:
            uid = (obj.get("metadata") or {}).get("uid", "")
            if not self.sync.index.needs_send(node, uid, kubeapi.rv_of(obj)):
                return
        outbox = self._outboxes.get(node)
        if outbox is None:
            assert self._nursery is not None
            # A small per-node buffer keeps one slow ObjectSync write from holding the watch handler;
            # past it the handler waits (backpressure on the watch, never unbounded memory).
            outbox, inbox = trio.open_memory_channel[tuple[str, ResourceType, dict[str, Any]]](
                limits.CONTROLLER_NODE_OUTBOX
            )
            self._outboxes[node] = outbox
            self._nursery.start_soon(self._node_sender, node, inbox)
        await outbox.send((op, rtype, obj))

    async def _node_sender(
        self, node: str, inbox: trio.MemoryReceiveChannel[tuple[str, ResourceType, dict[str, Any]]]
    ) -> None:
        # One sender per node keeps that node's messages in watch order while nodes proceed in parallel.
        assert self._ctx is not None
        async for op, rtype, queued in inbox:
            obj = queued
            meta = obj.get("metadata") or {}
            try:
                if op != Operation.DELETE:
                    # While this waited, the cache may have moved on (and SyncController may have sent the
                    # newer version): send the newest, and nothing the edge already acknowledged.
                    current = self.lookup(
                        str(obj.get("kind", "")), meta.get("namespace", ""), meta.get("name", "")
                    )
                    same = current is not None and (current.get("metadata") or {}).get("uid") == meta.get(
                        "uid"
                    )
                    if same and current is not None and kubeapi.rv_of(current) > kubeapi.rv_of(obj):
                        obj = current
                    if not self.sync.index.needs_send(node, meta.get("uid", ""), kubeapi.rv_of(obj)):
                        continue
                    await self.sync.ensure(node, obj)
                    self.sync.index.note_sent(
                        node, meta.get("uid", ""), kubeapi.rv_of(obj), trio.current_time()
                    )
                await self._ctx.send(CloudModule.CLOUDHUB, downstream.object_message(
                    node, op, rtype, obj, now_ms=self._ctx.now_ms()))  # fmt: skip
                self.sent += 1
            except (BeehiveError, resources.ResourceError) as exc:
                _log.warning("downstream send failed; the resync will retry", node=node, resource=meta.get("name"),
                             error=str(exc))  # fmt: skip

    async def _on_node(self, type_: _EventType, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        name = obj["metadata"]["name"]
        now = trio.current_time()
        if type_ is _EventType.DELETED:
            self.liveness.forget(name)
            self.locations.drop_node(name)
            return  # upstream sends nothing: CloudHub ends the session of a deleted node
        self.liveness.known(name, now)
        if type_ is _EventType.ADDED:
            for pod in list(self.pods.cache.values()):
                if (pod.get("spec") or {}).get("nodeName") == name:
                    await self._on_pod(_EventType.ADDED, pod, None)
        elif old is not None and spec_changed(old, obj):
            await self._send(name, Operation.UPDATE, ResourceType.NODE, obj)

    async def _on_pod(self, type_: _EventType, pod: dict[str, Any], old: dict[str, Any] | None) -> None:
        key = kubeapi.object_key(pod)
        node = (pod.get("spec") or {}).get("nodeName") or ""
        before = self.locations.pods.get(key)
        if type_ is _EventType.DELETED or not self.node_exists(node):
            entry = self.locations.remove_pod(key)
            if entry is not None:
                await self._send(entry.node, Operation.DELETE, ResourceType.POD, pod)
            return
        if before is not None and before.node != node:
            self.locations.remove_pod(key)
            await self._send(before.node, Operation.DELETE, ResourceType.POD, pod)
            before = None
        new_refs = self.locations.set_pod(key, pod, node)
        for ref in sorted(new_refs, key=lambda r: (r.kind, r.namespace, r.name)):
            await self._push_ref(node, ref)
        if before is None or old is None:
            await self._send(node, Operation.INSERT, ResourceType.POD, pod)
        elif spec_changed(old, pod):
            await self._send(node, Operation.UPDATE, ResourceType.POD, pod)
        else:
            self.sync.index.note_equivalent(node, pod["metadata"].get("uid", ""), kubeapi.rv_of(old),
                                            kubeapi.rv_of(pod))  # fmt: skip

    async def _push_ref(self, node: str, ref: Ref) -> None:
        reflector = self.configmaps if ref.kind is RefKind.CONFIGMAP else self.secrets
        obj = reflector.get(ref.namespace, ref.name)
        if obj is not None:
            op = Operation.INSERT if ref.kind is RefKind.CONFIGMAP else Operation.UPDATE
            await self._send(node, op, ResourceType(ref.kind), obj)

    async def _on_ref_object(
        self, type_: _EventType, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> None:
        kind = RefKind.CONFIGMAP if obj.get("kind") == "ConfigMap" else RefKind.SECRET
        meta = obj["metadata"]
        nodes = self.locations.nodes_for(Ref(kind, meta.get("namespace", ""), meta["name"]))
        if type_ is _EventType.DELETED:
            op = Operation.DELETE
        elif kind is RefKind.SECRET:
            op = Operation.UPDATE  # upstream sends secrets as update, adds included
        else:
            op = Operation.INSERT if type_ is _EventType.ADDED else Operation.UPDATE
        for node in nodes:
            await self._send(node, op, ResourceType(kind), obj)

    async def resync_node(self, node: str) -> None:
        """Send ``node`` everything it should hold that it has not acknowledged (on connect)."""
        if not self.node_exists(node):
            return
        for key in self.locations.pods_on(node):
            entry = self.locations.pods.get(key)
            if entry is None or entry.node != node:
                continue
            for ref in sorted(entry.refs, key=lambda r: (r.kind, r.namespace, r.name)):
                await self._push_ref(node, ref)
            # Read the pod only now: the awaits above may have let a newer version through the watch.
            ns, name = key.split("/", 1)
            pod = self.pods.get(ns, name)
            if pod is not None and self.locations.node_has_pod(node, ns, name):
                await self._send(node, Operation.INSERT, ResourceType.POD, pod)

    # --- upstream --------------------------------------------------------------------------------------

    async def _dispatch(self, nursery: trio.Nursery, msg: Message) -> None:
        op = msg.route.operation
        if op in (Operation.CONNECTED, Operation.DISCONNECTED):
            node = session_node(msg.route.resource)
            if not node:
                _log.warning("session event without a node", resource=msg.route.resource)
                return
            now = trio.current_time()
            if op == Operation.CONNECTED:
                self.liveness.connected(node, now)
                nursery.start_soon(self.resync_node, node)
            else:
                self.liveness.disconnected(node, now)
            return
        try:
            key = resources.parse_internal(msg.route.resource)
        except resources.ResourceError as exc:
            _log.warning(
                "edge message with a bad resource", resource=msg.route.resource[:200], error=str(exc)
            )
            return
        node = key.node
        self.liveness.heard(node, trio.current_time())
        if op in (Operation.RESPONSE, Operation.ERROR):
            return  # answers to our own requests carry nothing to apply
        token = object()  # message ids come from the edge and may repeat; the limiter needs a unique borrower
        await self._workers.acquire_on_behalf_of(token)
        nursery.start_soon(self._serve, node, key, msg, token)

    async def _serve(self, node: str, key: resources.ResourceKey, msg: Message, token: object) -> None:
        assert self._ctx is not None
        try:
            reply, effects = await self.upstream.handle(node, key, msg)
            for stub in effects.delete_pods:
                meta = stub["metadata"]
                try:
                    message = downstream.object_message(node, Operation.DELETE, ResourceType.POD, stub,
                                                        now_ms=self._ctx.now_ms())  # fmt: skip
                    await self._ctx.send(CloudModule.CLOUDHUB, message)
                except (BeehiveError, resources.ResourceError) as exc:
                    _log.warning("pod delete to edge failed", node=node, pod=meta.get("name"), error=str(exc))
            if reply is None:
                return
            answer = Message.new(
                source=CloudModule.EDGECONTROLLER, group=Group.RESOURCE, operation=reply.operation,
                resource=reply.resource, content=reply.content, now_ms=self._ctx.now_ms(),
                parent_msg_id=msg.msg_id,
            )  # fmt: skip
            await self._ctx.send(CloudModule.CLOUDHUB, answer)
        except BeehiveError as exc:
            _log.warning("reply to edge failed", node=node, resource=key.wire, error=str(exc))
        finally:
            self._workers.release_on_behalf_of(token)

    # --- lifecycle -------------------------------------------------------------------------------------

    async def _ticker(self) -> None:
        while True:
            await trio.sleep(min(self.node_update_frequency, self.liveness.grace / 2))
            await self.check_nodes()

    async def check_nodes(self) -> None:
        """Mark silent nodes Unknown; refresh stale heartbeats of live ones."""
        wall = self._wall()
        ages = {name: lifecycle.heartbeat_age(node, wall) for name, node in
                ((n["metadata"]["name"], n) for n in self.nodes.cache.values())}  # fmt: skip
        for name, action in self.liveness.due(trio.current_time(), ages):
            node = self.nodes.get("", name)
            if node is None:
                continue
            conditions = (node.get("status") or {}).get("conditions") or []
            if action is lifecycle.Action.MARK_UNKNOWN:
                new = lifecycle.unknown_conditions(conditions, wall)
            elif conditions:
                new = lifecycle.refreshed_conditions(conditions, wall)
            else:
                continue
            try:
                await self.api.patch(kubeapi.NODES, "", name, {"status": {"conditions": new}},
                                     content_type=kubeapi.MERGE_PATCH, subresource="status")  # fmt: skip
            except kubeapi.KubeError as exc:
                _log.warning("node status write failed", node=name, action=action, error=str(exc))
                continue
            if action is lifecycle.Action.MARK_UNKNOWN:
                self.liveness.marked_unknown(name)
                _log.info("node stopped posting status; conditions set to Unknown", node=name)
