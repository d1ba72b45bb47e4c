"""EventBus with real MQTT peers as mappers (paho-mqtt, mosquitto_pub, mosquitto_sub).

Every test here runs twice: against a real mosquitto (mqttMode 2) and against the internal broker
(mqttMode 0), through the ``edge`` fixture.
"""

from __future__ import annotations

import base64
import functools
import json
import queue
import subprocess
import threading
from pathlib import Path

import paho.mqtt.client as paho
import trio

from kubeedge.edge.eventbus.eventbus import EventBus
from kubeedge.edge.metamanager.store import MetaStore
from kubeedge.kit import beehive
from kubeedge.proto.message import Message

from .conftest import DEADLINE, Edge, Mosquitto, Recorder, eventbus_config


def paho_publish(host: str, port: int, topic: str, payload: bytes, qos: int = 1) -> None:
    """Publish as a mapper would: a paho client, connected, one message, acknowledged, disconnected."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"mapper-{topic[-12:]}")
    client.connect(host, port, keepalive=10)
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=qos)
        info.wait_for_publish(timeout=DEADLINE)
        assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


class PahoSubscriber:
    """A paho-mqtt mapper subscribed to one topic (SUBACK received) whose messages land in a queue."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        self.messages: queue.Queue[tuple[str, bytes, int]] = queue.Queue()
        self._subscribed = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="mapper-sub")
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = lambda _c, _u, m: self.messages.put((m.topic, m.payload, m.qos))
        self.client.connect(host, port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(DEADLINE):
            self.close()
            raise TimeoutError("paho subscriber got no SUBACK")

    def next(self) -> tuple[str, bytes, int]:
        return self.messages.get(timeout=DEADLINE)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def mosquitto_pub(port: int, topic: str, payload: str) -> None:
    with trio.fail_after(DEADLINE):
        await trio.run_process(
            ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", topic, "-m", payload]
        )


class Sub:
    """A mosquitto_sub process, known to be subscribed (its -d output says so) before the test goes on."""

    def __init__(self, proc: trio.Process) -> None:
        self.proc = proc
        self.buffer = b""

    @classmethod
    async def start(cls, nursery: trio.Nursery, port: int, topic: str) -> Sub:
        cmd = [
            "stdbuf",  # mosquitto_sub's stdio buffers a pipe; -d output must arrive as it happens
            "-oL",
            "mosquitto_sub",
            "-d",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-q",
            "1",
            "-t",
            topic,
            "-C",
            "1",
            "-v",
        ]
        proc = await nursery.start(
            functools.partial(trio.run_process, cmd, stdout=subprocess.PIPE, check=False)
        )
        sub = cls(proc)
        await sub.read_until(b"Subscribed")
        return sub

    async def read_until(self, marker: bytes) -> bytes:
        assert self.proc.stdout is not None
        with trio.fail_after(DEADLINE):
            while marker not in self.buffer:
                chunk = await self.proc.stdout.receive_some(4096)
                assert chunk, f"mosquitto_sub ended before {marker!r}: {self.buffer!r}"
                self.buffer += chunk
        return self.buffer

    async def lines(self) -> list[str]:
        assert self.proc.stdout is not None
        with trio.fail_after(DEADLINE):
            while chunk := await self.proc.stdout.receive_some(4096):
                self.buffer += chunk
            await self.proc.wait()
        return [
            line
            for line in self.buffer.decode().splitlines()
            if not line.startswith(("Client ", "Subscribed "))
        ]


async def test_device_twin_update_reaches_twin_group(edge: Edge) -> None:
    topic = "$hw/events/device/default/thermometer/twin/update"
    doc = {"event_id": "e1", "timestamp": 1, "twin": {"temp": {"actual": {"value": "23"}}}}
    await trio.to_thread.run_sync(paho_publish, edge.host, edge.port, topic, json.dumps(doc).encode())
    msg = await edge.twin.next()
    assert msg.route.source == "bus"
    assert msg.route.group == "user"
    assert msg.route.operation == "response"
    assert base64.urlsafe_b64decode(msg.route.resource).decode() == topic
    assert json.loads(msg.content) == doc
    assert edge.hub.received.statistics().current_buffer_used == 0


async def test_node_membership_get_reaches_twin_group(edge: Edge) -> None:
    topic = "$hw/events/node/edge-1/membership/get"
    await mosquitto_pub(edge.port, topic, '{"event_id":"m1"}')
    msg = await edge.twin.next()
    assert base64.urlsafe_b64decode(msg.route.resource).decode() == topic
    assert msg.content == '{"event_id":"m1"}'


async def test_user_topic_reaches_edgehub_as_upload(edge: Edge) -> None:
    await mosquitto_pub(edge.port, "default/user/temperature", "21.5")
    msg = await edge.hub.next()
    assert (msg.route.source, msg.route.group, msg.route.operation) == ("bus", "user", "upload")
    assert msg.route.resource == "default/user/temperature"
    assert msg.content == "21.5"
    assert edge.twin.received.statistics().current_buffer_used == 0


async def test_cloud_publish_reaches_mosquitto_sub(edge: Edge, nursery: trio.Nursery) -> None:
    topic = "$hw/events/device/default/lamp/twin/update/delta"
    sub = await Sub.start(nursery, edge.port, topic)
    await edge.from_cloud("publish", topic, '{"delta":{"power":"on"}}')
    assert f'{topic} {{"delta":{{"power":"on"}}}}' in await sub.lines()


async def test_cloud_message_publishes_inner_object(edge: Edge, nursery: trio.Nursery) -> None:
    sub = await Sub.start(nursery, edge.port, "apps/lamp/command")
    await edge.from_cloud("message", "ignored", {"message": {"topic": "apps/lamp/command", "power": "off"}})
    (line,) = await sub.lines()
    topic, _, payload = line.partition(" ")
    assert topic == "apps/lamp/command"
    assert json.loads(payload) == {"topic": "apps/lamp/command", "power": "off"}


async def test_cloud_subscribe_is_persisted_and_routed(edge: Edge) -> None:
    await edge.from_cloud("subscribe", "factory/line1/#", None)
    with trio.fail_after(DEADLINE):
        while "factory/line1/#" not in await trio.to_thread.run_sync(edge.store.sub_topics):
            await trio.sleep(0.02)
    # The row is written once the broker has acknowledged the subscription.
    await mosquitto_pub(edge.port, "factory/line1/press", "ok")
    msg = await edge.hub.next()
    assert (msg.route.operation, msg.route.resource, msg.content) == ("upload", "factory/line1/press", "ok")
    await edge.from_cloud("unsubscribe", "factory/line1/#", None)
    with trio.fail_after(DEADLINE):
        while "factory/line1/#" in await trio.to_thread.run_sync(edge.store.sub_topics):
            await trio.sleep(0.02)


async def test_persisted_subscription_survives_an_eventbus_restart(
    edge: Edge, nursery: trio.Nursery, tmp_path: Path
) -> None:
    await trio.to_thread.run_sync(edge.store.add_sub_topic, "plant/+/alarm")
    # A second edgecore process's EventBus on the same database (the first is shut down).
    edge.hive.shutdown(hard=True)
    kind = edge.kind
    cfg = eventbus_config(kind, f"tcp://127.0.0.1:{edge.port}")
    if kind == "internal":
        cfg = eventbus_config(kind, "")
    bus = EventBus(cfg, store=edge.store)
    hub = Recorder("websocket", "hub")
    hive = beehive.Beehive([Recorder("twin", "twin"), hub, bus])
    with trio.fail_after(DEADLINE):
        await nursery.start(hive.run)
        for link in bus.links:
            while link.sub is None:
                await link.subscribed.wait()
    port = bus.internal_port if kind == "internal" else edge.port
    assert port is not None
    await mosquitto_pub(port, "plant/7/alarm", "hot")
    msg = await hub.next()
    assert (msg.route.resource, msg.content) == ("plant/7/alarm", "hot")
    hive.shutdown(hard=True)


async def test_resubscribes_after_mosquitto_restart(
    nursery: trio.Nursery, private_mosquitto: Mosquitto, store: MetaStore
) -> None:
    url = f"tcp://127.0.0.1:{private_mosquitto.port}"
    bus = EventBus(eventbus_config("mosquitto", url), store=store)
    hub = Recorder("websocket", "hub")
    hive = beehive.Beehive([Recorder("twin", "twin"), hub, bus])
    with trio.fail_after(DEADLINE):
        await nursery.start(hive.run)
    edge = Edge(
        hive, bus, Recorder("twin", "twin"), hub, "127.0.0.1", private_mosquitto.port, "mosquitto", store
    )
    await edge.connected()
    await edge.from_cloud("subscribe", "ns1/telemetry", None)
    with trio.fail_after(DEADLINE):
        while "ns1/telemetry" not in await trio.to_thread.run_sync(store.sub_topics):
            await trio.sleep(0.02)

    (link,) = bus.links
    old = link.sub
    await trio.to_thread.run_sync(private_mosquitto.stop)
    with trio.fail_after(DEADLINE):
        while link.sub is old:
            await trio.sleep(0.02)
    await trio.to_thread.run_sync(private_mosquitto.start)
    await edge.connected()
    assert link.sub is not None
    assert link.sub is not old

    await mosquitto_pub(private_mosquitto.port, "ns1/telemetry", "after-restart")
    msg = await hub.next()
    assert (msg.route.resource, msg.content) == ("ns1/telemetry", "after-restart")
    # A cloud publish goes out again too, through the reconnected pub connection.
    sub = await Sub.start(nursery, private_mosquitto.port, "ns1/command")
    await edge.from_cloud("publish", "ns1/command", "go")
    assert "ns1/command go" in await sub.lines()
    hive.shutdown(hard=True)


async def test_twin_publish_reaches_a_paho_mapper(edge: Edge) -> None:
    topic = "$hw/events/device/default/thermometer/twin/update/result"
    mapper = await trio.to_thread.run_sync(PahoSubscriber, edge.host, edge.port, topic)
    try:
        msg = Message.new(
            source="twin",
            group="twin",
            operation="publish",
            resource=topic,
            content='{"event_id":"e1","twin":{}}',
            now_ms=edge.hive.now_ms(),
        )
        await edge.hive.bus.send("eventbus", msg)
        got_topic, payload, qos = await trio.to_thread.run_sync(mapper.next)
    finally:
        await trio.to_thread.run_sync(mapper.close)
    assert got_topic == topic
    assert json.loads(payload) == {"event_id": "e1", "twin": {}}
    assert qos == 1  # external: always QoS 1; internal: mqttQOS, 1 in this config
