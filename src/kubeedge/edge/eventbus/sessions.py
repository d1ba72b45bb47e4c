"""The edge broker's state, sans-io: sessions, subscriptions, retained messages, QoS 1 bookkeeping.

Owns everything the internal broker (mqttMode 0/1) knows that outlives a packet: one :class:`Session`
per client id (its subscriptions, its queue of messages not yet sent, the QoS 1 messages sent but not
acknowledged, the QoS 2 packet ids received but not released) and the retained message of each topic.
The trio shell (:mod:`kubeedge.edge.eventbus.broker`) feeds it decoded packets and sends what it returns.

Invariants:

- QoS: deliveries are QoS 0 or 1. A QoS 2 subscription is granted QoS 1 (the SUBACK says so); a QoS 2
  PUBLISH from a client is acknowledged with the full PUBREC/PUBREL/PUBCOMP exchange and delivered once
  (a duplicate with a packet id still awaiting PUBREL is not delivered again), then forwarded at QoS 1.
- Bounded queue per session (``mqttSessionQueueSize``): when it is full the *oldest* queued message is
  dropped and counted (:attr:`Session.dropped`). Device topics carry state, so the newest is the one worth
  keeping, and a stuck subscriber then costs a fixed amount of memory and never slows the publisher.
  At most :data:`~kubeedge.kit.limits.MQTT_MAX_INFLIGHT` QoS 1 messages are unacknowledged per session.
- Persistent sessions (clean session = 0) keep subscriptions, queued QoS 1 messages and unacknowledged
  messages while the client is away; on reconnection the unacknowledged ones are sent again with DUP set
  before anything else. QoS 0 messages are not queued for an absent client (mosquitto's default).
  Clean sessions are discarded on disconnection. Sessions live in memory only.
- Retained: the last retained PUBLISH per topic (empty payload clears it), at most
  :data:`~kubeedge.kit.limits.MQTT_MAX_RETAINED` topics; sent with RETAIN set to new matching subscriptions.
  Forwarded to existing subscribers with RETAIN cleared (section 3.3.1.3).

Failures: nothing here raises for a peer's behaviour; limits are enforced by refusing (SUBACK 0x80, a
message not retained) and counting.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from kubeedge.kit import limits, log
from kubeedge.proto import mqtt

__all__ = ["MAX_QOS", "BrokerState", "Delivery", "Session"]

_log = log.get(__name__)

MAX_QOS = 1
"""Highest QoS the broker delivers at (QoS 2 is downgraded to 1)."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message queued for one session."""

    topic: str
    payload: bytes
    qos: int
    retain: bool = False


@dataclass(eq=False)
class Session:
    """A client id's state; survives disconnection when ``clean`` is false."""

    client_id: str
    clean: bool
    queue_size: int
    subscriptions: dict[str, int] = field(default_factory=dict)
    """Filter -> granted QoS."""
    queue: deque[Delivery] = field(default_factory=deque)
    inflight: OrderedDict[int, mqtt.Publish] = field(default_factory=OrderedDict)
    """Packet id -> QoS 1 PUBLISH sent and not acknowledged, oldest first."""
    incoming_qos2: set[int] = field(default_factory=set)
    """Packet ids of QoS 2 PUBLISHes received (PUBREC sent) and not yet released."""
    connected: bool = False
    dropped: int = 0
    """Messages dropped from the full queue (oldest first) over the session's life."""
    _next_pid: int = 1

    def enqueue(self, delivery: Delivery) -> None:
        """Queue ``delivery``; when full, drop the oldest queued message first."""
        if not self.connected and delivery.qos == 0:
            return
        if len(self.queue) >= self.queue_size:
            self.queue.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                _log.warning(
                    "mqtt session queue full; dropping oldest messages",
                    client_id=self.client_id,
                    queue_size=self.queue_size,
                    dropped=self.dropped,
                )
        self.queue.append(delivery)

    def _pid(self) -> int:
        # Skip ids still in flight: 65535 ids and a window of 20 never run out.
        while True:
            pid = self._next_pid
            self._next_pid = pid % 0xFFFF + 1
            if pid not in self.inflight:
                return pid

    def take(self, max_inflight: int = limits.MQTT_MAX_INFLIGHT) -> list[mqtt.Publish]:
        """Move queued messages into PUBLISH packets to send now, filling the in-flight window."""
        out: list[mqtt.Publish] = []
        while self.queue and (self.queue[0].qos == 0 or len(self.inflight) < max_inflight):
            d = self.queue.popleft()
            if d.qos == 0:
                out.append(mqtt.Publish(d.topic, d.payload, 0, d.retain))
                continue
            pid = self._pid()
            pub = mqtt.Publish(d.topic, d.payload, 1, d.retain, False, pid)
            self.inflight[pid] = pub
            out.append(pub)
        return out

    def has_work(self, max_inflight: int = limits.MQTT_MAX_INFLIGHT) -> bool:
        """Whether :meth:`take` would return something now."""
        return bool(self.queue) and (self.queue[0].qos == 0 or len(self.inflight) < max_inflight)

    def acknowledge(self, packet_id: int) -> bool:
        """A PUBACK arrived; returns whether it matched a message in flight."""
        return self.inflight.pop(packet_id, None) is not None

    def resend(self) -> list[mqtt.Publish]:
        """The unacknowledged messages again, DUP set, oldest first (after a reconnection)."""
        again = [
            mqtt.Publish(p.topic, p.payload, p.qos, p.retain, True, p.packet_id)
            for p in self.inflight.values()
        ]
        for pub in again:
            assert pub.packet_id is not None
            self.inflight[pub.packet_id] = pub
        return again

    def granted(self, topic: str) -> int | None:
        """Highest granted QoS among this session's filters matching ``topic`` (None: no match)."""
        best: int | None = None
        for topic_filter, qos in self.subscriptions.items():
            if mqtt.topic_matches(topic_filter, topic) and (best is None or qos > best):
                best = qos
        return best


class BrokerState:
    """Sessions and retained messages of one broker; the trio shell drives it.

    ``session_queue_size`` is ``mqttSessionQueueSize``. Raises :class:`ValueError` if it is not in
    ``1..MQTT_MAX_SESSION_QUEUE``.
    """

    def __init__(
        self,
        *,
        session_queue_size: int = 100,
        max_retained: int = limits.MQTT_MAX_RETAINED,
        max_subscriptions: int = limits.MQTT_MAX_SUBSCRIPTIONS,
    ) -> None:
        if not 1 <= session_queue_size <= limits.MQTT_MAX_SESSION_QUEUE:
            raise ValueError(
                f"mqttSessionQueueSize {session_queue_size!r}: must be in 1..{limits.MQTT_MAX_SESSION_QUEUE}"
            )
        self.session_queue_size = session_queue_size
        self.max_retained = max_retained
        self.max_subscriptions = max_subscriptions
        self.sessions: dict[str, Session] = {}
        self.retained: dict[str, mqtt.Publish] = {}

    def connect(self, packet: mqtt.Connect, client_id: str) -> tuple[mqtt.ConnAck, Session]:
        """Open (or resume) the session of ``client_id``; the caller has closed any previous connection."""
        old = self.sessions.get(client_id)
        if packet.clean_session or old is None or old.clean:
            session = Session(client_id, packet.clean_session, self.session_queue_size)
            self.sessions[client_id] = session
            present = False
        else:
            session = old
            present = True
        session.connected = True
        return mqtt.ConnAck(session_present=present), session

    def disconnect(self, session: Session) -> None:
        """The client's connection has ended: forget a clean session, keep a persistent one."""
        session.connected = False
        if session.clean and self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]

    def publish(self, packet: mqtt.Publish) -> list[Session]:
        """Route a client's (or the broker's own) PUBLISH; returns the connected sessions given work."""
        if packet.retain:
            self._retain(packet)
        woken: list[Session] = []
        for session in self.sessions.values():
            granted = session.granted(packet.topic)
            if granted is None:
                continue
            session.enqueue(Delivery(packet.topic, packet.payload, min(packet.qos, granted, MAX_QOS)))
            if session.connected:
                woken.append(session)
        return woken

    def _retain(self, packet: mqtt.Publish) -> None:
        if not packet.payload:
            self.retained.pop(packet.topic, None)
        elif packet.topic in self.retained or len(self.retained) < self.max_retained:
            self.retained[packet.topic] = packet
        else:
            _log.warning(
                "retained message store full; message forwarded but not retained",
                topic=packet.topic,
                max_retained=self.max_retained,
            )

    def subscribe(self, session: Session, packet: mqtt.Subscribe) -> mqtt.SubAck:
        """Add the filters (granting at most QoS 1) and queue matching retained messages."""
        codes: list[int] = []
        for topic_filter, requested in packet.subscriptions:
            if (
                topic_filter not in session.subscriptions
                and len(session.subscriptions) >= self.max_subscriptions
            ):
                _log.warning(
                    "subscription refused: client holds too many",
                    client_id=session.client_id,
                    topic_filter=topic_filter,
                    max_subscriptions=self.max_subscriptions,
                )
                codes.append(mqtt.SUBACK_FAILURE)
                continue
            granted = min(requested, MAX_QOS)
            session.subscriptions[topic_filter] = granted
            codes.append(granted)
            for topic, retained in self.retained.items():
                if mqtt.topic_matches(topic_filter, topic):
                    session.enqueue(
                        Delivery(topic, retained.payload, min(retained.qos, granted), retain=True)
                    )
        return mqtt.SubAck(packet.packet_id, tuple(codes))

    def unsubscribe(self, session: Session, packet: mqtt.Unsubscribe) -> mqtt.UnsubAck:
        """Drop the filters (unknown ones are ignored, as the spec asks)."""
        for topic_filter in packet.topics:
            session.subscriptions.pop(topic_filter, None)
        return mqtt.UnsubAck(packet.packet_id)
