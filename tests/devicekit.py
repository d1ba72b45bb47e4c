"""Test and benchmark helpers for the device path: MQTT peers, the EventBus on a test broker, an in-process link.

- :class:`Mapper`: a real paho-mqtt client acting as a device mapper (publishes requests, records
  everything under ``$hw/events/#``, waits for messages with a deadline).
- :func:`eventbus`: the real EventBus module (mqttMode 2) on the test broker, with unique client ids.
- :class:`EdgeLink` / :class:`CloudLink`: modules ``websocket`` (group ``hub``) and ``cloudhub`` that
  join one edge node's modules and the cloud controllers in one beehive, doing CloudHub's resource
  rewriting (``node/<node>/`` added upstream, stripped downstream) and dropping traffic while the test
  says the link is down.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
import trio

from kubeedge.edge.eventbus.eventbus import EventBus
from kubeedge.kit import beehive
from kubeedge.kit.config import edgecore as config
from kubeedge.proto import resource as res
from kubeedge.proto import vocab
from kubeedge.proto.message import Message


@dataclass
class Received:
    topic: str
    payload: Any
    at: float


class Mapper:
    """A paho-mqtt client that records ``$hw/events/#`` and publishes requests (QoS 1)."""

    def __init__(self, host: str, port: int, client_id: str, subscribe: str = "$hw/events/#") -> None:
        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self._client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id)
        self._subscribed = threading.Event()
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *_a: self._subscribed.set()
        self._client.on_connect = lambda c, *_a: c.subscribe(subscribe, qos=1)
        self._client.connect(host, port)
        self._client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("mapper did not subscribe within 10 s")

    def _on_message(self, _c: Any, _u: Any, m: Any) -> None:
        try:
            payload: Any = json.loads(m.payload)
        except ValueError:
            payload = m.payload
        with self._cond:
            self.messages.append(Received(m.topic, payload, time.monotonic()))
            self._cond.notify_all()

    def publish(self, topic: str, payload: Any) -> None:
        """Publish (dicts as JSON) and wait until the broker has it."""
        data = payload if isinstance(payload, bytes | str) else json.dumps(payload)
        self._client.publish(topic, data, qos=1).wait_for_publish(10)

    def publish_nowait(self, topic: str, payload: Any) -> None:
        """Queue a QoS 1 publish without waiting for the broker (load generation)."""
        self._client.publish(topic, json.dumps(payload), qos=1)

    def count(self, topic: str) -> int:
        """How many messages arrived on ``topic``."""
        with self._cond:
            return sum(1 for m in self.messages if m.topic == topic)

    def wait_for(self, topic: str, pred: Callable[[Any], bool] = lambda _p: True, timeout: float = 10) -> Any:
        """The payload of the first message on ``topic`` matching ``pred`` (polled under a deadline)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for m in self.messages:
                    if m.topic == topic and pred(m.payload):
                        return m.payload
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(m.topic, m.payload) for m in self.messages[-10:]]
                    raise TimeoutError(f"nothing on {topic} within {timeout} s; last seen: {seen}")
                self._cond.wait(left)

    async def await_for(
        self, topic: str, pred: Callable[[Any], bool] = lambda _p: True, timeout: float = 10
    ) -> Any:
        """:meth:`wait_for` from trio (in a worker thread)."""
        return await trio.to_thread.run_sync(lambda: self.wait_for(topic, pred, timeout))

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def eventbus(host: str, port: int, tag: str) -> EventBus:
    """The real EventBus module on the external broker ``host:port`` (mqttMode 2), client ids ``*-<tag>``."""
    cfg = dataclasses.replace(
        config.EventBus(),
        mqtt_server_external=f"tcp://{host}:{port}",
        mqtt_sub_client_id=f"hub-client-sub-{tag}",
        mqtt_pub_client_id=f"hub-client-pub-{tag}",
    )
    return EventBus(cfg)


async def wait_subscribed(bus: EventBus, timeout: float = 10) -> None:
    """Wait until every broker link of ``bus`` has its subscriptions in place."""
    with trio.fail_after(timeout):
        for link in bus.links:
            await link.subscribed.wait()


@dataclass
class LinkState:
    """What the test controls and observes about the in-process cloud-edge link."""

    node: str
    up: bool = True
    auto_confirm: bool = True
    upstream: list[Message] = field(default_factory=list)
    downstream: list[Message] = field(default_factory=list)
    changed: trio.Event = field(default_factory=trio.Event)

    def notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()


async def wait_until(state: LinkState, pred: Callable[[], bool], timeout: float = 10) -> None:
    """Wait (with a deadline) until ``pred()`` holds, re-checking on every link event."""
    with trio.fail_after(timeout):
        while not pred():
            with trio.move_on_after(0.05):
                await state.changed.wait()


class EdgeLink:
    """Module ``websocket`` (group ``hub``): edge side of the link; upstream gets ``node/<node>/`` added."""

    name = "websocket"
    group = "hub"

    def __init__(self, state: LinkState, cloud_module: str = "devicecontroller") -> None:
        self.state = state
        self.cloud_module = cloud_module

    async def run(
        self, ctx: beehive.Context, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        await self.announce(ctx)
        async for msg in ctx:
            self.state.upstream.append(msg)
            self.state.notify()
            if not self.state.up:
                continue
            if self.cloud_module:
                prefixed = res.add_node_prefix(msg.route.resource, self.state.node)
                up = dataclasses.replace(msg, route=dataclasses.replace(msg.route, resource=prefixed))
                await ctx.send(self.cloud_module, up)

    async def announce(self, bus: beehive.Bus) -> None:
        """Tell the edge modules whether the cloud is reachable (EdgeHub's connect message)."""
        msg = Message.new(
            source=vocab.CONNECT_SOURCE,
            group="",
            operation=vocab.CONNECT_OPERATION,
            resource=vocab.CONNECT_RESOURCE,
            content=vocab.CLOUD_CONNECTED if self.state.up else vocab.CLOUD_DISCONNECTED,
            now_ms=bus.now_ms(),
        )
        await bus.send_to_group("twin", msg)


class CloudLink:
    """Module ``cloudhub``: downstream messages lose ``node/<node>/`` and reach the edge's ``twin`` module.

    Device objects go to ``twin`` as MetaManager forwards them; membership and replies go to group
    ``twin`` directly as EdgeHub routes them.
    """

    name = "cloudhub"
    group = "cloudhub"

    def __init__(self, state: LinkState) -> None:
        self.state = state

    async def run(
        self, ctx: beehive.Context, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        async for msg in ctx:
            node, wire = res.strip_node_prefix(msg.route.resource)
            down = dataclasses.replace(msg, route=dataclasses.replace(msg.route, resource=wire))
            self.state.downstream.append(down)
            self.state.notify()
            if not self.state.up or node != self.state.node:
                continue
            await ctx.send_to_group("twin", down)
