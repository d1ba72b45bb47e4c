"""The internal MQTT broker of mqttMode 0 and 1 (upstream's gomqtt broker on ``tcp://127.0.0.1:1884``).

Owns the listening socket and one task group per client connection; the broker's state lives in
:class:`~kubeedge.edge.eventbus.sessions.BrokerState` (QoS, retained messages, persistent sessions, queue
overflow policy are documented there). This module adds the connection rules:

- A connection must send CONNECT within :data:`~kubeedge.kit.limits.MQTT_CONNECT_TIMEOUT`; MQTT 3.1.1 (and
  3.1) only, others get CONNACK 1. An empty client id is given a generated one if the session is clean,
  and refused with CONNACK 2 otherwise.
- Keepalive: a client silent for 1.5 times its keepalive is disconnected (section 3.1.2.10) and its will
  published. A client that does not read what it is sent for :data:`~kubeedge.kit.limits.MQTT_SEND_TIMEOUT`
  is disconnected too.
- Client-id takeover: a second CONNECT with a client id in use closes the first connection (its will is
  published) before the new one is answered; a persistent session passes to the new connection.
- A malformed packet, a second CONNECT or a protocol violation closes only that connection (will
  published). At most :data:`~kubeedge.kit.limits.MQTT_MAX_CLIENTS` connections; past it a new one is closed.
- Publishers never wait for subscribers: a PUBLISH is routed into bounded per-session queues and each
  connection's writer drains its own queue.

Failures: a listen error (port in use, bad address) raises :class:`OSError` from :meth:`Broker.serve`;
per-connection errors are logged and end only that connection.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import trio

from kubeedge.edge.eventbus.sessions import BrokerState, Session
from kubeedge.kit import limits, log
from kubeedge.proto import mqtt

__all__ = ["Broker", "BrokerStats"]

_log = log.get(__name__)

_READ_BYTES = 64 * 1024


@dataclass
class BrokerStats:
    """Counters of one broker (for logs, tests and benchmarks)."""

    connections: int = 0
    """Connections accepted over the broker's life."""
    malformed: int = 0
    """Connections dropped for a malformed packet or protocol violation."""
    keepalive_expired: int = 0
    """Connections dropped for silence past 1.5x keepalive."""
    takeovers: int = 0
    """Connections closed because the same client id connected again."""
    refused: int = 0
    """Connections refused (too many clients, bad CONNACK conditions)."""
    published: int = 0
    """PUBLISH packets received from clients."""


class _ProtocolError(Exception):
    """A client broke the protocol in a way the codec cannot see (e.g. a second CONNECT)."""


@dataclass(eq=False)
class _Conn:
    stream: trio.SocketStream
    peer: str
    session: Session | None = None
    will: mqtt.Will | None = None
    wake: trio.Event = field(default_factory=trio.Event)
    send_lock: trio.Lock = field(default_factory=trio.Lock)
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    closed: trio.Event = field(default_factory=trio.Event)
    graceful: bool = False


class Broker:
    """An MQTT 3.1.1 broker on trio for the edge node.

    ``session_queue_size`` is ``mqttSessionQueueSize`` (upstream default 100). Use :meth:`serve` in a
    nursery; ``await nursery.start(broker.serve, host, port)`` returns the bound port (port 0 picks one).
    """

    def __init__(
        self,
        *,
        session_queue_size: int = 100,
        max_packet_bytes: int = limits.MQTT_MAX_PACKET_BYTES,
        max_clients: int = limits.MQTT_MAX_CLIENTS,
        connect_timeout: float = limits.MQTT_CONNECT_TIMEOUT,
        send_timeout: float = limits.MQTT_SEND_TIMEOUT,
    ) -> None:
        self.state = BrokerState(session_queue_size=session_queue_size)
        self.stats = BrokerStats()
        self.max_packet_bytes = max_packet_bytes
        self.max_clients = max_clients
        self.connect_timeout = connect_timeout
        self.send_timeout = send_timeout
        self._conns: dict[str, _Conn] = {}
        self._open = 0
        self._ids = itertools.count(1)

    @property
    def clients(self) -> int:
        """Connections currently open (connected or still before CONNECT)."""
        return self._open

    async def serve(
        self, host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen on ``host:port`` and serve clients until cancelled; reports the bound port when ready."""
        listeners = await trio.open_tcp_listeners(port, host=host)
        bound = listeners[0].socket.getsockname()[1]
        _log.info("mqtt broker listening", host=host, port=bound)
        async with trio.open_nursery() as nursery:
            task_status.started(bound)
            await trio.serve_listeners(self._handle, listeners, handler_nursery=nursery)

    async def _handle(self, stream: trio.SocketStream) -> None:
        peer = _peer(stream)
        if self._open >= self.max_clients:
            self.stats.refused += 1
            _log.warning("mqtt connection refused: too many clients", peer=peer, max_clients=self.max_clients)
            await stream.aclose()
            return
        self._open += 1
        self.stats.connections += 1
        conn = _Conn(stream, peer)
        try:
            with conn.scope:
                await self._serve_conn(conn)
        except Exception as exc:
            # One connection's failure must never end the broker (serve_listeners would re-raise it).
            if _is_disconnect(exc):
                _log.debug("mqtt connection lost", peer=peer, error=repr(exc))
            else:
                _log.exception("mqtt connection failed", peer=peer, error=repr(exc))
        finally:
            self._open -= 1
            self._closed(conn)
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await stream.aclose()
            conn.closed.set()

    def _closed(self, conn: _Conn) -> None:
        session = conn.session
        if session is None:
            return
        if self._conns.get(session.client_id) is conn:
            del self._conns[session.client_id]
        self.state.disconnect(session)
        if conn.will is not None and not conn.graceful:
            will = conn.will
            self._route(mqtt.Publish(will.topic, will.payload, min(will.qos, 1), will.retain))

    def _route(self, packet: mqtt.Publish) -> None:
        for session in self.state.publish(packet):
            target = self._conns.get(session.client_id)
            if target is not None:
                target.wake.set()

    async def _send(self, conn: _Conn, packets: list[mqtt.Packet]) -> None:
        data = b"".join(mqtt.encode(p) for p in packets)
        async with conn.send_lock:
            with trio.fail_after(self.send_timeout):
                await conn.stream.send_all(data)

    async def _serve_conn(self, conn: _Conn) -> None:
        decoder = mqtt.Decoder(self.max_packet_bytes)
        pending: list[mqtt.Packet] = []
        try:
            with trio.fail_after(self.connect_timeout):
                while not pending:
                    data = await conn.stream.receive_some(_READ_BYTES)
                    if not data:
                        return
                    pending = decoder.feed(data)
        except trio.TooSlowError:
            _log.info("mqtt connection closed: no CONNECT in time", peer=conn.peer)
            return
        except mqtt.MalformedPacketError as exc:
            self._malformed(conn, exc)
            return
        first = pending.pop(0)
        if not isinstance(first, mqtt.Connect):
            self._malformed(conn, _ProtocolError(f"first packet is {type(first).__name__}, not CONNECT"))
            return
        if not await self._accept(conn, first):
            return
        keepalive = first.keepalive
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._writer, conn)
            try:
                await self._on_packets(conn, pending)
                while not _ended(conn):
                    timeout = keepalive * 1.5 if keepalive else float("inf")
                    with trio.move_on_after(timeout) as idle:
                        data = await conn.stream.receive_some(_READ_BYTES)
                    if idle.cancelled_caught:
                        self.stats.keepalive_expired += 1
                        _log.info(
                            "mqtt client silent past 1.5x keepalive; disconnecting",
                            client_id=conn.session.client_id if conn.session else "",
                            keepalive_s=keepalive,
                        )
                        break
                    if not data:
                        break
                    await self._on_packets(conn, decoder.feed(data))
            except (mqtt.MalformedPacketError, _ProtocolError) as exc:
                self._malformed(conn, exc)
            nursery.cancel_scope.cancel()

    def _malformed(self, conn: _Conn, exc: Exception) -> None:
        self.stats.malformed += 1
        _log.warning(
            "mqtt client dropped: protocol violation",
            peer=conn.peer,
            client_id=conn.session.client_id if conn.session else "",
            error=str(exc),
        )

    async def _accept(self, conn: _Conn, packet: mqtt.Connect) -> bool:
        if (packet.protocol_name, packet.protocol_level) not in (("MQTT", 4), ("MQIsdp", 3)):
            self.stats.refused += 1
            await self._send(conn, [mqtt.ConnAck(False, mqtt.ConnAckCode.UNACCEPTABLE_PROTOCOL_VERSION)])
            return False
        client_id = packet.client_id
        if not client_id:
            if not packet.clean_session:
                self.stats.refused += 1
                await self._send(conn, [mqtt.ConnAck(False, mqtt.ConnAckCode.IDENTIFIER_REJECTED)])
                return False
            client_id = f"auto-{next(self._ids)}"
        old = self._conns.get(client_id)
        if old is not None:
            self.stats.takeovers += 1
            _log.info("mqtt client id taken over by a new connection", client_id=client_id, peer=conn.peer)
            old.scope.cancel()
            with trio.move_on_after(self.send_timeout):
                await old.closed.wait()
        ack, session = self.state.connect(packet, client_id)
        conn.session = session
        conn.will = packet.will
        self._conns[client_id] = conn
        await self._send(conn, [ack, *session.resend()])
        _log.debug(
            "mqtt client connected",
            client_id=client_id,
            peer=conn.peer,
            clean=packet.clean_session,
            session_present=ack.session_present,
        )
        return True

    async def _writer(self, conn: _Conn) -> None:
        session = conn.session
        assert session is not None
        while True:
            if not session.has_work():
                await conn.wake.wait()
                conn.wake = trio.Event()
                continue
            packets: list[mqtt.Packet] = list(session.take())
            await self._send(conn, packets)

    async def _on_packets(self, conn: _Conn, packets: list[mqtt.Packet]) -> None:
        replies: list[mqtt.Packet] = []
        for packet in packets:
            self._on_packet(conn, packet, replies)
            if _ended(conn):
                break
        if replies:
            await self._send(conn, replies)

    def _on_packet(self, conn: _Conn, packet: mqtt.Packet, replies: list[mqtt.Packet]) -> None:
        # Replies are collected, not sent: the caller sends all replies to one read in one write.
        session = conn.session
        assert session is not None
        match packet:
            case mqtt.Publish():
                self.stats.published += 1
                if packet.qos == 2:
                    assert packet.packet_id is not None
                    duplicate = packet.packet_id in session.incoming_qos2
                    session.incoming_qos2.add(packet.packet_id)
                    if not duplicate:
                        self._route(packet)
                    replies.append(mqtt.PubRec(packet.packet_id))
                    return
                self._route(packet)
                if packet.qos == 1:
                    assert packet.packet_id is not None
                    replies.append(mqtt.PubAck(packet.packet_id))
            case mqtt.PubAck(pid):
                if session.acknowledge(pid):
                    conn.wake.set()
            case mqtt.PubRel(pid):
                session.incoming_qos2.discard(pid)
                replies.append(mqtt.PubComp(pid))
            case mqtt.PubRec(pid) | mqtt.PubComp(pid):
                # We never send QoS 2, so these answer nothing we sent.
                raise _ProtocolError(f"{type(packet).__name__} {pid} for a QoS 2 message never sent")
            case mqtt.Subscribe():
                ack = self.state.subscribe(session, packet)
                replies.append(ack)
                if session.has_work():
                    conn.wake.set()
            case mqtt.Unsubscribe():
                replies.append(self.state.unsubscribe(session, packet))
            case mqtt.PingReq():
                replies.append(mqtt.PingResp())
            case mqtt.Disconnect():
                conn.graceful = True
            case _:
                raise _ProtocolError(f"a client may not send {type(packet).__name__}")


def _ended(conn: _Conn) -> bool:
    """The client sent DISCONNECT (a function, so that type narrowing does not freeze the flag)."""
    return conn.graceful


def _is_disconnect(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_disconnect(inner) for inner in exc.exceptions)
    return isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError | trio.TooSlowError | OSError)


def _peer(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return "?"
    return f"{host}:{port}"
