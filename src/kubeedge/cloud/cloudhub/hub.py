"""CloudHub's websocket server: one session per edge node, mTLS identity, liveness, reliable delivery.

Owns the listening socket, the TLS and websocket handshakes, the table of live
sessions and each session's tasks. Upstream messages (resource prefixed with
``node/<node>/``) and session events (op ``connected``/``disconnected`` on
``node/<node>``) go to the ``upstream`` channel; controllers send down with
:meth:`CloudHub.send_to_node`, which never blocks (it queues into the node's
:class:`~kubeedge.cloud.cloudhub.delivery.NodeDelivery`).

Invariants:

* At most one session per node: a new connection replaces the old one (closed
  with ``REPLACED``); at most ``node_limit`` sessions (a refused socket is
  closed with ``TRY_AGAIN_LATER``, never left open).
* A session's identity is the ``node_id`` header; with ``authorize_nodes`` (the
  default, unlike upstream) it must equal ``<node>`` of the client certificate
  CN ``system:node:<node>``. The ssl context must require client certificates.
* A session ends (deadlines are suspended while the upstream consumer stalls
  our reading, which is not the edge's fault) when no keepalive message arrives within
  ``keepalive_interval``, when no bytes at all arrive within ``read_timeout``
  (pongs count: a link silent for ``ping_interval`` is pinged), when a write blocks past
  ``write_timeout``, or on a frame that is oversized or not a message. Only that
  session ends; every session has its own tasks, so a slow edge stalls no other.

Failure: handshake problems are logged and the socket closed; nothing a peer
sends can raise out of :meth:`CloudHub.run`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import trio
import trio_websocket
from trio_websocket import ConnectionClosed

from kubeedge.cloud.cloudhub.delivery import NodeDelivery, Outcome
from kubeedge.kit import limits, log, wslink
from kubeedge.kit.wslink import CloseCode
from kubeedge.proto import codec
from kubeedge.proto import resource as resources
from kubeedge.proto.message import Message
from kubeedge.proto.vocab import CloudModule, Group, Operation, ResourceType

_log = log.get(__name__)

KEEPALIVE_INTERVAL: Final = 30.0
"""``cloudHub.keepaliveInterval`` default (seconds)."""
NODE_LIMIT: Final = 500
"""``cloudHub.nodeLimit`` default."""
WRITE_TIMEOUT: Final = 30.0
"""``cloudHub.writeTimeout`` default (seconds; unused upstream, enforced here)."""
UPSTREAM_STALL: Final = 1.0
"""An upstream send blocked this long (seconds) restarts the session's liveness deadlines."""
HANDSHAKE_TIMEOUT: Final = 30.0
"""Seconds a client gets for TLS plus the websocket upgrade."""


@dataclass(frozen=True, slots=True)
class HubSettings:
    """CloudHub websocket settings (upstream keys in comments)."""

    address: str = "0.0.0.0"
    """``websocket.address``."""
    port: int = 10000
    """``websocket.port`` (0 picks a free port, for tests)."""
    node_limit: int = NODE_LIMIT
    """``nodeLimit``."""
    keepalive_interval: float = KEEPALIVE_INTERVAL
    """``keepaliveInterval``: a session without a keepalive message this long ends."""
    ping_interval: float | None = None
    """Ping a link that has been silent this long; default ``0.75 * keepalive_interval``."""
    read_timeout: float | None = None
    """Read deadline (no bytes at all); default ``keepalive_interval``."""
    write_timeout: float = WRITE_TIMEOUT
    """``writeTimeout``: a write blocked this long ends the session."""
    handshake_timeout: float = HANDSHAKE_TIMEOUT
    max_pending_handshakes: int = limits.CLOUDHUB_PENDING_HANDSHAKES
    """Connections in TLS/upgrade at once; more wait in the accept backlog."""
    answer_keepalives: bool = True
    """Answer each keepalive with a websocket pong so edges need not ping (off: behave as upstream)."""
    authorize_nodes: bool = True
    """Require certificate CN ``system:node:<node_id>`` (config: ``nodeAuthorization.enable``, a kubeedge-py
    extension; upstream checks only under ``authorization.enable``, off by default)."""
    ack_timeout: float = 5.0
    max_in_flight: int = 64
    ack_queue_size: int = limits.NODE_SEND_QUEUE
    noack_queue_size: int = limits.NODE_SEND_QUEUE

    def __post_init__(self) -> None:
        if self.node_limit < 1:
            raise ValueError(f"nodeLimit must be >= 1, got {self.node_limit}")
        if not 0 < self.keepalive_interval <= 3600:
            raise ValueError(f"keepaliveInterval must be in (0, 3600] seconds, got {self.keepalive_interval}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"websocket.port must be in [0, 65535], got {self.port}")

    @property
    def ping_every(self) -> float:
        """Effective quiet time before a ping."""
        # 3/4 of the keepalive interval: longer than the edge heartbeat (interval / 2 by upstream's
        # defaults), so healthy edges are never pinged, and still leaves a quarter for the pong.
        return self.ping_interval if self.ping_interval is not None else 0.75 * self.keepalive_interval

    @property
    def read_deadline(self) -> float:
        """Effective read deadline."""
        return self.read_timeout if self.read_timeout is not None else self.keepalive_interval


class _SessionEnd(Exception):
    """Raised inside a session to end it with a close code."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(eq=False, slots=True)
class Session:
    """One edge node's live connection."""

    node: str
    remote: str
    ws: Any
    stream: wslink.ActivityStream
    delivery: NodeDelivery
    last_keepalive: float
    paused: bool = False
    """True while the reader waits for the upstream consumer (liveness deadlines suspended)."""
    resumed_at: float = -math.inf
    """When the last long upstream stall ended (liveness deadlines count from here at the earliest)."""
    cancel_scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    wake: trio.Event = field(default_factory=trio.Event)
    end_code: CloseCode = CloseCode.NORMAL
    end_reason: str = ""
    cert_serial: int | None = None
    """Serial number of the client certificate this session was opened with."""

    def end(self, code: CloseCode, reason: str) -> None:
        """Ask the session to close with ``code``/``reason`` (idempotent; the first reason wins)."""
        if not self.cancel_scope.cancel_called:
            self.end_code, self.end_reason = code, reason
            self.cancel_scope.cancel()


class CloudHub:
    """The cloud end of the link. Run :meth:`run` in a nursery; use :meth:`send_to_node` from anywhere in trio.

    ``upstream`` receives every message from edges (resource prefixed) and the
    ``connected``/``disconnected`` events. ``on_acked(node, msg)`` is called for
    each acknowledged ack-mode message; ``acked_version(node, uid)`` may return
    the recorded ObjectSync version (see :class:`NodeDelivery`).
    """

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        upstream: trio.MemorySendChannel[Message],
        settings: HubSettings | None = None,
        *,
        on_acked: Callable[[str, Message], None] | None = None,
        acked_version: Callable[[str, str], int | None] | None = None,
    ) -> None:
        if ssl_context.verify_mode != ssl.CERT_REQUIRED:
            raise ValueError(
                "CloudHub's ssl context must require client certificates (verify_mode CERT_REQUIRED)"
            )
        self.settings = settings or HubSettings()
        self._ssl = ssl_context
        self._upstream = upstream
        self._on_acked = on_acked
        self._acked_version = acked_version
        self._sessions: dict[str, Session] = {}
        self._handshakes = trio.Semaphore(self.settings.max_pending_handshakes)
        self.port: int = 0
        """The bound port, known once :meth:`run` has started."""

    # --- public API --------------------------------------------------------------------------------

    @property
    def nodes(self) -> list[str]:
        """Nodes with a live session."""
        return list(self._sessions)

    def session(self, node: str) -> Session | None:
        """The live session of ``node``, if any."""
        return self._sessions.get(node)

    def send_to_node(self, node: str, msg: Message) -> Outcome | None:
        """Queue ``msg`` (cloud-internal resource) for ``node``; ``None`` if the node has no session.

        Never blocks. A Node ``delete`` from EdgeController is not sent: it ends the session.
        """
        session = self._sessions.get(node)
        if session is None:
            return None
        route = msg.route
        if (
            route.operation == Operation.DELETE
            and route.source == CloudModule.EDGECONTROLLER
            and _is_node_resource(route.resource)
        ):
            session.end(CloseCode.NODE_DELETED, "node deleted")
            return None
        outcome = session.delivery.enqueue(msg, trio.current_time())
        if outcome in {Outcome.OVERFLOW, Outcome.DROPPED_OLDEST, Outcome.INVALID, Outcome.NO_VERSION}:
            _log.warning(
                "downstream message not queued as is",
                node=node,
                outcome=str(outcome),
                msg_id=msg.msg_id,
                resource=route.resource,
            )
        session.wake.set()
        return outcome

    async def run(self, *, task_status: trio.TaskStatus[CloudHub] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until cancelled; ``task_status.started(self)`` once listening."""
        s = self.settings
        listeners = await trio.open_tcp_listeners(s.port, host=s.address or None)
        self.port = listeners[0].socket.getsockname()[1]
        _log.info("cloudhub websocket listening", address=s.address, port=self.port, node_limit=s.node_limit)
        try:
            async with trio.open_nursery() as nursery:
                for listener in listeners:
                    nursery.start_soon(self._accept_loop, listener, nursery)
                task_status.started(self)
        finally:
            for listener in listeners:
                await trio.aclose_forcefully(listener)

    # --- connection handling -----------------------------------------------------------------------

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            # Bound half-open handshakes (slow or hostile clients): past the limit, new clients
            # wait in the kernel's accept backlog instead of costing us descriptors and memory.
            await self._handshakes.acquire()
            try:
                stream = await listener.accept()
            except OSError as exc:
                self._handshakes.release()
                # EMFILE and friends: back off briefly instead of spinning; existing sessions live on.
                _log.error("accept failed", error=str(exc))
                await trio.sleep(0.1)
                continue
            nursery.start_soon(self._handle, stream)

    async def _handle(self, tcp: trio.SocketStream) -> None:
        remote = _remote(tcp)
        tls = trio.SSLStream(tcp, self._ssl, server_side=True, https_compatible=False)
        slot = [True]
        try:
            await self._serve_connection(tls, remote, slot)
        except Exception as exc:
            # Supervision boundary: one peer's failure, whatever it is, ends only its connection.
            _log.debug("connection ended", remote=remote, error=wslink.describe_error(exc))
        finally:
            self._release_handshake(slot)
            await trio.aclose_forcefully(tls)

    def _release_handshake(self, slot: list[bool]) -> None:
        if slot[0]:
            slot[0] = False
            self._handshakes.release()

    async def _serve_connection(
        self, tls: trio.SSLStream[trio.SocketStream], remote: str, slot: list[bool]
    ) -> None:
        s = self.settings
        stream = wslink.ActivityStream(tls)
        async with trio.open_nursery() as nursery:
            with trio.move_on_after(s.handshake_timeout) as handshake:
                try:
                    await tls.do_handshake()
                except trio.BrokenResourceError as exc:
                    _log.warning("TLS handshake refused", remote=remote, error=str(exc.__cause__ or exc))
                    nursery.cancel_scope.cancel()
                    return
                request = await trio_websocket.wrap_server_stream(
                    nursery,
                    stream,
                    message_queue_size=1,
                    max_message_size=limits.MAX_FRAME_BYTES,
                )
            self._release_handshake(slot)
            if handshake.cancelled_caught:
                _log.warning("handshake timed out", remote=remote, timeout=s.handshake_timeout)
                nursery.cancel_scope.cancel()
                return
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers}
            ws = await request.accept()
            refusal = self._check(headers, wslink.peer_common_name(tls))
            if refusal is not None:
                code, reason = refusal
                _log.warning(
                    "edge refused",
                    remote=remote,
                    node=headers.get(wslink.HEADER_NODE_ID.lower(), ""),
                    code=int(code),
                    reason=reason,
                )
                await wslink.close_bounded(ws, code, reason)
                nursery.cancel_scope.cancel()
                return
            node = headers[wslink.HEADER_NODE_ID.lower()]
            await self._run_session(node, remote, ws, stream, wslink.peer_serial(tls))
            nursery.cancel_scope.cancel()

    def _check(self, headers: dict[str, str], common_name: str) -> tuple[CloseCode, str] | None:
        node = headers.get(wslink.HEADER_NODE_ID.lower(), "")
        use = headers.get(wslink.HEADER_CONNECTION_USE.lower(), "")
        if use != wslink.CONNECTION_USE_MSG:
            return CloseCode.POLICY_VIOLATION, f"header {wslink.HEADER_CONNECTION_USE}: msg required"
        if not node:
            return CloseCode.POLICY_VIOLATION, f"header {wslink.HEADER_NODE_ID} required"
        try:
            resources.add_node_prefix("x", node)
        except ValueError:
            return CloseCode.POLICY_VIOLATION, f"header {wslink.HEADER_NODE_ID} is not a valid node name"
        if self.settings.authorize_nodes:
            cert_node = wslink.node_from_common_name(common_name)
            if cert_node != node:
                return (
                    CloseCode.NODE_FORBIDDEN,
                    f"certificate CN {common_name!r} is not {wslink.NODE_CN_PREFIX}{node}",
                )
        if node not in self._sessions and len(self._sessions) >= self.settings.node_limit:
            return CloseCode.TRY_AGAIN_LATER, f"nodeLimit {self.settings.node_limit} reached"
        return None

    async def _run_session(
        self, node: str, remote: str, ws: Any, stream: wslink.ActivityStream, cert_serial: int | None = None
    ) -> None:
        s = self.settings
        now = trio.current_time()
        acked_version = self._acked_version
        session = Session(
            node=node,
            remote=remote,
            ws=ws,
            stream=stream,
            delivery=NodeDelivery(
                node,
                ack_timeout=s.ack_timeout,
                max_in_flight=s.max_in_flight,
                ack_queue_size=s.ack_queue_size,
                noack_queue_size=s.noack_queue_size,
                on_acked=self._on_acked,
                acked_version=(lambda uid: acked_version(node, uid)) if acked_version else None,
            ),
            last_keepalive=now,
            cert_serial=cert_serial,
        )
        old = self._sessions.get(node)
        if old is not None:
            _log.info("session replaced", node=node, old_remote=old.remote, remote=remote)
            old.end(CloseCode.REPLACED, "replaced by a newer connection of this node")
        self._sessions[node] = session
        _log.info(
            "session opened",
            node=node,
            remote=remote,
            serial=f"{cert_serial:x}" if cert_serial is not None else "",
            sessions=len(self._sessions),
        )
        orderly = False
        try:
            await self._publish_event(node, Operation.CONNECTED)
            with session.cancel_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._guarded, session, self._writer, nursery)
                    await self._guarded(session, self._reader, nursery)
            orderly = True
        finally:
            if not orderly:
                # Cancelled from outside: the hub is shutting down and the websocket's own
                # reader is being cancelled too, so a closing handshake cannot complete.
                session.end_code, session.end_reason = CloseCode.GOING_AWAY, "cloudhub shutting down"
            current = self._sessions.get(node) is session
            if current:
                del self._sessions[node]
            _log.info(
                "session closed",
                node=node,
                remote=remote,
                code=int(session.end_code),
                reason=session.end_reason,
                sessions=len(self._sessions),
            )
            with trio.CancelScope(shield=True):
                if current:
                    # Announce first: closing a dead link waits out the close grace period.
                    # A replaced session stays silent: its successor already announced ``connected``.
                    with trio.move_on_after(wslink.CLOSE_TIMEOUT):
                        await self._publish_event(node, Operation.DISCONNECTED)
                # A peer presumed dead, or a hub shutting down, gets no time for a closing handshake.
                patient = orderly and session.end_code != CloseCode.KEEPALIVE_TIMEOUT
                await wslink.close_bounded(
                    ws, session.end_code, session.end_reason, grace=wslink.CLOSE_TIMEOUT if patient else 0.05
                )

    @staticmethod
    async def _guarded(
        session: Session, fn: Callable[[Session, trio.Nursery], Any], nursery: trio.Nursery
    ) -> None:
        """Run a session task; any way it ends, end the whole session (not the hub)."""
        try:
            await fn(session, nursery)
        except _SessionEnd as end:
            session.end(end.code, end.reason)
        except ConnectionClosed as exc:
            reason = exc.reason
            detail = f"{reason.code} {reason.reason or ''}".strip() if reason else "stream closed"
            session.end(CloseCode.NORMAL, f"connection closed: {detail}")
        else:
            session.end(CloseCode.NORMAL, "session task finished")

    async def _reader(self, session: Session, nursery: trio.Nursery) -> None:
        ws, node = session.ws, session.node
        answer, write_timeout = self.settings.answer_keepalives, self.settings.write_timeout
        while True:
            data = await ws.get_message()
            try:
                msg = codec.decode(data, max_size=limits.MAX_FRAME_BYTES)
            except codec.CodecError as exc:
                raise _SessionEnd(CloseCode.INVALID_PAYLOAD, f"invalid message: {exc}") from None
            op = msg.route.operation
            if op == Operation.KEEPALIVE:
                session.last_keepalive = trio.current_time()
                if answer:
                    # An unsolicited pong (RFC 6455 §5.5.3) lets the edge see a live link without
                    # pinging: one frame each way per heartbeat instead of three. Upstream edges
                    # ignore it. A slow edge only delays its own reader.
                    with trio.move_on_after(write_timeout) as write:
                        await ws.pong()
                    if write.cancelled_caught:
                        raise _SessionEnd(
                            CloseCode.KEEPALIVE_TIMEOUT, f"write blocked for {write_timeout:g}s"
                        )
                continue
            if op == Operation.RESPONSE:
                if session.delivery.ack(msg.parent_msg_id, trio.current_time()) is not None:
                    session.wake.set()  # a window slot freed up
                continue
            if op == Operation.ERROR:
                _log.warning(
                    "edge reported an error", node=node, parent_msg_id=msg.parent_msg_id, error=msg.content
                )
                continue
            try:
                prefixed = resources.add_node_prefix(msg.route.resource, node)
            except ValueError as exc:
                raise _SessionEnd(CloseCode.INVALID_PAYLOAD, f"invalid resource: {exc}") from None
            # A stalled consumer stops us reading this edge (keepalives included); that is not the
            # edge's fault, so liveness deadlines are suspended meanwhile and restart afterwards.
            session.paused = True
            started = trio.current_time()
            try:
                await self._upstream.send(_with_resource(msg, prefixed))
            finally:
                session.paused = False
                resumed = trio.current_time()
                if resumed - started >= UPSTREAM_STALL:
                    session.resumed_at = resumed

    async def _writer(self, session: Session, nursery: trio.Nursery) -> None:
        s = self.settings
        ws, delivery, stream = session.ws, session.delivery, session.stream
        next_ping = trio.current_time() + s.ping_every
        while True:
            now = trio.current_time()
            keepalive_due = max(session.last_keepalive, session.resumed_at) + s.keepalive_interval
            read_due = max(stream.last_rx, session.resumed_at) + s.read_deadline
            if session.paused:
                keepalive_due = read_due = math.inf
            if now >= keepalive_due:
                raise _SessionEnd(CloseCode.KEEPALIVE_TIMEOUT, f"no keepalive for {s.keepalive_interval:g}s")
            if now >= read_due:
                raise _SessionEnd(CloseCode.KEEPALIVE_TIMEOUT, f"nothing received for {s.read_deadline:g}s")
            if session.wake.is_set():
                session.wake = trio.Event()
            for msg in delivery.poll(now):
                _, wire = resources.strip_node_prefix(msg.route.resource)
                frame = codec.encode(_with_resource(msg, wire)).decode()
                with trio.move_on_after(s.write_timeout) as write:
                    await ws.send_message(frame)
                if write.cancelled_caught:
                    raise _SessionEnd(CloseCode.KEEPALIVE_TIMEOUT, f"write blocked for {s.write_timeout:g}s")
            now = trio.current_time()
            # Ping only a quiet link: an edge that sends keepalives (every upstream edge does) already
            # proves the receive path, so 5,000 healthy sessions cost no extra frames.
            next_ping = max(next_ping, stream.last_rx + s.ping_every)
            if now >= next_ping:
                nursery.start_soon(self._ping, ws, s.ping_every)
                next_ping = now + s.ping_every
            wake_at = min(delivery.next_deadline(now), keepalive_due, read_due, next_ping)
            if wake_at > now:
                with trio.move_on_at(wake_at):
                    await session.wake.wait()

    @staticmethod
    async def _ping(ws: Any, wait: float) -> None:
        # The pong only matters as received bytes (ActivityStream); the read deadline judges it.
        with trio.move_on_after(wait):
            with contextlib.suppress(ConnectionClosed):
                await ws.ping()

    async def _publish_event(self, node: str, op: Operation) -> None:
        wall = time.time()
        event = Message.new(
            source=CloudModule.CLOUDHUB,
            group=Group.RESOURCE,
            operation=op,
            resource=f"{resources.NODE_PREFIX}/{node}",
            content={"event_type": str(op), "timestamp": int(wall), "client_id": node},
            now_ms=int(wall * 1000),
        )
        try:
            await self._upstream.send(event)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            _log.warning("upstream channel closed; session event lost", node=node, event=str(op))


def _with_resource(msg: Message, resource: str) -> Message:
    return dataclasses.replace(msg, route=dataclasses.replace(msg.route, resource=resource))


def _is_node_resource(resource: str) -> bool:
    _, wire = resources.strip_node_prefix(resource)
    tokens = wire.split("/")
    return len(tokens) >= 2 and tokens[1] == ResourceType.NODE


def _remote(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return "?"
    return f"{host}:{port}"
