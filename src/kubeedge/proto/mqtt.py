"""MQTT 3.1.1 packets: typed packets, their encoder, an incremental bounded decoder, topic rules.

Owns the wire format shared by the edge broker (mqttMode 0/1) and EventBus's own client: the fourteen
control packets of MQTT 3.1.1 (OASIS standard, 2014) as frozen dataclasses, :func:`encode` for each,
:class:`Decoder` that takes bytes as they arrive and returns whole packets, and topic validation and
matching (:func:`validate_topic_name`, :func:`validate_topic_filter`, :func:`topic_matches`).

Invariants:

- Sans-io: no sockets, no clock. The decoder never buffers more than one incomplete packet, and a packet
  is never larger than the decoder's ``max_packet_bytes`` (checked from the fixed header, before the
  body arrives), so a peer cannot make it hold more than that plus the bytes of one read.
- Every string on the wire is UTF-8 without U+0000, surrogates or non-characters; topic names and filters
  also refuse C0/C1 control characters (the spec lets a receiver refuse them; devices never need them),
  and are at most :data:`MAX_TOPIC_BYTES`; client ids at most :data:`MAX_CLIENT_ID_BYTES`.
- Topic filters follow section 4.7: ``#`` only as the whole last level, ``+`` only as a whole level. A
  filter whose first level is a wildcard never matches a topic starting with ``$`` (so ``#`` does not
  see ``$hw/...``), while ``$hw/#`` and exact ``$``-filters do.

Failures: anything malformed raises :class:`MalformedPacketError` (a :class:`ValueError`) with a message
naming the packet and the field; after that the decoder is poisoned and the connection must be closed.
Encoding a packet that breaks the rules also raises :class:`MalformedPacketError`.
"""

from __future__ import annotations

import enum
import re
import struct
from dataclasses import dataclass
from typing import Final

__all__ = [
    "MAX_CLIENT_ID_BYTES",
    "MAX_PACKET_BYTES",
    "MAX_TOPIC_BYTES",
    "SUBACK_FAILURE",
    "ConnAck",
    "ConnAckCode",
    "Connect",
    "Decoder",
    "Disconnect",
    "MalformedPacketError",
    "Packet",
    "PacketType",
    "PingReq",
    "PingResp",
    "PubAck",
    "PubComp",
    "PubRec",
    "PubRel",
    "Publish",
    "SubAck",
    "Subscribe",
    "UnsubAck",
    "Unsubscribe",
    "Will",
    "encode",
    "topic_matches",
    "validate_topic_filter",
    "validate_topic_name",
]

MAX_TOPIC_BYTES: Final = 1024
"""Longest topic name or filter accepted. KubeEdge's longest, ``$hw/events/device/<ns 63>/<name 253>/twin/update/
result``, is about 350 bytes; the spec's own limit (65535) would let one subscription cost 64 KiB of memory.
Mirrored by ``kit.limits.MQTT_MAX_TOPIC_BYTES`` (proto cannot import kit; a test keeps them equal)."""

MAX_CLIENT_ID_BYTES: Final = 256
"""Longest client id accepted; the spec only promises 23, upstream's ``hub-client-sub-<10 digits>`` is 25.
Mirrored by ``kit.limits.MQTT_MAX_CLIENT_ID_BYTES``."""

MAX_PACKET_BYTES: Final = 268_435_455
"""Largest remaining length MQTT can express (four length bytes); decoders take a smaller bound."""

PROTOCOL_NAME: Final = "MQTT"
PROTOCOL_LEVEL: Final = 4
"""MQTT 3.1.1. Level 3 (``MQIsdp``, MQTT 3.1) is also decoded; the broker decides what to accept."""


class MalformedPacketError(ValueError):
    """Bytes that are not a valid MQTT 3.1.1 packet, or a packet that cannot be encoded."""


class PacketType(enum.IntEnum):
    """Control packet types (fixed header, high nibble)."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14


class ConnAckCode(enum.IntEnum):
    """CONNACK return codes."""

    ACCEPTED = 0
    UNACCEPTABLE_PROTOCOL_VERSION = 1
    IDENTIFIER_REJECTED = 2
    SERVER_UNAVAILABLE = 3
    BAD_USERNAME_OR_PASSWORD = 4
    NOT_AUTHORIZED = 5


SUBACK_FAILURE: Final = 0x80
"""SUBACK return code for a refused subscription."""


@dataclass(frozen=True, slots=True)
class Will:
    """Last-will message of a CONNECT."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


@dataclass(frozen=True, slots=True)
class Connect:
    """CONNECT: the first packet a client sends."""

    client_id: str
    clean_session: bool = True
    keepalive: int = 60
    """Seconds; 0 turns the keepalive off."""
    will: Will | None = None
    username: str | None = None
    password: bytes | None = None
    protocol_name: str = PROTOCOL_NAME
    protocol_level: int = PROTOCOL_LEVEL


@dataclass(frozen=True, slots=True)
class ConnAck:
    """CONNACK: the server's answer to CONNECT."""

    session_present: bool = False
    return_code: int = ConnAckCode.ACCEPTED


@dataclass(frozen=True, slots=True)
class Publish:
    """PUBLISH: an application message. ``packet_id`` is set exactly when ``qos`` > 0."""

    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None


@dataclass(frozen=True, slots=True)
class PubAck:
    """PUBACK: QoS 1 acknowledgement."""

    packet_id: int


@dataclass(frozen=True, slots=True)
class PubRec:
    """PUBREC: QoS 2, step 1 of the receiver."""

    packet_id: int


@dataclass(frozen=True, slots=True)
class PubRel:
    """PUBREL: QoS 2, release by the sender."""

    packet_id: int


@dataclass(frozen=True, slots=True)
class PubComp:
    """PUBCOMP: QoS 2, completion by the receiver."""

    packet_id: int


@dataclass(frozen=True, slots=True)
class Subscribe:
    """SUBSCRIBE: ``subscriptions`` are (filter, requested QoS) pairs, at least one."""

    packet_id: int
    subscriptions: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class SubAck:
    """SUBACK: one return code (granted QoS, or 0x80) per requested filter."""

    packet_id: int
    return_codes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """UNSUBSCRIBE: filters to drop, at least one."""

    packet_id: int
    topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UnsubAck:
    """UNSUBACK."""

    packet_id: int


@dataclass(frozen=True, slots=True)
class PingReq:
    """PINGREQ: client keepalive."""


@dataclass(frozen=True, slots=True)
class PingResp:
    """PINGRESP: answer to PINGREQ."""


@dataclass(frozen=True, slots=True)
class Disconnect:
    """DISCONNECT: clean client shutdown (no will is sent)."""


Packet = (
    Connect
    | ConnAck
    | Publish
    | PubAck
    | PubRec
    | PubRel
    | PubComp
    | Subscribe
    | SubAck
    | Unsubscribe
    | UnsubAck
    | PingReq
    | PingResp
    | Disconnect
)
"""Any MQTT 3.1.1 control packet."""


# --- strings and topics ----------------------------------------------------------------------------------


# Forbidden everywhere: U+0000, surrogates (only reachable from str, never from valid UTF-8), non-characters.
_FORBIDDEN: Final = re.compile("[\x00\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]")
# Also forbidden in topics and client ids: C0 and C1 control characters.
_FORBIDDEN_OR_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]")


def _check_text(text: str, what: str, *, controls: bool = False) -> None:
    found = (_FORBIDDEN_OR_CONTROL if controls else _FORBIDDEN).search(text)
    if found is not None:
        raise MalformedPacketError(f"{what}: forbidden character U+{ord(found.group()):04X}")


def validate_topic_name(topic: str) -> None:
    """Check a PUBLISH topic name: non-empty, no wildcards, bounded, valid characters.

    Raises :class:`MalformedPacketError` naming what is wrong.
    """
    if not topic:
        raise MalformedPacketError("topic name is empty")
    if len(topic.encode("utf-8", "surrogatepass")) > MAX_TOPIC_BYTES:
        raise MalformedPacketError(f"topic name longer than {MAX_TOPIC_BYTES} bytes")
    if "+" in topic or "#" in topic:
        raise MalformedPacketError(f"topic name {topic[:80]!r} contains a wildcard")
    _check_text(topic, "topic name", controls=True)


def validate_topic_filter(topic_filter: str) -> None:
    """Check a SUBSCRIBE/UNSUBSCRIBE filter (section 4.7.1). Raises :class:`MalformedPacketError`."""
    if not topic_filter:
        raise MalformedPacketError("topic filter is empty")
    if len(topic_filter.encode("utf-8", "surrogatepass")) > MAX_TOPIC_BYTES:
        raise MalformedPacketError(f"topic filter longer than {MAX_TOPIC_BYTES} bytes")
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            raise MalformedPacketError(
                f"topic filter {topic_filter[:80]!r}: '#' must be the whole last level"
            )
        if "+" in level and level != "+":
            raise MalformedPacketError(f"topic filter {topic_filter[:80]!r}: '+' must be a whole level")
    _check_text(topic_filter, "topic filter", controls=True)


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether a (valid) filter matches a (valid) topic name, with section 4.7.2's ``$`` rule."""
    filter_levels = topic_filter.split("/")
    if topic.startswith("$") and filter_levels[0] in ("+", "#"):
        return False
    topic_levels = topic.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            # "sport/#" also matches "sport" itself (the parent level).
            return True
        if index >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[index]:
            return False
    return len(filter_levels) == len(topic_levels)


# --- encoding --------------------------------------------------------------------------------------------


def _utf8(text: str, what: str, *, controls: bool = False) -> bytes:
    _check_text(text, what, controls=controls)
    data = text.encode("utf-8")
    if len(data) > 0xFFFF:
        raise MalformedPacketError(f"{what}: longer than 65535 bytes")
    return struct.pack("!H", len(data)) + data


def _blob(data: bytes, what: str) -> bytes:
    if len(data) > 0xFFFF:
        raise MalformedPacketError(f"{what}: longer than 65535 bytes")
    return struct.pack("!H", len(data)) + data


def _check_pid(packet_id: int | None, what: str) -> int:
    if packet_id is None or not 1 <= packet_id <= 0xFFFF:
        raise MalformedPacketError(f"{what}: packet id {packet_id!r} not in 1..65535")
    return packet_id


def _check_qos(qos: int, what: str) -> None:
    if qos not in (0, 1, 2):
        raise MalformedPacketError(f"{what}: QoS {qos!r} not in 0..2")


def _frame(first: int, body: bytes) -> bytes:
    length = len(body)
    if length > MAX_PACKET_BYTES:
        raise MalformedPacketError(f"packet body of {length} bytes exceeds MQTT's limit")
    out = bytearray([first])
    while True:
        digit, length = length % 128, length // 128
        out.append(digit | (0x80 if length else 0))
        if not length:
            break
    out += body
    return bytes(out)


def _encode_connect(p: Connect) -> bytes:
    if len(p.client_id.encode("utf-8", "surrogatepass")) > MAX_CLIENT_ID_BYTES:
        raise MalformedPacketError(f"CONNECT: client id longer than {MAX_CLIENT_ID_BYTES} bytes")
    if not 0 <= p.keepalive <= 0xFFFF:
        raise MalformedPacketError(f"CONNECT: keepalive {p.keepalive} not in 0..65535")
    if p.password is not None and p.username is None:
        raise MalformedPacketError("CONNECT: a password needs a user name")
    flags = 0x02 if p.clean_session else 0
    payload = _utf8(p.client_id, "CONNECT client id", controls=True)
    if p.will is not None:
        _check_qos(p.will.qos, "CONNECT will")
        validate_topic_name(p.will.topic)
        flags |= 0x04 | (p.will.qos << 3) | (0x20 if p.will.retain else 0)
        payload += _utf8(p.will.topic, "CONNECT will topic") + _blob(p.will.payload, "CONNECT will payload")
    if p.username is not None:
        flags |= 0x80
        payload += _utf8(p.username, "CONNECT user name")
    if p.password is not None:
        flags |= 0x40
        payload += _blob(p.password, "CONNECT password")
    variable = _utf8(p.protocol_name, "CONNECT protocol name") + struct.pack(
        "!BBH", p.protocol_level & 0xFF, flags, p.keepalive
    )
    return _frame(0x10, variable + payload)


def encode(packet: Packet) -> bytes:
    """The wire bytes of ``packet``. Raises :class:`MalformedPacketError` if it breaks the rules."""
    match packet:
        case Connect():
            return _encode_connect(packet)
        case ConnAck(session_present, return_code):
            if not 0 <= return_code <= 0xFF:
                raise MalformedPacketError(f"CONNACK: return code {return_code} not a byte")
            return _frame(0x20, bytes([1 if session_present else 0, return_code]))
        case Publish(topic, payload, qos, retain, dup, packet_id):
            _check_qos(qos, "PUBLISH")
            validate_topic_name(topic)
            if dup and qos == 0:
                raise MalformedPacketError("PUBLISH: DUP set on a QoS 0 message")
            first = 0x30 | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
            body = _utf8(topic, "PUBLISH topic", controls=True)
            if qos:
                body += struct.pack("!H", _check_pid(packet_id, "PUBLISH"))
            elif packet_id is not None:
                raise MalformedPacketError("PUBLISH: QoS 0 message carries a packet id")
            return _frame(first, body + payload)
        case PubAck(pid):
            return _frame(0x40, struct.pack("!H", _check_pid(pid, "PUBACK")))
        case PubRec(pid):
            return _frame(0x50, struct.pack("!H", _check_pid(pid, "PUBREC")))
        case PubRel(pid):
            return _frame(0x62, struct.pack("!H", _check_pid(pid, "PUBREL")))
        case PubComp(pid):
            return _frame(0x70, struct.pack("!H", _check_pid(pid, "PUBCOMP")))
        case Subscribe(pid, subscriptions):
            if not subscriptions:
                raise MalformedPacketError("SUBSCRIBE: no topic filter")
            body = struct.pack("!H", _check_pid(pid, "SUBSCRIBE"))
            for topic_filter, qos in subscriptions:
                validate_topic_filter(topic_filter)
                _check_qos(qos, "SUBSCRIBE")
                body += _utf8(topic_filter, "SUBSCRIBE filter", controls=True) + bytes([qos])
            return _frame(0x82, body)
        case SubAck(pid, codes):
            if not codes or any(code not in (0, 1, 2, SUBACK_FAILURE) for code in codes):
                raise MalformedPacketError(f"SUBACK: return codes {codes!r} invalid")
            return _frame(0x90, struct.pack("!H", _check_pid(pid, "SUBACK")) + bytes(codes))
        case Unsubscribe(pid, topics):
            if not topics:
                raise MalformedPacketError("UNSUBSCRIBE: no topic filter")
            body = struct.pack("!H", _check_pid(pid, "UNSUBSCRIBE"))
            for topic_filter in topics:
                validate_topic_filter(topic_filter)
                body += _utf8(topic_filter, "UNSUBSCRIBE filter", controls=True)
            return _frame(0xA2, body)
        case UnsubAck(pid):
            return _frame(0xB0, struct.pack("!H", _check_pid(pid, "UNSUBACK")))
        case PingReq():
            return b"\xc0\x00"
        case PingResp():
            return b"\xd0\x00"
        case Disconnect():
            return b"\xe0\x00"
    raise MalformedPacketError(f"not an MQTT packet: {type(packet).__name__}")  # pragma: no cover


# --- decoding --------------------------------------------------------------------------------------------


class _Reader:
    """Cursor over one packet body; running past the end is a malformed packet."""

    __slots__ = ("data", "pos", "what")

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def left(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int, field: str) -> bytes:
        if self.left() < n:
            raise MalformedPacketError(f"{self.what}: truncated {field}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def byte(self, field: str) -> int:
        return self.take(1, field)[0]

    def u16(self, field: str) -> int:
        value: int = struct.unpack("!H", self.take(2, field))[0]
        return value

    def blob(self, field: str) -> bytes:
        return self.take(self.u16(field + " length"), field)

    def text(self, field: str, *, controls: bool = False, limit: int | None = None) -> str:
        raw = self.blob(field)
        if limit is not None and len(raw) > limit:
            raise MalformedPacketError(f"{self.what}: {field} longer than {limit} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedPacketError(f"{self.what}: {field} is not valid UTF-8 ({exc.reason})") from None
        _check_text(text, f"{self.what} {field}", controls=controls)
        return text

    def pid(self) -> int:
        pid = self.u16("packet id")
        if pid == 0:
            raise MalformedPacketError(f"{self.what}: packet id 0")
        return pid

    def end(self) -> None:
        if self.left():
            raise MalformedPacketError(f"{self.what}: {self.left()} unexpected trailing bytes")


_FIXED_FLAGS: Final = {
    PacketType.PUBREL: 0x2,
    PacketType.SUBSCRIBE: 0x2,
    PacketType.UNSUBSCRIBE: 0x2,
}


def _decode_connect(r: _Reader) -> Connect:
    name = r.text("protocol name")
    level = r.byte("protocol level")
    if name not in ("MQTT", "MQIsdp"):
        raise MalformedPacketError(f"CONNECT: unknown protocol name {name[:20]!r}")
    flags = r.byte("connect flags")
    if flags & 0x01:
        raise MalformedPacketError("CONNECT: reserved flag set")
    keepalive = r.u16("keepalive")
    client_id = r.text("client id", controls=True, limit=MAX_CLIENT_ID_BYTES)
    will = None
    will_qos = (flags >> 3) & 0x03
    if flags & 0x04:
        if will_qos == 3:
            raise MalformedPacketError("CONNECT: will QoS 3")
        will_topic = r.text("will topic", controls=True, limit=MAX_TOPIC_BYTES)
        try:
            validate_topic_name(will_topic)
        except MalformedPacketError as exc:
            raise MalformedPacketError(f"CONNECT will: {exc}") from None
        will = Will(will_topic, r.blob("will payload"), will_qos, bool(flags & 0x20))
    elif will_qos or flags & 0x20:
        raise MalformedPacketError("CONNECT: will QoS/retain set without a will")
    username = r.text("user name") if flags & 0x80 else None
    if flags & 0x40 and not flags & 0x80:
        raise MalformedPacketError("CONNECT: password flag without user name flag")
    password = r.blob("password") if flags & 0x40 else None
    r.end()
    return Connect(client_id, bool(flags & 0x02), keepalive, will, username, password, name, level)


def _decode_body(kind: PacketType, flags: int, body: bytes) -> Packet:
    r = _Reader(body, kind.name)
    packet: Packet
    match kind:
        case PacketType.CONNECT:
            return _decode_connect(r)
        case PacketType.CONNACK:
            ack_flags = r.byte("acknowledge flags")
            if ack_flags & 0xFE:
                raise MalformedPacketError("CONNACK: reserved flags set")
            packet = ConnAck(bool(ack_flags), r.byte("return code"))
        case PacketType.PUBLISH:
            qos = (flags >> 1) & 0x03
            if qos == 3:
                raise MalformedPacketError("PUBLISH: QoS 3")
            dup = bool(flags & 0x08)
            if dup and qos == 0:
                raise MalformedPacketError("PUBLISH: DUP set on a QoS 0 message")
            topic = r.text("topic", controls=True, limit=MAX_TOPIC_BYTES)
            validate_topic_name(topic)
            pid = r.pid() if qos else None
            return Publish(topic, r.take(r.left(), "payload"), qos, bool(flags & 0x01), dup, pid)
        case PacketType.PUBACK:
            packet = PubAck(r.pid())
        case PacketType.PUBREC:
            packet = PubRec(r.pid())
        case PacketType.PUBREL:
            packet = PubRel(r.pid())
        case PacketType.PUBCOMP:
            packet = PubComp(r.pid())
        case PacketType.SUBSCRIBE:
            pid = r.pid()
            subs: list[tuple[str, int]] = []
            while r.left():
                topic_filter = r.text("topic filter", controls=True, limit=MAX_TOPIC_BYTES)
                validate_topic_filter(topic_filter)
                qos = r.byte("requested QoS")
                if qos > 2:
                    raise MalformedPacketError(f"SUBSCRIBE: requested QoS byte {qos:#x} invalid")
                subs.append((topic_filter, qos))
            if not subs:
                raise MalformedPacketError("SUBSCRIBE: no topic filter")
            return Subscribe(pid, tuple(subs))
        case PacketType.SUBACK:
            pid = r.pid()
            codes = tuple(r.take(r.left(), "return codes"))
            if not codes or any(code not in (0, 1, 2, SUBACK_FAILURE) for code in codes):
                raise MalformedPacketError("SUBACK: invalid or missing return codes")
            return SubAck(pid, codes)
        case PacketType.UNSUBSCRIBE:
            pid = r.pid()
            topics: list[str] = []
            while r.left():
                topic_filter = r.text("topic filter", controls=True, limit=MAX_TOPIC_BYTES)
                validate_topic_filter(topic_filter)
                topics.append(topic_filter)
            if not topics:
                raise MalformedPacketError("UNSUBSCRIBE: no topic filter")
            return Unsubscribe(pid, tuple(topics))
        case PacketType.UNSUBACK:
            packet = UnsubAck(r.pid())
        case PacketType.PINGREQ:
            packet = PingReq()
        case PacketType.PINGRESP:
            packet = PingResp()
        case PacketType.DISCONNECT:
            packet = Disconnect()
    r.end()
    return packet


class Decoder:
    """Incremental decoder: :meth:`feed` bytes as they arrive, get the whole packets they complete.

    ``max_packet_bytes`` bounds the remaining length of any packet (checked as soon as the fixed
    header is in, so an oversized packet is refused before its body is read). After a
    :class:`MalformedPacketError` every further :meth:`feed` raises it again: drop the connection.
    """

    def __init__(self, max_packet_bytes: int) -> None:
        if not 2 <= max_packet_bytes <= MAX_PACKET_BYTES:
            raise ValueError(f"max_packet_bytes {max_packet_bytes!r}: must be in 2..{MAX_PACKET_BYTES}")
        self.max_packet_bytes = max_packet_bytes
        self._buf = bytearray()
        self._error: MalformedPacketError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete packet."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray) -> list[Packet]:
        """Add ``data`` and return every packet now complete, in order.

        Raises :class:`MalformedPacketError` on the first malformed packet (packets before it in the
        same call are lost with the connection).
        """
        if self._error is not None:
            raise self._error
        self._buf += data
        packets: list[Packet] = []
        pos = 0
        try:
            # Parse at an offset and trim once: trimming per packet would move the buffer per packet.
            while True:
                parsed = self._next(pos)
                if parsed is None:
                    break
                packet, pos = parsed
                packets.append(packet)
        except MalformedPacketError as exc:
            self._error = exc
            self._buf.clear()
            raise
        del self._buf[:pos]
        return packets

    def _next(self, pos: int) -> tuple[Packet, int] | None:
        buf = self._buf
        if pos >= len(buf):
            return None
        first = buf[pos]
        try:
            kind = PacketType(first >> 4)
        except ValueError:
            raise MalformedPacketError(f"reserved packet type {first >> 4}") from None
        flags = first & 0x0F
        if kind is not PacketType.PUBLISH and flags != _FIXED_FLAGS.get(kind, 0):
            raise MalformedPacketError(f"{kind.name}: fixed header flags {flags:#x} invalid")
        length = 0
        multiplier = 1
        index = pos + 1
        while True:
            if index - pos > 4:
                raise MalformedPacketError(f"{kind.name}: remaining length longer than four bytes")
            if index >= len(buf):
                return None
            digit = buf[index]
            length += (digit & 0x7F) * multiplier
            multiplier *= 128
            index += 1
            if not digit & 0x80:
                break
        if length > self.max_packet_bytes:
            raise MalformedPacketError(
                f"{kind.name}: remaining length {length} exceeds the limit of {self.max_packet_bytes} bytes"
            )
        if len(buf) < index + length:
            return None
        body = bytes(buf[index : index + length])
        return _decode_body(kind, flags, body), index + length
