"""edgecore's assembly: the edge modules on one beehive, routed as upstream routes them.

Owns the glue between the standalone edge components and the module runtime:

- ``websocket`` (group ``hub``) runs :class:`~kubeedge.edge.edgehub.hub.EdgeHub` and, with
  ``edgeHub.rotateCertificates``, its :class:`~kubeedge.edge.edgehub.rotation.CertRotator` (renewals are
  published on the status board's link section and as events). Cloud messages that answer
  an edge request (``parent_msg_id`` set) go to the waiting ``send_sync`` caller; the others are routed by
  group: ``resource`` to MetaManager, ``twin`` to DeviceTwin, ``user`` to the bus modules. The edge-local
  ``cloud_connected``/``cloud_disconnected`` broadcasts go to every module that tracks the link. Messages
  other modules send to ``websocket`` go up to the cloud.
- ``metamanager`` (group ``meta``) runs :class:`~kubeedge.edge.metamanager.manager.MetaManager` on the
  SQLite store; it talks to the link directly so that a message that cannot go up lands in its outbox.
- ``edged`` (group ``edged``) runs the pod manager on Docker, feeds it the pods MetaManager holds (from the
  local database first, so pods come back with no cloud), registers the node, and sends node and pod status
  up as upstream's ``nodepatch``/``podpatch`` messages through MetaManager.

- ``status`` serves the status board (:mod:`kubeedge.edge.status`): edged publishes pods on it; providers read
  EdgeHub's link, MetaManager's counters (``pending_acks``, outbox), EventBus's connections and message counts,
  and DeviceTwin's devices (from its tables in ``database.dataSource``) whenever a client asks.

Invariants: cloud messages are acked by MetaManager only after they are on disk; edged reads configmaps
and secrets through MetaManager, which answers from the database when the cloud is away. Failure: a
component that crashes is restarted by the runtime with backoff; nothing here swallows errors silently.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import trio
from cryptography import x509

from kubeedge.edge.devicetwin.module import DeviceTwin
from kubeedge.edge.edged import lease, nodestatus
from kubeedge.edge.edged import service as edged_service
from kubeedge.edge.edged.manager import PodManager, PodStatusReport
from kubeedge.edge.edgehub.hub import EdgeHub, EdgeHubSettings, NotConnected, is_connect_event
from kubeedge.edge.edgehub.rotation import CertRotator, RotationSettings
from kubeedge.edge.eventbus.eventbus import EventBus
from kubeedge.edge.metamanager import manager as mm
from kubeedge.edge.metamanager import resources as res
from kubeedge.edge.metamanager.store import MetaStore
from kubeedge.edge.servicebus.module import ServiceBus
from kubeedge.edge.status import providers
from kubeedge.edge.status.board import Provider, StatusBoard
from kubeedge.edge.status.server import StatusModule
from kubeedge.kit import beehive, limits, log, pki, tls
from kubeedge.kit import config as kconfig
from kubeedge.kit import status as st
from kubeedge.kit.config.edgecore import EdgeCoreConfig
from kubeedge.proto.message import Message

_log = log.get(__name__)

WEBSOCKET: Final = "websocket"
METAMANAGER: Final = "metamanager"
EDGED: Final = "edged"
TWIN: Final = "twin"
EVENTBUS: Final = "eventbus"
SERVICEBUS: Final = "servicebus"

NOT_CONNECTED: Final = "not connected to the cloud"
"""Content of the ``error`` reply the websocket module gives a request it cannot send."""

REGISTER_RETRY: Final = 5.0
"""Seconds between node registration attempts while the cloud does not accept it."""

STATUS_CONFIRM_TIMEOUT: Final = 15.0
"""How long a pod status patch may wait for the cloud's answer before it is tried again."""

STATUS_RETRY: Final = 2.0
"""Seconds between rounds of re-sending pod status patches the cloud did not accept."""

EDGED_REQUEST_TIMEOUT: Final = 65.0
"""How long edged waits for MetaManager's answer: above ``remoteQueryTimeout`` (60 s), which it may spend."""


def node_name_of(cfg: EdgeCoreConfig) -> str:
    """``edged.hostnameOverride``, or the lowercased hostname as upstream defaults it."""
    return cfg.modules.edged.hostname_override or socket.gethostname().lower()


def _now_ms() -> int:
    return int(time.time() * 1000)


# --- websocket (EdgeHub) --------------------------------------------------------------------------------


class HubModule:
    """The ``websocket`` module: EdgeHub plus upstream's routing of cloud messages to edge modules."""

    name = WEBSOCKET
    group = "hub"

    def __init__(self, hub: EdgeHub, present: Sequence[str], rotator: CertRotator | None = None) -> None:
        self.hub = hub
        self.rotator = rotator
        self._present = frozenset(present)

    def _route(self, msg: Message) -> str | None:
        group = msg.route.group
        if group == "resource":
            return METAMANAGER
        if group == "twin":
            return TWIN
        if group == "user":
            return SERVICEBUS if msg.route.source == "router_servicebus" else EVENTBUS
        if group == "meta":
            return METAMANAGER
        return None

    async def run(
        self, ctx: beehive.Context, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run EdgeHub, route inbound messages, forward outbound ones."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.hub.run)
            if self.rotator is not None:
                await nursery.start(self.rotator.run)
            nursery.start_soon(self._inbound, ctx)
            task_status.started()
            async for msg in ctx:
                try:
                    await self.hub.send(msg.with_sync(False))
                except NotConnected:
                    if msg.header.sync:
                        ctx.send_response(msg.reply(NOT_CONNECTED, now_ms=_now_ms(), operation="error"))
                    else:
                        _log.debug(
                            "dropped while offline", resource=msg.route.resource, op=msg.route.operation
                        )

    async def _inbound(self, ctx: beehive.Context) -> None:
        while True:
            msg = await self.hub.receive()
            if is_connect_event(msg):
                for target in (METAMANAGER, EDGED, TWIN, EVENTBUS, SERVICEBUS):
                    if target in self._present:
                        await ctx.send(target, msg)
                continue
            if msg.route.group == "twin" and TWIN in self._present:
                # DeviceController's confirmations of twin reports: DeviceTwin resends until it sees them.
                await ctx.send(TWIN, msg)
                continue
            if msg.parent_msg_id and msg.route.operation in ("response", "error"):
                # A cloud answer to an edge request: its sender waits for it through send_sync
                # (an answer nobody waits for, e.g. to a status patch, is dropped by the runtime).
                ctx.send_response(msg)
                continue
            route = self._route(msg)
            if route is None or route not in self._present:
                _log.warning(
                    "no module for cloud message",
                    group=msg.route.group,
                    source=msg.route.source,
                    resource=msg.route.resource,
                )
                continue
            await ctx.send(route, msg)


# --- metamanager ---------------------------------------------------------------------------------------------


class MetaModule:
    """The ``metamanager`` module: MetaManager on ``database.dataSource``."""

    name = METAMANAGER
    group = "meta"

    def __init__(
        self, cfg: EdgeCoreConfig, store: MetaStore, hub: EdgeHub, present: Sequence[str], board: StatusBoard
    ) -> None:
        self._store = store
        self._data_source = cfg.database.data_source
        self._board = board
        self._provided = False
        self._config = mm.MetaManagerConfig(
            remote_query_timeout=cfg.modules.meta_manager.remote_query_timeout
        )
        self._hub = hub
        self._present = frozenset(present)
        self.manager: mm.MetaManager | None = None

    async def run(
        self, ctx: beehive.Context, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run MetaManager on the shared store, feeding it this module's inbox."""
        store = self._store
        # The buffer is what group commit batches: messages waiting together share one transaction.
        inbox_send, inbox_recv = trio.open_memory_channel[Message](limits.MODULE_QUEUE)

        async def to_edged(msg: Message) -> None:
            if msg.parent_msg_id:
                ctx.send_response(msg)
            elif EDGED in self._present:
                await ctx.send(EDGED, msg)

        async def to_twin(msg: Message) -> None:
            if TWIN in self._present:
                await ctx.send(TWIN, msg)

        async def to_cloud(msg: Message) -> None:
            try:
                await self._hub.send(msg)
            except NotConnected as exc:
                raise mm.CloudUnavailable(str(exc)) from exc

        # MetaManager's interface passes the timeout with the request, as upstream's SendSync does.
        async def send_sync(msg: Message, timeout: float) -> Message:  # noqa: ASYNC109
            if not self._hub.connected:
                raise mm.CloudUnavailable(NOT_CONNECTED)
            try:
                reply = await ctx.send_sync(WEBSOCKET, msg, timeout=timeout)
            except beehive.SyncTimeoutError as exc:
                raise trio.TooSlowError(str(exc)) from exc
            if reply.route.operation == "error" and reply.content == NOT_CONNECTED:
                raise mm.CloudUnavailable(NOT_CONNECTED)
            return reply

        manager = mm.MetaManager(
            store,
            inbox=inbox_recv,
            to_edged=to_edged,
            to_twin=to_twin,
            to_cloud=to_cloud,
            send_sync=send_sync,
            config=self._config,
        )
        self.manager = manager
        if not self._provided:
            self._provided = True
            current = _CurrentManager(self)
            self._board.add_provider(
                "metamanager",
                providers.MetaProvider(
                    current, self._data_source, pending_acks=lambda: int(current.pending_acks)
                ),
            )
        async with trio.open_nursery() as nursery:
            await nursery.start(manager.run)
            task_status.started()
            async with inbox_send:
                async for msg in ctx:
                    await inbox_send.send(msg)


class _CurrentManager:
    """The MetaManager of the module's current run (a restart makes a new one), for the status board."""

    def __init__(self, module: MetaModule) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module.manager, name)


# --- edged ---------------------------------------------------------------------------------------------------


def edged_settings(cfg: EdgeCoreConfig) -> kconfig.edgecore.Edged:
    """``modules.edged`` with the host-dependent values filled in (blocking: reads the routing table).

    ``hostnameOverride`` empty becomes the lowercased hostname and ``nodeIP`` empty the default-route
    interface's address, as upstream resolves them.
    """
    edged = cfg.modules.edged
    return dataclasses.replace(
        edged, hostname_override=node_name_of(cfg), node_ip=edged.node_ip or nodestatus.host_ip()
    )


def _first_object(content: Any) -> Mapping[str, Any] | None:
    """The object in a MetaManager answer: a DB answer (JSON array of strings) or a cloud answer."""
    if isinstance(content, list):
        for item in content:
            try:
                obj = json.loads(item) if isinstance(item, str) else item
            except ValueError:
                continue
            if isinstance(obj, Mapping):
                return obj
        return None
    answer = res.decode_answer("response", content)
    return answer.object if isinstance(answer.object, Mapping) else None


@dataclass
class _NodeState:
    registered: bool = False
    status: Mapping[str, Any] | None = None


class EdgedModule:
    """The ``edged`` module: pods on Docker, node registration and status through MetaManager."""

    name = EDGED
    group = "edged"

    def __init__(self, cfg: EdgeCoreConfig, board: StatusBoard) -> None:
        self._board = board
        self._settings = edged_settings(cfg)
        self._node = self._settings.hostname_override
        self._namespace = cfg.modules.edged.register_node_namespace
        self._status_period = cfg.modules.edged.tailored_kubelet_config.node_status_update_frequency
        self._lease = lease.LeaseRenewer(
            self._node, cfg.modules.edged.tailored_kubelet_config.node_lease_duration_seconds
        )
        self._state = _NodeState()
        self.pods: PodManager | None = None

    def _request(self, op: str, resource: str, content: Any = None) -> Message:
        return Message.new(
            source=EDGED, group="meta", operation=op, resource=resource, content=content, now_ms=_now_ms()
        )

    async def _ask(self, ctx: beehive.Context, op: str, resource: str, content: Any = None) -> Message:
        return await ctx.send_sync(
            METAMANAGER, self._request(op, resource, content), timeout=EDGED_REQUEST_TIMEOUT
        )

    async def run(
        self, ctx: beehive.Context, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the pod manager and the node and status loops, and apply MetaManager's pod messages."""

        async def lookup(kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
            reply = await self._ask(ctx, "query", f"{namespace}/{kind}/{name}")
            if reply.route.operation == "error":
                return None
            return _first_object(reply.content)

        status_send, status_recv = trio.open_memory_channel[PodStatusReport](0)
        async with trio.open_nursery() as nursery:
            pods: PodManager = await nursery.start(
                edged_service.serve_docker, self._settings, lookup, status_send
            )
            self.pods = pods
            pods.set_pods(await self._stored_pods(ctx))
            nursery.start_soon(self._report_pod_status, ctx, status_recv)
            nursery.start_soon(self._node_loop, ctx, pods)
            nursery.start_soon(self._lease_loop, ctx)
            task_status.started()
            async for msg in ctx:
                self._apply(pods, msg)

    async def _stored_pods(self, ctx: beehive.Context) -> list[Mapping[str, Any]]:
        """Pods MetaManager holds for this node (from the local database: works with no cloud)."""
        reply = await self._ask(ctx, "query", f"{self._namespace}/pod")
        found: list[Mapping[str, Any]] = []
        content = reply.content if isinstance(reply.content, list) else []
        for item in content:
            try:
                pod = json.loads(item) if isinstance(item, str) else item
            except ValueError:
                continue
            if isinstance(pod, Mapping) and pod.get("spec", {}).get("nodeName") == self._node:
                found.append(pod)
        _log.info("pods restored from the local store", count=len(found))
        return found

    def _apply(self, pods: PodManager, msg: Message) -> None:
        if is_connect_event(msg):
            if msg.content == "cloud_connected":
                self._state.registered = False  # register (idempotently) again after every reconnect
            return
        parts = msg.route.resource.split("/")
        if len(parts) < 2:
            return
        namespace, kind = parts[0], parts[1]
        name = parts[2] if len(parts) > 2 else ""
        op = msg.route.operation
        content = msg.content if isinstance(msg.content, Mapping) else {}
        if kind == "pod":
            meta = content.get("metadata", {})
            uid = str(meta.get("uid", ""))
            ours = content.get("spec", {}).get("nodeName") == self._node
            if meta.get("deletionTimestamp") and op in ("insert", "update") and ours:
                # A graceful delete arrives as an update carrying deletionTimestamp: edged stops the pod within
                # its deletionGracePeriodSeconds and, once its containers are gone (or if it never ran here),
                # reports it and the final delete (grace 0, UID precondition) goes up.
                try:
                    pods.upsert_pod(content)
                except ValueError as exc:
                    _log.warning("pod deletion refused", pod=f"{namespace}/{name}", error=str(exc))
                    if uid:
                        pods.delete_pod(uid)
            elif op == "delete" or meta.get("deletionTimestamp"):
                if uid:
                    pods.delete_pod(uid)
            elif op in ("insert", "update") and ours:
                try:
                    pods.upsert_pod(content)
                except ValueError as exc:
                    _log.warning("pod refused", pod=f"{namespace}/{name}", error=str(exc))
        elif kind in ("configmap", "secret"):
            pods.object_changed(kind, namespace, name)

    async def _report_pod_status(
        self, ctx: beehive.Context, reports: trio.MemoryReceiveChannel[PodStatusReport]
    ) -> None:
        pending: dict[str, tuple[str, str, Any]] = {}
        """Newest unconfirmed status patch per pod UID: (op, resource, content)."""
        wake = trio.Event()

        async def confirm() -> None:
            # A status patch counts as delivered once the cloud answered it without an error, or once
            # MetaManager took it into its outbox ("connection lost"). A refused or unanswered patch is
            # retried, so a status is never lost while the pod does not change again.
            nonlocal wake
            while True:
                if not pending:
                    await wake.wait()
                    wake = trio.Event()
                for uid, entry in list(pending.items()):
                    op, resource, content = entry
                    try:
                        reply = await ctx.send_sync(
                            METAMANAGER, self._request(op, resource, content), timeout=STATUS_CONFIRM_TIMEOUT
                        )
                        answer = res.decode_answer(reply.route.operation, reply.content)
                        delivered = not answer.error or answer.error == "connection lost"
                        if not delivered:
                            _log.info("pod status not accepted yet", resource=resource, reason=answer.error)
                    except beehive.SyncTimeoutError:
                        delivered = False
                    if delivered and pending.get(uid) is entry:
                        del pending[uid]
                if pending:
                    with trio.move_on_after(STATUS_RETRY):
                        await wake.wait()
                        wake = trio.Event()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(confirm)
            async for report in reports:
                pod = None
                if report.status is not None:
                    pod = providers.pod_from_kubernetes(
                        report.uid, report.namespace, report.name, report.status, static=report.static
                    )
                providers.publish_pod(self._board, pod, uid=report.uid)
                if report.static:
                    continue  # static pods are not in the API (mirror pods are not implemented)
                if report.status is None:
                    pending.pop(report.uid, None)
                    options = {"gracePeriodSeconds": 0, "preconditions": {"uid": report.uid}}
                    # MetaManager sends the final delete up (or keeps it in its outbox while offline).
                    await ctx.send(
                        METAMANAGER, self._request("delete", f"{report.namespace}/pod/{report.name}", options)
                    )
                    continue
                patch = {"metadata": {"uid": report.uid}, "status": dict(report.status)}
                pending[report.uid] = (
                    "patch",
                    f"{report.namespace}/podpatch/{report.name}",
                    json.dumps(patch),
                )
                wake.set()

    async def _node_loop(self, ctx: beehive.Context, pods: PodManager) -> None:
        while True:
            try:
                if not self._state.registered:
                    node = await pods.node()
                    reply = await self._ask(ctx, "insert", f"null/node/{self._node}", node)
                    answer = res.decode_answer(reply.route.operation, reply.content)
                    if answer.error and "exists" not in answer.error.lower():
                        _log.info("node registration not accepted yet", node=self._node, reason=answer.error)
                        await trio.sleep(REGISTER_RETRY)
                        continue
                    self._state.registered = True
                    _log.info("node registered", node=self._node)
                    if not self._lease.owner_known:
                        await self._learn_node_uid(ctx, answer.object)
                status = await pods.node_status(self._state.status)
                self._state.status = status
                await ctx.send(
                    METAMANAGER,
                    self._request(
                        "patch", f"null/nodepatch/{self._node}", json.dumps({"status": dict(status)})
                    ),
                )
            except beehive.SyncTimeoutError:
                _log.warning("metamanager did not answer in time", node=self._node)
            await trio.sleep(self._status_period)

    async def _learn_node_uid(self, ctx: beehive.Context, registered: Any) -> None:
        """Tell the Lease its owner: the Node the cloud just created, else the one in the local store."""
        node = registered if isinstance(registered, Mapping) else None
        if node is None:
            reply = await self._ask(ctx, "query", f"null/node/{self._node}")
            node = _first_object(reply.content) if reply.route.operation != "error" else None
        metadata = node.get("metadata") if isinstance(node, Mapping) else None
        uid = metadata.get("uid") if isinstance(metadata, Mapping) else None
        if isinstance(uid, str):
            self._lease.owned_by(uid)

    async def _renew_lease(self, ctx: beehive.Context, resource: str) -> str:
        """One renewal (a read first when nothing is known of the stored Lease); returns the error or ""."""
        renewer = self._lease
        try:
            if renewer.needs_read:
                reply = await ctx.send_sync(
                    METAMANAGER, self._request("query", resource), timeout=renewer.interval
                )
                current = _first_object(reply.content) if reply.route.operation != "error" else None
                if current is not None:
                    renewer.seen(current)
            reply = await ctx.send_sync(
                METAMANAGER,
                self._request("update", resource, renewer.next_lease(time.time())),
                timeout=renewer.interval,
            )
        except beehive.SyncTimeoutError:
            renewer.failed()
            return "no answer in time"
        answer = res.decode_answer(reply.route.operation, reply.content)
        if answer.error:
            renewer.failed()
            return answer.error
        renewer.seen(answer.object)
        return ""

    async def _lease_loop(self, ctx: beehive.Context) -> None:
        """Renew the node Lease through MetaManager (remote only: offline, the renewal fails and waits)."""
        renewer = self._lease
        resource = f"{lease.LEASE_NAMESPACE}/lease/{self._node}"
        failing = ""
        while True:
            if self._state.registered:
                error = await self._renew_lease(ctx, resource)
                if error and error != failing:  # once per kind of failure, not every interval while offline
                    _log.info("node lease not renewed", node=self._node, reason=error)
                elif failing and not error:
                    _log.info("node lease renewed again", node=self._node)
                failing = error
            await trio.sleep(renewer.interval)


# --- the whole edgecore --------------------------------------------------------------------------------------


def open_store(cfg: EdgeCoreConfig) -> MetaStore:
    """Open (or create) ``database.dataSource``; raises the store's error naming the file."""
    Path(cfg.database.data_source).parent.mkdir(parents=True, exist_ok=True)
    return MetaStore.open(cfg.database.data_source)


def _link_provider(hub: EdgeHub) -> Provider:
    """Refresh ``board.link`` from EdgeHub's state before each status render."""
    state: dict[str, Any] = {"connected": None, "since": time.time()}

    async def provide(board: StatusBoard) -> None:
        connected = hub.connected
        if connected != state["connected"]:
            state["connected"], state["since"] = connected, time.time()
        close = hub.last_close
        board.link = dataclasses.replace(
            board.link,
            state=st.LinkState.CONNECTED if connected else st.LinkState.CONNECTING,
            since=state["since"],
            reconnects=max(0, hub.dials - 1),
            last_error=f"closed by the cloud: {close[0]} {close[1]}" if close else board.link.last_error,
        )

    return provide


def cert_rotator(cfg: EdgeCoreConfig, hub: EdgeHub, board: StatusBoard) -> CertRotator | None:
    """The certificate rotator for ``hub`` (None when ``edgeHub.rotateCertificates`` is off or cannot work).

    Each renewal replaces ``board.certificate`` and adds an event; each failure adds a warning event.
    """
    hub_cfg = cfg.modules.edge_hub
    if not hub_cfg.rotate_certificates:
        _log.info("certificate rotation off (modules.edgeHub.rotateCertificates: false)")
        return None
    if not hub_cfg.http_server:
        _log.warning("certificate rotation off: modules.edgeHub.httpServer is empty")
        return None
    settings = RotationSettings(
        service_url=hub_cfg.http_server,
        ca_file=Path(hub_cfg.tls_ca_file),
        cert_file=Path(hub_cfg.tls_cert_file),
        key_file=Path(hub_cfg.tls_private_key_file),
    )

    def rotated(cert: x509.Certificate) -> None:
        board.certificate = st.CertificateStatus(
            path=hub_cfg.tls_cert_file,
            subject=cert.subject.rfc4514_string(),
            not_after=cert.not_valid_after_utc.timestamp(),
        )
        board.event(
            st.Severity.INFO,
            "edgehub",
            "CertificateRotated",
            f"new certificate serial {cert.serial_number:x}, valid until {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC",
        )

    def failed(reason: str, retry_in: float) -> None:
        board.event(
            st.Severity.WARNING,
            "edgehub",
            "CertificateRotationFailed",
            f"{reason} (retry in {retry_in:.0f} s)",
        )

    return CertRotator(hub, settings, on_rotated=rotated, on_failed=failed)


def tls_context(cfg: EdgeCoreConfig) -> ssl.SSLContext:
    """EdgeHub's client context from ``edgeHub.tlsCaFile``/``tlsCertFile``/``tlsPrivateKeyFile``.

    Raises :class:`OSError` or :class:`ssl.SSLError` naming the file when one is missing or unreadable.
    """
    hub_cfg = cfg.modules.edge_hub
    for key, path in (
        ("tlsCaFile", hub_cfg.tls_ca_file),
        ("tlsCertFile", hub_cfg.tls_cert_file),
        ("tlsPrivateKeyFile", hub_cfg.tls_private_key_file),
    ):
        if not Path(path).is_file():
            raise FileNotFoundError(f"modules.edgeHub.{key}: {path}: no such file (run keadm join first)")
    # A renewal interrupted by a crash left staged files: settle on one whole pair before loading it.
    done = pki.complete_pair(Path(hub_cfg.tls_cert_file), Path(hub_cfg.tls_private_key_file))
    if done:
        _log.warning("finished an interrupted certificate renewal", action=done)
    return tls.edge_client_context(
        Path(hub_cfg.tls_ca_file), Path(hub_cfg.tls_cert_file), Path(hub_cfg.tls_private_key_file)
    )


def build_modules(cfg: EdgeCoreConfig, store: MetaStore, context: ssl.SSLContext) -> list[Any]:
    """The enabled edge modules in start order, wired to each other and sharing ``store``."""
    hub_cfg = cfg.modules.edge_hub
    present: list[str] = []
    if hub_cfg.enable:
        present.append(WEBSOCKET)
    if cfg.modules.meta_manager.enable:
        present.append(METAMANAGER)
    if cfg.modules.edged.enable:
        present.append(EDGED)
    if cfg.modules.event_bus.enable:
        present.append(EVENTBUS)
    if cfg.modules.device_twin.enable:
        present.append(TWIN)
    if cfg.modules.service_bus.enable:
        present.append(SERVICEBUS)
    board = providers.board_from_config(cfg, started_at=time.time())
    hub = EdgeHub(
        context,
        EdgeHubSettings(
            server=hub_cfg.websocket.server,
            node_name=node_name_of(cfg),
            project_id=hub_cfg.project_id,
            heartbeat=float(hub_cfg.heartbeat),
            handshake_timeout=float(hub_cfg.websocket.handshake_timeout),
            write_deadline=float(hub_cfg.websocket.write_deadline),
            message_qps=float(hub_cfg.message_qps),
            message_burst=hub_cfg.message_burst,
        ),
    )
    board.add_provider("edgehub", _link_provider(hub))
    node = node_name_of(cfg)
    modules: list[Any] = []
    if cfg.modules.meta_manager.enable:
        modules.append(MetaModule(cfg, store, hub, present, board))
    if hub_cfg.enable:
        modules.append(HubModule(hub, present, cert_rotator(cfg, hub, board)))
    if cfg.modules.event_bus.enable:
        bus = EventBus(cfg.modules.event_bus, store=store, node_name=node)
        board.add_provider("eventbus", providers.MqttProvider(bus))
        modules.append(bus)
    if cfg.modules.device_twin.enable:
        board.add_provider("devicetwin", providers.DeviceProvider(cfg.database.data_source))
        modules.append(DeviceTwin(data_source=cfg.database.data_source, node_name=node))
    if cfg.modules.service_bus.enable:
        sb = cfg.modules.service_bus
        modules.append(
            ServiceBus(
                server=sb.server, port=sb.port, timeout=sb.timeout, data_source=cfg.database.data_source
            )
        )
    if cfg.modules.edged.enable:
        modules.append(EdgedModule(cfg, board))
    if cfg.modules.status_server.enable:
        modules.append(StatusModule.from_config(board, cfg.modules.status_server))
    return modules
