"""EdgeHub: the edge end of the cloud-edge websocket link.

Owns the one connection to CloudHub: dialling ``wss://<server>/<projectID>/<node>/events``
with the node's client certificate and the ``node_id``/``project_id``/
``ConnectionUse: msg`` headers, the keepalive message every ``heartbeat``, a
websocket ping whenever the cloud shows no life within half a heartbeat of a
keepalive, and a read deadline (a link silent for ``read_deadline``, default
2 x heartbeat, is dead even if TCP says otherwise), reconnecting with full-jitter
exponential backoff, the edge-to-cloud token bucket, and the bounded inbound FIFO.

Consumers use :meth:`EdgeHub.receive` (cloud messages and the edge-local
``connect`` broadcasts ``cloud_connected``/``cloud_disconnected``),
:meth:`EdgeHub.send` and :meth:`EdgeHub.durably_handled`, which is the only way a
cloud message gets acknowledged: the ack (op ``response``, content ``"OK"``,
beehive reply rules) is sent once the consumer says the message is safely stored.
A renewed client certificate arrives through :meth:`EdgeHub.use_ssl_context`
(see :mod:`kubeedge.edge.edgehub.rotation`), which redials at once with it.

Invariants: at most one live connection; the inbound FIFO never holds more than
``inbound_queue`` cloud messages (the oldest cloud message is dropped, as
upstream; the cloud re-sends what was not acked) and never drops a connect
broadcast. Failure: every connection problem ends in a log line (with the close
code and reason when the cloud refused us) and a jittered redial; :meth:`run`
only returns by cancellation. :meth:`send` raises :class:`NotConnected` while
there is no session.
"""

from __future__ import annotations

import contextlib
import math
import random
import ssl
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

import trio
import trio_websocket
from trio_websocket import ConnectionClosed, ConnectionRejected

from kubeedge.edge.edgehub.pacing import (
    MESSAGE_BURST,
    MESSAGE_QPS,
    RECONNECT_BASE,
    RECONNECT_CAP,
    TokenBucket,
)
from kubeedge.kit import limits, log, wslink
from kubeedge.kit.backoff import Backoff
from kubeedge.kit.wslink import CloseCode
from kubeedge.proto import codec
from kubeedge.proto.message import Message
from kubeedge.proto.vocab import (
    ACK_CONTENT,
    CLOUD_CONNECTED,
    CLOUD_DISCONNECTED,
    CONNECT_OPERATION,
    CONNECT_RESOURCE,
    CONNECT_SOURCE,
    KEEPALIVE_CONTENT,
    KEEPALIVE_RESOURCE,
    KEEPALIVE_SOURCE,
    Group,
    Operation,
)

_log = log.get(__name__)

HEARTBEAT: Final = 15.0
"""``edgeHub.heartbeat`` default (seconds)."""
HANDSHAKE_TIMEOUT: Final = 30.0
"""``edgeHub.websocket.handshakeTimeout`` default (seconds)."""
WRITE_DEADLINE: Final = 15.0
"""``edgeHub.websocket.writeDeadline`` default (seconds; unused upstream, enforced here)."""


class NotConnected(Exception):
    """There is no session to the cloud right now."""


@dataclass(frozen=True, slots=True)
class EdgeHubSettings:
    """EdgeHub settings (upstream ``edgeHub`` keys in comments)."""

    server: str
    """``websocket.server``: ``host:port`` of CloudHub (``[v6]:port`` for IPv6)."""
    node_name: str
    project_id: str = wslink.DEFAULT_PROJECT_ID
    heartbeat: float = HEARTBEAT
    """``heartbeat``: keepalive message and ping period."""
    read_deadline: float | None = None
    """No bytes for this long ends the session; default ``2 * heartbeat``."""
    handshake_timeout: float = HANDSHAKE_TIMEOUT
    """``websocket.handshakeTimeout``: TCP + TLS + upgrade."""
    write_deadline: float = WRITE_DEADLINE
    """``websocket.writeDeadline``: a write blocked this long ends the session."""
    message_qps: float = MESSAGE_QPS
    """``messageQPS``."""
    message_burst: int = MESSAGE_BURST
    """``messageBurst``."""
    reconnect_base: float = RECONNECT_BASE
    reconnect_cap: float = RECONNECT_CAP
    inbound_queue: int = limits.EDGE_INBOUND_QUEUE

    def __post_init__(self) -> None:
        if not self.node_name:
            raise ValueError("edgeHub needs a node name")
        host, _, port = self.server.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"websocket.server {self.server!r}: expected host:port")
        if self.heartbeat <= 0:
            raise ValueError(f"heartbeat must be > 0, got {self.heartbeat}")
        if self.inbound_queue < 1:
            raise ValueError(f"inbound queue must be >= 1, got {self.inbound_queue}")

    @property
    def host(self) -> str:
        """Server host (brackets of an IPv6 literal removed)."""
        return self.server.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        """Server port."""
        return int(self.server.rpartition(":")[2])

    @property
    def effective_read_deadline(self) -> float:
        """Read deadline in force."""
        return self.read_deadline if self.read_deadline is not None else 2 * self.heartbeat


def is_connect_event(msg: Message) -> bool:
    """True for the edge-local ``connect`` broadcast (never sent to or acked with the cloud)."""
    return msg.route.source == CONNECT_SOURCE and msg.route.operation == CONNECT_OPERATION


def keepalive_message(now_ms: int) -> Message:
    """The edge heartbeat exactly as upstream sends it."""
    return Message.new(
        source=KEEPALIVE_SOURCE,
        group=Group.RESOURCE,
        operation=Operation.KEEPALIVE,
        resource=KEEPALIVE_RESOURCE,
        content=KEEPALIVE_CONTENT,
        now_ms=now_ms,
    )


class _Inbox:
    """Bounded FIFO: drops the oldest cloud message when full, never a connect broadcast."""

    def __init__(self, size: int) -> None:
        self._items: deque[Message] = deque()
        self._size = size
        self._lot = trio.lowlevel.ParkingLot()
        self.dropped = 0

    def put(self, msg: Message) -> None:
        if len(self._items) >= self._size and not is_connect_event(msg):
            for i, old in enumerate(self._items):
                if not is_connect_event(old):
                    del self._items[i]
                    self.dropped += 1
                    _log.warning("inbound queue full; dropped the oldest cloud message", msg_id=old.msg_id)
                    break
        self._items.append(msg)
        self._lot.unpark()

    async def get(self) -> Message:
        while not self._items:
            await self._lot.park()
        return self._items.popleft()

    def __len__(self) -> int:
        return len(self._items)


class EdgeHub:
    """The edge end of the link; run :meth:`run` in a nursery."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        settings: EdgeHubSettings,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self._ssl = ssl_context
        self._backoff = Backoff(settings.reconnect_base, settings.reconnect_cap, rng or random.Random())
        self._bucket = TokenBucket(settings.message_qps, settings.message_burst)
        self._inbox = _Inbox(settings.inbound_queue)
        self._ws: Any = None
        self._session_scope: trio.CancelScope | None = None
        self._link_dead = False
        self._announced = False
        self._redial_now = False
        self.last_close: tuple[int, str] | None = None
        """Code and reason of the last websocket close seen from the cloud."""
        self.dials = 0
        """Connection attempts so far."""
        self.pings_sent = 0
        """Websocket pings sent (only when the cloud did not answer a keepalive)."""

    # --- public API --------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while a session is up and announced (``cloud_connected`` was broadcast)."""
        return self._announced and self._ws is not None

    @property
    def inbound_dropped(self) -> int:
        """Cloud messages dropped because the inbound FIFO was full."""
        return self._inbox.dropped

    async def receive(self) -> Message:
        """The next inbound message: a cloud message, or a ``connect`` broadcast."""
        return await self._inbox.get()

    async def send(self, msg: Message) -> None:
        """Send ``msg`` to the cloud, paced by the token bucket; raises :class:`NotConnected`."""
        if not self.connected:
            raise NotConnected(f"not connected to {self.settings.server}")
        delay = self._bucket.reserve(trio.current_time())
        if delay > 0:
            await trio.sleep(delay)
        await self._write(msg)

    async def durably_handled(self, msg: Message) -> None:
        """Acknowledge a cloud message once it is durably handled (no-op for connect broadcasts).

        If the link is down the ack is dropped: the cloud's queue died with the
        connection and its reconcile re-sends anything unacknowledged.
        """
        if is_connect_event(msg):
            return
        ack = msg.reply(ACK_CONTENT, now_ms=int(time.time() * 1000))
        try:
            await self.send(ack)
        except NotConnected:
            _log.debug("ack dropped: not connected", parent_msg_id=msg.msg_id)

    def use_ssl_context(self, ssl_context: ssl.SSLContext) -> None:
        """Dial with ``ssl_context`` from now on (a renewed certificate) and reconnect at once.

        The current session, if any, is closed normally and redialled without backoff delay; a dial in
        progress with the old context is closed as soon as it completes.
        """
        self._ssl = ssl_context
        self._redial_now = True
        if self._session_scope is not None:
            _log.info("reconnecting to present a new certificate", server=self.settings.server)
            self._session_scope.cancel()

    async def run(self, *, task_status: trio.TaskStatus[EdgeHub] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep a session to the cloud up until cancelled."""
        task_status.started(self)
        s = self.settings
        while True:
            started = trio.current_time()
            self.dials += 1
            try:
                await self._connect_and_serve()
            except Exception as exc:
                # Supervision boundary: whatever broke this connection, log it and redial.
                leaf = _first_leaf(exc)
                if isinstance(leaf, ConnectionRejected):
                    _log.error(
                        "cloud rejected the websocket upgrade", server=s.server, status=leaf.status_code
                    )
                else:
                    _log.warning(
                        "connection to cloud failed", server=s.server, error=wslink.describe_error(leaf)
                    )
            if trio.current_time() - started >= s.heartbeat:
                self._backoff.reset()
            if self._redial_now:
                self._redial_now = False
                continue
            delay = self._backoff.next_delay()
            _log.info("reconnecting to cloud", server=s.server, delay=round(delay, 3))
            await trio.sleep(delay)

    # --- internals ---------------------------------------------------------------------------------

    async def _connect_and_serve(self) -> None:
        context = self._ssl
        async with trio.open_nursery() as nursery:
            ws, stream = await self._dial(nursery, context)
            if ws is None:
                nursery.cancel_scope.cancel()
                return
            self._ws = ws
            orderly = False
            self._link_dead = self._announced = False
            try:
                with trio.CancelScope() as scope:
                    self._session_scope = scope
                    if self._ssl is not context:
                        # A new certificate arrived while this dial was under way: present it instead.
                        scope.cancel()
                    nursery.start_soon(self._heartbeat, ws, stream, scope)
                    nursery.start_soon(self._announce, ws, stream, trio.current_time())
                    await self._reader(ws)
                orderly = True
            finally:
                self._ws = None
                self._session_scope = None
                if self._announced:
                    self._inbox.put(_connect_event(CLOUD_DISCONNECTED))
                with trio.CancelScope(shield=True):
                    # Cancelled from outside (shutdown): the websocket reader is gone, don't wait for
                    # a closing handshake that cannot complete.
                    patient = orderly and not self._link_dead
                    await wslink.close_bounded(
                        ws, CloseCode.NORMAL, "edge closing", grace=wslink.CLOSE_TIMEOUT if patient else 0.05
                    )
                    # trio-websocket leaves the transport open when the peer closed first.
                    await trio.aclose_forcefully(stream)
                nursery.cancel_scope.cancel()

    async def _announce(self, ws: Any, stream: wslink.ActivityStream, upgraded_at: float) -> None:
        """Broadcast ``cloud_connected`` once the cloud shows life after the upgrade.

        A cloud that refuses us (nodeLimit, node authorization) accepts the upgrade and
        closes at once; announcing on the upgrade alone would flap ``connected``/``disconnected``.
        The first keepalive's pong (or the first ping's, from an upstream cloud) is the proof.
        """
        await stream.wait_received_after(upgraded_at)
        # Let trio-websocket's reader parse what arrived first: it may be a close frame.
        await trio.lowlevel.checkpoint()
        if ws.closed is None and self._ws is ws:
            self._announce_now()

    def _announce_now(self) -> None:
        if not self._announced:
            self._announced = True
            _log.info("connected to cloud", server=self.settings.server, node=self.settings.node_name)
            self._inbox.put(_connect_event(CLOUD_CONNECTED))

    async def _dial(
        self, nursery: trio.Nursery, context: ssl.SSLContext
    ) -> tuple[Any, wslink.ActivityStream]:
        s = self.settings
        headers = [
            (wslink.HEADER_NODE_ID.encode(), s.node_name.encode()),
            (wslink.HEADER_PROJECT_ID.encode(), s.project_id.encode()),
            (wslink.HEADER_CONNECTION_USE.encode(), wslink.CONNECTION_USE_MSG.encode()),
        ]
        ws: Any = None
        with trio.fail_after(s.handshake_timeout):
            tcp = await trio.open_tcp_stream(s.host, s.port)
            tls = trio.SSLStream(tcp, context, server_hostname=s.host, https_compatible=False)
            stream = wslink.ActivityStream(tls)
            # trio-websocket's annotation is narrower than what it needs (any trio Stream).
            transport: Any = stream
            try:
                await tls.do_handshake()
                async with trio.open_nursery() as race:

                    async def upgrade() -> None:
                        nonlocal ws
                        ws = await trio_websocket.wrap_client_stream(
                            nursery,
                            transport,
                            s.host,
                            wslink.events_path(s.project_id, s.node_name),
                            extra_headers=headers,
                            message_queue_size=1,
                            max_message_size=limits.MAX_FRAME_BYTES,
                        )
                        race.cancel_scope.cancel()

                    async def watch() -> None:
                        # trio-websocket waits forever if the transport dies mid-upgrade
                        # (e.g. the TLS 1.3 alert for a refused client certificate).
                        await stream.gone.wait()
                        race.cancel_scope.cancel()

                    race.start_soon(upgrade)
                    race.start_soon(watch)
            except BaseException:
                await trio.aclose_forcefully(tls)
                raise
            if ws is None:
                _log.error(
                    "cloud refused the connection",
                    server=s.server,
                    error=wslink.describe_error(stream.error),
                )
                await trio.aclose_forcefully(tls)
        return ws, stream

    async def _reader(self, ws: Any) -> None:
        while True:
            try:
                data = await ws.get_message()
            except ConnectionClosed as exc:
                self._note_close(exc)
                return
            try:
                msg = codec.decode(data, max_size=limits.MAX_FRAME_BYTES)
            except codec.CodecError as exc:
                _log.error("invalid message from cloud; reconnecting", error=str(exc))
                await wslink.close_bounded(ws, CloseCode.INVALID_PAYLOAD, f"invalid message: {exc}")
                return
            self._announce_now()  # a cloud message is proof of life too, and must follow cloud_connected
            self._inbox.put(msg)

    def _note_close(self, exc: ConnectionClosed) -> None:
        reason = exc.reason
        if reason is None:
            return
        self.last_close = (reason.code, reason.reason or "")
        try:
            refusal = CloseCode(reason.code).refusal
        except ValueError:
            refusal = False
        log_fn = _log.error if refusal else _log.warning
        log_fn(
            "cloud closed the connection",
            server=self.settings.server,
            code=reason.code,
            name=reason.name,
            reason=reason.reason or "",
        )

    async def _heartbeat(self, ws: Any, stream: wslink.ActivityStream, scope: trio.CancelScope) -> None:
        """Keepalive every heartbeat; ping when the cloud shows no life half a heartbeat after it.

        Our CloudHub answers each keepalive with an unsolicited pong, so against it only the
        first keepalive is followed by a ping; an upstream cloudcore answers nothing, and then
        every keepalive is followed by a ping. Either way bytes arrive about once per heartbeat, and a link silent for the
        read deadline is declared dead.
        """
        s = self.settings
        deadline = s.effective_read_deadline
        next_beat = trio.current_time()
        beat_at = probe_at = math.inf
        first = True
        async with trio.open_nursery() as pings:
            while True:
                now = trio.current_time()
                if now - stream.last_rx >= deadline:
                    _log.warning(
                        "nothing received from cloud; link presumed dead",
                        silent_for=round(now - stream.last_rx, 3),
                    )
                    self._link_dead = True
                    scope.cancel()
                    return
                if now >= next_beat:
                    next_beat = now + s.heartbeat
                    try:
                        await self._write(keepalive_message(int(time.time() * 1000)))
                    except NotConnected:
                        # The reader sees the same close (with its code and reason) and ends the session.
                        return
                    # The first keepalive is probed at once: its answer announces the session.
                    beat_at, probe_at = now, now if first else now + s.heartbeat / 2
                    first = False
                if now >= probe_at:
                    probe_at = math.inf
                    if stream.last_rx < beat_at:
                        self.pings_sent += 1
                        pings.start_soon(self._ping, ws, s.heartbeat)
                await trio.sleep_until(min(next_beat, probe_at, stream.last_rx + deadline))

    @staticmethod
    async def _ping(ws: Any, wait: float) -> None:
        # Only the pong's arrival matters (ActivityStream.last_rx); the read deadline judges it.
        with trio.move_on_after(wait):
            with contextlib.suppress(ConnectionClosed):
                await ws.ping()

    async def _write(self, msg: Message) -> None:
        ws = self._ws
        if ws is None:
            raise NotConnected(f"not connected to {self.settings.server}")
        frame = codec.encode(msg).decode()
        with trio.move_on_after(self.settings.write_deadline) as write:
            try:
                await ws.send_message(frame)
            except ConnectionClosed as exc:
                raise NotConnected(f"connection to {self.settings.server} closed") from exc
        if write.cancelled_caught:
            _log.warning(
                "write to cloud blocked; dropping the connection", deadline=self.settings.write_deadline
            )
            if self._session_scope is not None:
                self._session_scope.cancel()
            raise NotConnected("write deadline exceeded")


def _connect_event(content: str) -> Message:
    return Message.new(
        source=CONNECT_SOURCE,
        group="",
        operation=CONNECT_OPERATION,
        resource=CONNECT_RESOURCE,
        content=content,
        now_ms=int(time.time() * 1000),
    )


def _first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
