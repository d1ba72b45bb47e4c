"""Test and benchmark helpers for the device path: MQTT peers, an EventBus stand-in, an in-process link.

- :class:`Mapper`: a real paho-mqtt client acting as a device mapper (publishes requests, records
  everything under ``$hw/events/#``, waits for messages with a deadline).
- :class:`PahoEventBus`: beehive module ``eventbus`` (group ``bus``) that does what upstream EventBus does
  for DeviceTwin: subscribes to the twin topics on a real broker and hands each message to group
  ``twin`` (source ``bus``, group ``user``, op ``response``, resource = URL-safe base64 of the topic,
  content = payload bytes); publishes what ``twin`` asks (op ``publish``, resource = topic).
- :class:`EdgeLink` / :class:`CloudLink`: modules ``websocket`` (group ``hub``) and ``cloudhub`` that
  join one edge node's modules and the cloud controllers in one beehive, doing CloudHub's resource
  rewriting (``node/<node>/`` added upstream, stripped downstream) and dropping traffic while the test
  says the link is down.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
import trio

from kubeedge.kit import beehive
from kubeedge.proto import resource as res
from kubeedge.proto import vocab
from kubeedge.proto.message import Message

TWIN_SUBSCRIPTIONS = (
    "$hw/events/device/+/+/state/update",
    "$hw/events/device/+/+/twin/+",
    "$hw/events/node/+/membership/get",
)


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


class PahoEventBus:
    """Module ``eventbus`` (group ``bus``): the twin half of upstream EventBus over a real broker."""

    name = "eventbus"
    group = "bus"

    def __init__(self, host: str, port: int, client_id: str = "hub-client-test") -> None:
        self.host = host
        self.port = port
        self.client_id = client_id

    async def run(
        self, ctx: beehive.Context, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        token = trio.lowlevel.current_trio_token()
        send, recv = trio.open_memory_channel[Message](
            1000
        )  # absorbs broker bursts; paho's thread must not block
        subscribed = threading.Event()
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=self.client_id)

        def on_connect(c: Any, *_a: Any) -> None:
            c.subscribe([(t, 1) for t in TWIN_SUBSCRIPTIONS])

        def on_message(_c: Any, _u: Any, m: Any) -> None:
            msg = Message.new(
                source="bus",
                group="user",
                operation="response",
                resource=base64.urlsafe_b64encode(m.topic.encode()).decode(),
                content=bytes(m.payload),
                now_ms=int(time.time() * 1000),
            )
            # Blocking paho's thread is the backpressure: the broker holds QoS 1 messages meanwhile.
            with contextlib.suppress(trio.RunFinishedError, trio.Cancelled, trio.ClosedResourceError):
                trio.from_thread.run(send.send, msg, trio_token=token)

        client.on_connect = on_connect
        client.on_message = on_message
        client.on_subscribe = lambda *_a: subscribed.set()
        client.connect(self.host, self.port)
        client.loop_start()
        try:
            await trio.to_thread.run_sync(subscribed.wait, 10)
            async with trio.open_nursery() as nursery:

                async def forward() -> None:
                    async for msg in recv:
                        await ctx.send_to_group("twin", msg)

                nursery.start_soon(forward)
                task_status.started()
                async for msg in ctx:
                    if msg.route.operation == "publish":
                        data = (
                            msg.content if isinstance(msg.content, bytes | str) else json.dumps(msg.content)
                        )
                        client.publish(msg.route.resource, data, qos=1)
        finally:
            # Unblock a paho callback waiting on us, then stop its thread without blocking trio's.
            send.close()
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await trio.to_thread.run_sync(client.loop_stop)
            client.disconnect()


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
                import dataclasses

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
        import dataclasses

        task_status.started()
        async for msg in ctx:
            node, wire = res.strip_node_prefix(msg.route.resource)
            down = dataclasses.replace(msg, route=dataclasses.replace(msg.route, resource=wire))
            self.state.downstream.append(down)
            self.state.notify()
            if not self.state.up or node != self.state.node:
                continue
            await ctx.send_to_group("twin", down)
