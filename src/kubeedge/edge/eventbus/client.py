"""EventBus's MQTT 3.1.1 client on trio, over the sans-io codec of :mod:`kubeedge.proto.mqtt`.

Owns one TCP (optionally TLS) connection to a broker: the CONNECT handshake, keepalive pings, SUBSCRIBE/UNSUBSCRIBE
with their acknowledgements, QoS 0/1 publishing with a bounded in-flight window, and the stream of
received messages (QoS 1 ones are acknowledged once the consumer has taken them: at least once).

Invariants: at most :data:`~kubeedge.kit.limits.MQTT_MAX_INFLIGHT` unacknowledged QoS 1 publishes (a
publish waits for room); received packets are bounded by
:data:`~kubeedge.kit.limits.MQTT_MAX_PACKET_BYTES`; a broker silent for 1.5x the keepalive is given up.
No reconnection here: the caller owns that policy (EventBus reconnects with jittered backoff).

Failures: :func:`open_client` raises :class:`ConnectionRefusedByBroker` for a CONNACK refusal,
:class:`ConnectionLostError` when an open connection ends (EOF, keepalive expiry, a malformed packet
from the broker, an acknowledgement that does not come within
:data:`~kubeedge.kit.limits.MQTT_ACK_TIMEOUT`), and :class:`OSError` when the broker cannot be reached.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import trio

from kubeedge.kit import limits, log
from kubeedge.proto import mqtt

__all__ = [
    "BrokerAddress",
    "Client",
    "ConnectionLostError",
    "ConnectionRefusedByBroker",
    "open_client",
    "parse_broker_url",
]

_log = log.get(__name__)

_READ_BYTES = 64 * 1024


class ConnectionLostError(Exception):
    """An open MQTT connection ended (the reason is in the message)."""


class ConnectionRefusedByBroker(ConnectionLostError):
    """The broker answered CONNECT with a refusal; ``code`` is the CONNACK return code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where a broker listens, from an upstream-style URL."""

    host: str
    port: int
    tls: bool
    """The scheme asks for TLS (``ssl://``, ``tls://``, ``mqtts://``)."""


_SCHEMES: Final = {"tcp": False, "mqtt": False, "ssl": True, "tls": True, "mqtts": True}


def parse_broker_url(url: str) -> BrokerAddress:
    """``tcp://host:port`` (or ``ssl://``/``tls://`` for TLS), upstream's mqttServerExternal form.

    Raises :class:`ValueError` naming the URL for another scheme, a missing host or a bad port.
    """
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise ValueError(f"MQTT broker URL {url!r}: scheme must be tcp://, ssl:// or tls:// (host:port)")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"MQTT broker URL {url!r}: port is not a number in 0..65535") from None
    if not parts.hostname or port is None:
        raise ValueError(f"MQTT broker URL {url!r}: needs a host and a port")
    return BrokerAddress(parts.hostname, port, _SCHEMES[parts.scheme])


@dataclass(eq=False)
class _Waiter:
    event: trio.Event
    packet: mqtt.Packet | None = None


class Client:
    """A connected MQTT client; get one from :func:`open_client`."""

    def __init__(
        self, stream: trio.abc.Stream, client_id: str, keepalive: int, max_packet_bytes: int
    ) -> None:
        self.client_id = client_id
        self.keepalive = keepalive
        self.session_present = False
        self._stream = stream
        self._decoder = mqtt.Decoder(max_packet_bytes)
        self._send_lock = trio.Lock()
        self._window = trio.Semaphore(limits.MQTT_MAX_INFLIGHT)
        self._waiters: dict[tuple[type, int], _Waiter] = {}
        self._inflight: set[int] = set()
        self._next_pid = 1
        self._last_received = trio.current_time()
        self._lost: str | None = None
        self._cancel: trio.CancelScope | None = None
        # Zero buffer: the reader hands each message over only when the consumer takes it, so a slow
        # consumer slows the broker's deliveries (TCP backpressure) instead of growing memory.
        self._messages_in, self.messages = trio.open_memory_channel[mqtt.Publish](0)
        """Received PUBLISH packets, in order."""

    # --- public ------------------------------------------------------------------------------------------

    async def subscribe(self, topic_filters: Sequence[str], qos: int = 1) -> tuple[int, ...]:
        """Subscribe and return the SUBACK codes (granted QoS, or 0x80 for a refusal) in order."""
        for topic_filter in topic_filters:
            mqtt.validate_topic_filter(topic_filter)
        pid = self._pid()
        ack = await self._request(
            mqtt.Subscribe(pid, tuple((t, qos) for t in topic_filters)), mqtt.SubAck, pid
        )
        assert isinstance(ack, mqtt.SubAck)
        return ack.return_codes

    async def unsubscribe(self, topic_filters: Sequence[str]) -> None:
        """Unsubscribe and wait for UNSUBACK."""
        pid = self._pid()
        await self._request(mqtt.Unsubscribe(pid, tuple(topic_filters)), mqtt.UnsubAck, pid)

    async def publish(self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False) -> None:
        """Send a message. QoS 1 (2 is sent as 1) waits for room in the in-flight window, not for PUBACK."""
        mqtt.validate_topic_name(topic)
        if qos == 0:
            await self._send(mqtt.Publish(topic, payload, 0, retain))
            return
        await self._window.acquire()
        pid = self._pid()
        self._inflight.add(pid)
        await self._send(mqtt.Publish(topic, payload, 1, retain, False, pid))

    async def wait_acknowledged(self) -> None:
        """Wait until every QoS 1 publish sent so far has been acknowledged."""
        for _ in range(limits.MQTT_MAX_INFLIGHT):
            await self._window.acquire()
        for _ in range(limits.MQTT_MAX_INFLIGHT):
            self._window.release()

    async def disconnect(self) -> None:
        """Send DISCONNECT (the broker then discards the will)."""
        await self._send(mqtt.Disconnect())

    # --- internals ---------------------------------------------------------------------------------------

    def _pid(self) -> int:
        while True:
            pid = self._next_pid
            self._next_pid = pid % 0xFFFF + 1
            if pid not in self._inflight and all(key[1] != pid for key in self._waiters):
                return pid

    async def _send(self, packet: mqtt.Packet) -> None:
        data = mqtt.encode(packet)
        async with self._send_lock:
            try:
                with trio.fail_after(limits.MQTT_SEND_TIMEOUT):
                    await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, trio.TooSlowError) as exc:
                raise ConnectionLostError(
                    f"MQTT connection {self.client_id!r}: send failed: {exc!r}"
                ) from None

    async def _request(self, packet: mqtt.Packet, answer: type, pid: int) -> mqtt.Packet:
        waiter = _Waiter(trio.Event())
        key = (answer, pid)
        self._waiters[key] = waiter
        try:
            await self._send(packet)
            with trio.move_on_after(limits.MQTT_ACK_TIMEOUT):
                await waiter.event.wait()
        finally:
            del self._waiters[key]
        if waiter.packet is None:
            self._lose(f"no {answer.__name__} within {limits.MQTT_ACK_TIMEOUT:g} s")
            raise ConnectionLostError(f"MQTT connection {self.client_id!r}: no {answer.__name__} in time")
        return waiter.packet

    def _lose(self, reason: str) -> None:
        if self._lost is None:
            self._lost = reason
        if self._cancel is not None:
            self._cancel.cancel()

    async def _read(self) -> list[mqtt.Packet]:
        data = await self._stream.receive_some(_READ_BYTES)
        if not data:
            raise ConnectionLostError("broker closed the connection")
        self._last_received = trio.current_time()
        return self._decoder.feed(data)

    async def _reader(self) -> None:
        try:
            while True:
                for packet in await self._read():
                    await self._dispatch(packet)
        except (ConnectionLostError, mqtt.MalformedPacketError) as exc:
            self._lose(str(exc))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._lose(f"read failed: {exc!r}")

    async def _dispatch(self, packet: mqtt.Packet) -> None:
        match packet:
            case mqtt.Publish(packet_id=pid, qos=qos):
                await self._messages_in.send(packet)
                if qos == 1 and pid is not None:
                    await self._send(mqtt.PubAck(pid))
                elif qos == 2 and pid is not None:
                    await self._send(mqtt.PubRec(pid))
            case mqtt.PubAck(pid):
                if pid in self._inflight:
                    self._inflight.discard(pid)
                    self._window.release()
            case mqtt.PubRel(pid):
                await self._send(mqtt.PubComp(pid))
            case mqtt.SubAck(pid) | mqtt.UnsubAck(pid):
                waiter = self._waiters.get((type(packet), pid))
                if waiter is not None:
                    waiter.packet = packet
                    waiter.event.set()
            case mqtt.PingResp():
                pass
            case _:
                raise ConnectionLostError(f"broker sent an unexpected {type(packet).__name__}")

    async def _pinger(self) -> None:
        if not self.keepalive:
            await trio.sleep_forever()
        while True:
            await trio.sleep(self.keepalive / 2)
            if trio.current_time() - self._last_received > self.keepalive * 1.5:
                self._lose(f"broker silent for more than {self.keepalive * 1.5:g} s")
                return
            try:
                await self._send(mqtt.PingReq())
            except ConnectionLostError as exc:
                self._lose(str(exc))
                return


@asynccontextmanager
async def open_client(
    host: str,
    port: int,
    *,
    client_id: str,
    clean_session: bool = True,
    keepalive: int = 30,
    will: mqtt.Will | None = None,
    username: str | None = None,
    password: bytes | None = None,
    max_packet_bytes: int = limits.MQTT_MAX_PACKET_BYTES,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[Client]:
    """Connect (over TLS when ``ssl_context`` is given), yield a :class:`Client`, disconnect at the end.

    If the connection is lost while the block runs, the block is cancelled and
    :class:`ConnectionLostError` is raised from the ``async with``.
    """
    stream: trio.abc.Stream
    with trio.fail_after(limits.MQTT_ACK_TIMEOUT):
        stream = await trio.open_tcp_stream(host, port)
    try:
        if ssl_context is not None:
            stream = trio.SSLStream(stream, ssl_context, server_hostname=host)
            try:
                with trio.fail_after(limits.MQTT_ACK_TIMEOUT):
                    await stream.do_handshake()
            except (trio.TooSlowError, trio.BrokenResourceError) as exc:
                cause = exc.__cause__ or exc
                raise ConnectionLostError(f"TLS handshake with {host}:{port} failed: {cause!r}") from None
        client = Client(stream, client_id, keepalive, max_packet_bytes)
        connect = mqtt.Connect(client_id, clean_session, keepalive, will, username, password)
        await client._send(connect)
        try:
            with trio.fail_after(limits.MQTT_ACK_TIMEOUT):
                packets: list[mqtt.Packet] = []
                while not packets:
                    packets = await client._read()
        except (trio.TooSlowError, mqtt.MalformedPacketError, OSError, trio.BrokenResourceError) as exc:
            raise ConnectionLostError(
                f"MQTT connect to {host}:{port} as {client_id!r} failed: {exc!r}"
            ) from None
        ack = packets.pop(0)
        if not isinstance(ack, mqtt.ConnAck):
            raise ConnectionLostError(f"broker {host}:{port} answered CONNECT with {type(ack).__name__}")
        if ack.return_code != mqtt.ConnAckCode.ACCEPTED:
            raise ConnectionRefusedByBroker(
                f"broker {host}:{port} refused client {client_id!r}: CONNACK code {ack.return_code}",
                ack.return_code,
            )
        client.session_present = ack.session_present
        async with trio.open_nursery() as nursery:
            client._cancel = nursery.cancel_scope
            nursery.start_soon(client._reader)
            nursery.start_soon(client._pinger)
            try:
                for packet in packets:
                    await client._dispatch(packet)
                yield client
            except ConnectionLostError as exc:
                # Raised by the block itself (a send failed): keep it out of the nursery's exception group.
                client._lose(str(exc))
            else:
                if client._lost is None:
                    with trio.move_on_after(1):
                        await client.disconnect()
            nursery.cancel_scope.cancel()
        if client._lost is not None:
            raise ConnectionLostError(f"MQTT connection {client_id!r} to {host}:{port} lost: {client._lost}")
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await stream.aclose()
