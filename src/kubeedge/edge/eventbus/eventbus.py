"""The EventBus beehive module (name ``eventbus``, group ``bus``): MQTT topics in, MQTT publishes out.

Owns the broker links of the configured ``mqttMode`` (0: run the internal broker on
``mqttServerInternal`` and link to it; 1: that and the external broker; 2, the default: link to
``mqttServerExternal``). Each link is two MQTT connections, as upstream: ``hub-client-sub-<10 digits of
Unix ms>`` (clean session, subscribes at QoS 1) and ``hub-client-pub-<...>`` (publishes at QoS 1 without
retain to the external broker; ``mqttQOS``/``mqttRetain`` to the internal one). The external broker is
reached over TLS when ``eventBusTLS.enable`` (CA, client certificate and key from its files) or when its
URL says ``ssl://``/``tls://`` (system CAs unless ``eventBusTLS`` is enabled).

Routing, as upstream's ``OnSubMessageReceived``:

- ``$hw/events/device/...`` and ``$hw/events/node/...`` -> group ``twin``: source ``bus``, group ``user``,
  op ``response``, resource = URL-safe base64 (padded) of the topic, content = payload as a string.
- any other topic -> group ``hub`` (EdgeHub): source ``bus``, group ``user``, op ``upload``,
  resource = topic, content = payload as a string.
- inbox (cloud via EdgeHub, source ``router_eventbus``; DeviceTwin): ``publish`` (resource = topic,
  content = payload string, or JSON of any other value), ``subscribe``/``unsubscribe`` (resource = the
  filter, kept in MetaStore's ``sub_topics`` so it survives restarts), ``message``
  (``{"message": {"topic": ..., ...}}``: the inner object published as JSON to its topic), ``get_result``
  of ``auth_info`` (published to ``$hw/events/node/<node>/authInfo/get/result``).

Invariants: the subscription set of every sub connection is the upstream set plus ``sub_topics``, applied
again after every reconnection; links reconnect forever with full-jitter backoff (upstream: a fixed 5 s);
while a pub connection is down its messages wait in a queue of
:data:`~kubeedge.kit.limits.EVENTBUS_PUBLISH_QUEUE` (oldest dropped first; upstream drops them all).

Counters for the status board: :attr:`EventBus.messages_in`/:attr:`~EventBus.messages_out` and, per link,
whether each connection is up and why it last went down.

Failures: a bad config (URL, queue size, unreadable ``eventBusTLS`` files) raises :class:`ValueError` from
the constructor; a broker that cannot be
reached is retried and logged, never fatal; a message for a group that is not running (no DeviceTwin) is
logged and dropped; a bad inbox message is logged and skipped.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import trio

from kubeedge.edge.eventbus.broker import Broker
from kubeedge.edge.eventbus.client import Client, ConnectionLostError, open_client, parse_broker_url
from kubeedge.edge.metamanager.store import MetaStore
from kubeedge.kit import beehive, limits, log
from kubeedge.kit.backoff import Backoff
from kubeedge.kit.config import edgecore as config
from kubeedge.proto import mqtt
from kubeedge.proto.message import Message
from kubeedge.proto.vocab import EdgeGroup, EdgeModule, Group, Operation

__all__ = [
    "MQTT_MODE_BOTH",
    "MQTT_MODE_EXTERNAL",
    "MQTT_MODE_INTERNAL",
    "RECONNECT_BACKOFF_BASE",
    "RECONNECT_BACKOFF_CAP",
    "SUB_TOPICS",
    "EventBus",
    "route_mqtt_message",
]

_log = log.get(__name__)

MQTT_MODE_INTERNAL: Final = 0
MQTT_MODE_BOTH: Final = 1
MQTT_MODE_EXTERNAL: Final = 2

SUB_TOPICS: Final = (
    "$hw/events/upload/#",
    "$hw/events/device/+/+/state/update",
    "$hw/events/device/+/+/twin/+",
    "$hw/events/node/+/membership/get",
    "SYS/dis/upload_records",
    "+/user/#",
)
"""Filters every sub connection holds (upstream's SubTopics, device ids ``<ns>/<name>`` since v1.16)."""

TWIN_PREFIXES: Final = ("$hw/events/device", "$hw/events/node")
"""Topics with these prefixes go to DeviceTwin; all others to EdgeHub."""

RECONNECT_BACKOFF_BASE: Final = 0.5
"""First reconnect delay ceiling, in seconds."""
RECONNECT_BACKOFF_CAP: Final = 5.0
"""Largest reconnect delay ceiling: upstream retries every 5 s; jitter spreads many nodes' retries."""
RECONNECT_STABLE_AFTER: Final = 30.0
"""A connection that lasted this long resets the backoff."""
KEEPALIVE: Final = 30
"""Keepalive of EventBus's connections, in seconds (paho's default that upstream uses)."""
SOURCE_BUS: Final = "bus"
"""``route.source`` of what EventBus sends (upstream uses the group name ``bus`` as source)."""


def route_mqtt_message(topic: str, payload: bytes, *, now_ms: int) -> tuple[str, Message]:
    """(target group, beehive message) for an MQTT message received by EventBus."""
    content = payload.decode("utf-8", "replace")
    if topic.startswith(TWIN_PREFIXES):
        resource = base64.urlsafe_b64encode(topic.encode("utf-8")).decode("ascii")
        msg = Message.new(
            source=SOURCE_BUS,
            group=Group.USER,
            operation=Operation.RESPONSE,
            resource=resource,
            content=content,
            now_ms=now_ms,
        )
        return EdgeGroup.TWIN, msg
    msg = Message.new(
        source=SOURCE_BUS,
        group=Group.USER,
        operation=Operation.UPLOAD,
        resource=topic,
        content=content,
        now_ms=now_ms,
    )
    return EdgeGroup.HUB, msg


@dataclass(eq=False)
class _Link:
    """The two connections to one broker, and what waits to be published there."""

    name: str
    host: str
    port: int
    qos: int
    retain: bool
    tls: ssl.SSLContext | None = None
    outbox: deque[tuple[str, bytes]] = field(
        default_factory=lambda: deque(maxlen=limits.EVENTBUS_PUBLISH_QUEUE)
    )
    wake: trio.Event = field(default_factory=trio.Event)
    sub: Client | None = None
    pub_connected: bool = False
    """Whether the pub connection is up (the status board reads it)."""
    last_error: str = ""
    """Why a connection to this broker last went down ("" if it never did)."""
    dropped: int = 0
    subscribed: trio.Event = field(default_factory=trio.Event)
    """Set each time the sub connection has (re)applied its subscriptions (tests and logs use it)."""

    def offer(self, topic: str, payload: bytes) -> None:
        if len(self.outbox) == self.outbox.maxlen:
            self.dropped += 1
            _log.warning(
                "eventbus publish queue full; dropping the oldest message",
                broker=self.name,
                queue=self.outbox.maxlen,
                dropped=self.dropped,
            )
        self.outbox.append((topic, payload))
        self.wake.set()


class EventBus:
    """The ``eventbus`` module. ``store`` keeps ``sub_topics`` (None: kept in memory only).

    ``node_name`` names the node in the auth-info result topic. ``clock`` returns Unix ms for client ids
    (default: the bus clock). After start, :attr:`internal_port` is the internal broker's bound port.
    """

    name = EdgeModule.EVENTBUS.value
    group = EdgeGroup.BUS.value

    def __init__(
        self,
        cfg: config.EventBus,
        *,
        store: MetaStore | None = None,
        node_name: str = "",
        clock: Callable[[], int] | None = None,
    ) -> None:
        if cfg.mqtt_mode not in (MQTT_MODE_INTERNAL, MQTT_MODE_BOTH, MQTT_MODE_EXTERNAL):
            raise ValueError(f"modules.eventBus.mqttMode {cfg.mqtt_mode!r}: must be 0, 1 or 2")
        queue = cfg.mqtt_session_queue_size
        if not 1 <= queue <= limits.MQTT_MAX_SESSION_QUEUE:
            raise ValueError(
                f"modules.eventBus.mqttSessionQueueSize {queue!r}: must be in 1..{limits.MQTT_MAX_SESSION_QUEUE}"
            )
        self.cfg = cfg
        self.store = store
        self.node_name = node_name
        self._clock = clock
        self.broker: Broker | None = None
        self.internal_port: int | None = None
        self.links: list[_Link] = []
        self.messages_in = 0
        """MQTT messages received from the brokers since start (the status board reads it)."""
        self.messages_out = 0
        """MQTT publishes the brokers accepted since start (one per broker in mode 1)."""
        self._extra: list[str] = []
        # Validate URLs now: a typo is a config error, not a reconnect loop.
        self._internal = parse_broker_url(cfg.mqtt_server_internal)
        if self._internal.tls:
            raise ValueError(
                f"modules.eventBus.mqttServerInternal {cfg.mqtt_server_internal!r}: must be tcp://"
            )
        self._external = parse_broker_url(cfg.mqtt_server_external)
        self._external_tls: ssl.SSLContext | None = None
        if cfg.mqtt_mode != MQTT_MODE_INTERNAL and (cfg.event_bus_tls.enable or self._external.tls):
            self._external_tls = _tls_context(cfg.event_bus_tls)

    async def run(
        self, ctx: beehive.Context, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Start the broker/links of the mode, report ready, then serve the inbox."""
        if self.store is not None:
            store = self.store
            self._extra = await trio.to_thread.run_sync(store.sub_topics)
        stamp = str(self._clock() if self._clock else ctx.now_ms())[:10]
        sub_id = self.cfg.mqtt_sub_client_id or f"hub-client-sub-{stamp}"
        pub_id = self.cfg.mqtt_pub_client_id or f"hub-client-pub-{stamp}"
        mode = self.cfg.mqtt_mode
        async with trio.open_nursery() as nursery:
            self.links = []
            if mode in (MQTT_MODE_INTERNAL, MQTT_MODE_BOTH):
                host, port = self._internal.host, self._internal.port
                self.broker = Broker(session_queue_size=self.cfg.mqtt_session_queue_size)
                self.internal_port = await nursery.start(self.broker.serve, host, port)
                connect_host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
                qos = min(self.cfg.mqtt_qos, 1)
                self.links.append(
                    _Link("internal", connect_host, self.internal_port, qos, self.cfg.mqtt_retain)
                )
            if mode in (MQTT_MODE_BOTH, MQTT_MODE_EXTERNAL):
                ext = self._external
                self.links.append(_Link("external", ext.host, ext.port, 1, False, self._external_tls))
            for link in self.links:
                nursery.start_soon(self._run_sub, ctx, link, sub_id)
                nursery.start_soon(self._run_pub, link, pub_id)
            _log.info("eventbus started", mqtt_mode=mode, brokers=[f"{x.host}:{x.port}" for x in self.links])
            task_status.started()
            async for msg in ctx:
                try:
                    await self._handle(msg)
                except (ValueError, TypeError, KeyError) as exc:
                    _log.warning(
                        "eventbus: message skipped",
                        msg_id=msg.msg_id,
                        operation=msg.route.operation,
                        resource=msg.route.resource,
                        error=str(exc),
                    )

    def _credentials(self) -> dict[str, Any]:
        # mqttUsername/mqttPassword, as upstream's HubClientInit sets them (both brokers; empty = anonymous).
        if not self.cfg.mqtt_username:
            return {}
        return {"username": self.cfg.mqtt_username, "password": self.cfg.mqtt_password.encode() or None}

    # --- MQTT -> bus -------------------------------------------------------------------------------------

    def topics(self) -> list[str]:
        """Every filter a sub connection holds: upstream's set plus the persisted ``sub_topics``."""
        return [*SUB_TOPICS, *(t for t in self._extra if t not in SUB_TOPICS)]

    async def _run_sub(self, ctx: beehive.Context, link: _Link, client_id: str) -> None:
        backoff = Backoff(RECONNECT_BACKOFF_BASE, RECONNECT_BACKOFF_CAP)
        while True:
            began = trio.current_time()
            try:
                async with open_client(
                    link.host,
                    link.port,
                    client_id=client_id,
                    keepalive=KEEPALIVE,
                    ssl_context=link.tls,
                    **self._credentials(),
                ) as client:
                    await _subscribe_all(client, self.topics())
                    link.sub = client
                    link.subscribed.set()
                    _log.info(
                        "eventbus subscribed",
                        broker=link.name,
                        client_id=client_id,
                        topics=len(self.topics()),
                    )
                    async for pub in client.messages:
                        await self._deliver(ctx, pub)
            except (OSError, ConnectionLostError, trio.TooSlowError) as exc:
                link.last_error = f"sub connection: {exc or type(exc).__name__}"
                _log.warning(
                    "eventbus sub connection down", broker=link.name, client_id=client_id, error=str(exc)
                )
            finally:
                link.sub = None
                link.subscribed = trio.Event()
            if trio.current_time() - began >= RECONNECT_STABLE_AFTER:
                backoff.reset()
            await trio.sleep(backoff.next_delay())

    async def _deliver(self, ctx: beehive.Context, pub: mqtt.Publish) -> None:
        self.messages_in += 1
        group, msg = route_mqtt_message(pub.topic, pub.payload, now_ms=ctx.now_ms())
        try:
            await ctx.send_to_group(group, msg)
        except beehive.BeehiveError as exc:
            _log.warning("eventbus: mqtt message not delivered", topic=pub.topic, group=group, error=str(exc))

    # --- bus -> MQTT -------------------------------------------------------------------------------------

    async def _run_pub(self, link: _Link, client_id: str) -> None:
        backoff = Backoff(RECONNECT_BACKOFF_BASE, RECONNECT_BACKOFF_CAP)
        while True:
            began = trio.current_time()
            try:
                async with open_client(
                    link.host,
                    link.port,
                    client_id=client_id,
                    keepalive=KEEPALIVE,
                    ssl_context=link.tls,
                    **self._credentials(),
                ) as client:
                    link.pub_connected = True
                    while True:
                        while link.outbox:
                            topic, payload = link.outbox[0]
                            await client.publish(topic, payload, qos=link.qos, retain=link.retain)
                            link.outbox.popleft()
                            self.messages_out += 1
                        await link.wake.wait()
                        link.wake = trio.Event()
            except (OSError, ConnectionLostError, trio.TooSlowError) as exc:
                link.last_error = f"pub connection: {exc or type(exc).__name__}"
                _log.warning(
                    "eventbus pub connection down", broker=link.name, client_id=client_id, error=str(exc)
                )
            finally:
                link.pub_connected = False
            if trio.current_time() - began >= RECONNECT_STABLE_AFTER:
                backoff.reset()
            await trio.sleep(backoff.next_delay())

    def publish(self, topic: str, payload: bytes) -> None:
        """Queue a publish to every linked broker. Raises ``MalformedPacketError`` for a bad topic."""
        mqtt.validate_topic_name(topic)
        for link in self.links:
            link.offer(topic, payload)

    async def _handle(self, msg: Message) -> None:
        op = msg.route.operation
        resource = msg.route.resource
        if op == Operation.PUBLISH:
            self.publish(resource, _payload(msg.content))
        elif op == Operation.MESSAGE:
            inner = msg.content["message"] if isinstance(msg.content, dict) else None
            if not isinstance(inner, dict) or not isinstance(inner.get("topic"), str):
                raise ValueError('content must be {"message": {"topic": "...", ...}}')
            self.publish(inner["topic"], json.dumps(inner, separators=(",", ":")).encode())
        elif op == Operation.SUBSCRIBE:
            await self._subscribe(resource)
        elif op == Operation.UNSUBSCRIBE:
            await self._unsubscribe(resource)
        elif op == Operation.GET_RESULT:
            if resource != "auth_info":
                _log.info("eventbus: get_result skipped (not auth_info)", resource=resource)
                return
            topic = f"$hw/events/node/{self.node_name}/authInfo/get/result"
            self.publish(topic, json.dumps(msg.content, separators=(",", ":")).encode())
        elif op == Operation.CONNECT:
            # EdgeHub's cloud_connected/cloud_disconnected broadcast reaches the bus group as upstream; EventBus
            # keeps serving local MQTT traffic either way.
            _log.debug("eventbus: cloud link state", state=msg.content)
        else:
            _log.warning(
                "eventbus: unknown operation", operation=op, resource=resource, source=msg.route.source
            )

    async def _subscribe(self, topic_filter: str) -> None:
        mqtt.validate_topic_filter(topic_filter)
        if topic_filter not in self._extra:
            self._extra.append(topic_filter)
        for link in self.links:
            if link.sub is not None:
                try:
                    await link.sub.subscribe([topic_filter], qos=1)
                except ConnectionLostError as exc:
                    # The reconnection subscribes it with the rest.
                    _log.info(
                        "eventbus: subscribe deferred to reconnection", topic=topic_filter, error=str(exc)
                    )
        # Persisted once the brokers have acknowledged it: a row in sub_topics means "in effect".
        if self.store is not None:
            store = self.store
            await trio.to_thread.run_sync(store.add_sub_topic, topic_filter)
        _log.info("eventbus subscribed topic", topic=topic_filter)

    async def _unsubscribe(self, topic_filter: str) -> None:
        mqtt.validate_topic_filter(topic_filter)
        if self.store is not None:
            store = self.store
            await trio.to_thread.run_sync(store.remove_sub_topic, topic_filter)
        if topic_filter in self._extra:
            self._extra.remove(topic_filter)
        if topic_filter in SUB_TOPICS:
            return
        for link in self.links:
            if link.sub is not None:
                try:
                    await link.sub.unsubscribe([topic_filter])
                except ConnectionLostError as exc:
                    _log.info(
                        "eventbus: unsubscribe deferred to reconnection", topic=topic_filter, error=str(exc)
                    )
        _log.info("eventbus unsubscribed topic", topic=topic_filter)


async def _subscribe_all(client: Client, topics: Sequence[str]) -> None:
    # Several SUBSCRIBE packets of at most 64 filters: one packet per filter costs a round trip each,
    # one packet for all could exceed the broker's packet size with many persisted topics.
    for start in range(0, len(topics), 64):
        chunk = topics[start : start + 64]
        codes = await client.subscribe(chunk, qos=1)
        for topic_filter, code in zip(chunk, codes, strict=True):
            if code == mqtt.SUBACK_FAILURE:
                _log.warning("eventbus: broker refused a subscription", topic=topic_filter)


def _payload(content: Any) -> bytes:
    if isinstance(content, str):
        return content.encode("utf-8")
    if isinstance(content, bytes):
        return content
    return json.dumps(content, separators=(",", ":")).encode("utf-8")


def _tls_context(tls: config.EventBusTLS) -> ssl.SSLContext:
    """Client TLS for the external broker: ``eventBusTLS`` files when enabled, the system CAs otherwise."""
    if not tls.enable:
        return ssl.create_default_context()
    files = {
        "tlsMqttCAFile": tls.tls_mqtt_ca_file,
        "tlsMqttCertFile": tls.tls_mqtt_cert_file,
        "tlsMqttPrivateKeyFile": tls.tls_mqtt_private_key_file,
    }
    for key, name in files.items():
        try:
            size = Path(name).stat().st_size
        except OSError as exc:
            raise ValueError(f"modules.eventBus.eventBusTLS.{key} {name!r}: {exc.strerror}") from None
        if size > limits.MAX_TLS_FILE_BYTES:
            raise ValueError(
                f"modules.eventBus.eventBusTLS.{key} {name!r}: {size} bytes, over {limits.MAX_TLS_FILE_BYTES}"
            )
    try:
        context = ssl.create_default_context(cafile=tls.tls_mqtt_ca_file)
    except ssl.SSLError as exc:
        raise ValueError(
            f"modules.eventBus.eventBusTLS.tlsMqttCAFile {tls.tls_mqtt_ca_file!r}: {exc}"
        ) from None
    try:
        context.load_cert_chain(tls.tls_mqtt_cert_file, tls.tls_mqtt_private_key_file)
    except ssl.SSLError as exc:
        raise ValueError(
            f"modules.eventBus.eventBusTLS.tlsMqttCertFile/tlsMqttPrivateKeyFile {tls.tls_mqtt_cert_file!r}: {exc}"
        ) from None
    return context
