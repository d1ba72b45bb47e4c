"""Fixtures for EventBus: brokers (a private mosquitto, the internal broker), raw MQTT peers, a running bus.

``edge`` runs a real :class:`~kubeedge.kit.beehive.Beehive` with the real EventBus module and two
recorders standing in for DeviceTwin (module ``twin``, group ``twin``) and EdgeHub (module ``websocket``,
group ``hub``), against either a real mosquitto (mqttMode 2) or the internal broker (mqttMode 0): the
mapper tests are parametrized over both.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from kubeedge.edge.eventbus.broker import Broker
from kubeedge.edge.eventbus.eventbus import EventBus
from kubeedge.edge.metamanager.store import MetaStore
from kubeedge.kit import beehive
from kubeedge.kit.config import edgecore as config
from kubeedge.proto import mqtt
from kubeedge.proto.message import Message
from tests.conftest import free_port, wait_for_port

DEADLINE = 20.0
"""Seconds any single I/O step of these tests may take."""


class Mosquitto:
    """A private mosquitto process on a fixed loopback port, which a test may stop and start again."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            pytest.fail("mosquitto is not installed; scripts/test installs the Debian package")
        self.binary = binary
        self.folder = folder
        self.port = free_port()
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            f"log_dest file {folder / 'mosquitto.log'}\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port("127.0.0.1", self.port, timeout=15)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
            self.proc = None


@pytest.fixture
def private_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    server = Mosquitto(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class RunningBroker:
    broker: Broker
    port: int
    host: str = "127.0.0.1"


@pytest.fixture
async def broker(nursery: trio.Nursery) -> RunningBroker:
    """The internal broker alone, on a free loopback port."""
    b = Broker(session_queue_size=10)
    port = await nursery.start(b.serve, "127.0.0.1", 0)
    return RunningBroker(b, port)


class Raw:
    """A bare MQTT peer over a real socket: send any bytes, read decoded packets, see the close."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.decoder = mqtt.Decoder(1 << 20)
        self.pending: list[mqtt.Packet] = []

    @classmethod
    async def open(cls, port: int, host: str = "127.0.0.1") -> Raw:
        return cls(await trio.open_tcp_stream(host, port))

    async def send(self, *packets: mqtt.Packet | bytes) -> None:
        await self.stream.send_all(b"".join(p if isinstance(p, bytes) else mqtt.encode(p) for p in packets))

    async def recv(self) -> mqtt.Packet:
        while not self.pending:
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError("broker closed the connection")
            self.pending += self.decoder.feed(data)
        return self.pending.pop(0)

    async def connect(
        self, client_id: str, *, clean: bool = True, keepalive: int = 60, will: mqtt.Will | None = None
    ) -> mqtt.ConnAck:
        await self.send(mqtt.Connect(client_id, clean, keepalive, will))
        ack = await self.recv()
        assert isinstance(ack, mqtt.ConnAck)
        return ack

    async def wait_closed(self) -> None:
        """Read until the broker closes the connection (anything received meanwhile is discarded)."""
        while True:
            try:
                data = await self.stream.receive_some(65536)
            except trio.BrokenResourceError:
                return
            if not data:
                return

    async def aclose(self) -> None:
        await self.stream.aclose()


class Peers:
    """Opens :class:`Raw` peers and closes every one of them when the test ends."""

    def __init__(self) -> None:
        self.opened: list[Raw] = []

    async def open(self, port: int, host: str = "127.0.0.1") -> Raw:
        raw = await Raw.open(port, host)
        self.opened.append(raw)
        return raw


@pytest.fixture
async def peers() -> AsyncIterator[Peers]:
    pool = Peers()
    try:
        yield pool
    finally:
        for raw in pool.opened:
            await raw.aclose()


class Recorder:
    """A beehive module that records what it receives."""

    def __init__(self, name: str, group: str) -> None:
        self.name = name
        self.group = group
        # A buffer, so that a test reading late does not stall the bus: bounded by what tests send.
        self._in, self.received = trio.open_memory_channel[Message](1000)

    async def run(
        self, ctx: beehive.Context, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        async for msg in ctx:
            await self._in.send(msg)

    async def next(self) -> Message:
        with trio.fail_after(DEADLINE):
            return await self.received.receive()


@dataclass
class Edge:
    """A running beehive with EventBus, and the broker its mappers talk to."""

    hive: beehive.Beehive
    eventbus: EventBus
    twin: Recorder
    hub: Recorder
    host: str
    port: int
    kind: str
    store: MetaStore
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)

    async def connected(self) -> None:
        """Wait until every EventBus sub connection has applied its subscriptions."""
        with trio.fail_after(DEADLINE):
            for link in self.eventbus.links:
                while link.sub is None:
                    await link.subscribed.wait()

    async def from_cloud(self, operation: str, resource: str, content: object) -> None:
        msg = Message.new(
            source="router_eventbus",
            group="user",
            operation=operation,
            resource=resource,
            content=content,
            now_ms=self.hive.now_ms(),
        )
        await self.hive.bus.send("eventbus", msg)


def eventbus_config(kind: str, url: str) -> config.EventBus:
    base = config.EventBus()
    if kind == "mosquitto":
        return dataclasses.replace(base, mqtt_mode=2, mqtt_server_external=url)
    return dataclasses.replace(base, mqtt_mode=0, mqtt_server_internal="tcp://127.0.0.1:0", mqtt_qos=1)


async def start_edge(
    nursery: trio.Nursery, kind: str, store: MetaStore, mosquitto_url: str, mosquitto_port: int
) -> Edge:
    bus = EventBus(eventbus_config(kind, mosquitto_url), store=store, node_name="edge-1")
    twin = Recorder("twin", "twin")
    hub = Recorder("websocket", "hub")
    hive = beehive.Beehive([twin, hub, bus])
    with trio.fail_after(DEADLINE):
        await nursery.start(hive.run)
    port = bus.internal_port if kind == "internal" else mosquitto_port
    assert port is not None
    edge = Edge(hive, bus, twin, hub, "127.0.0.1", port, kind, store)
    await edge.connected()
    return edge


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MetaStore]:
    s = MetaStore.open(tmp_path / "edgecore.db")
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(params=["mosquitto", "internal"])
async def edge(
    request: pytest.FixtureRequest, nursery: trio.Nursery, mosquitto: object, store: MetaStore
) -> AsyncIterator[Edge]:
    """EventBus in a beehive against mosquitto (mqttMode 2) or its internal broker (mqttMode 0)."""
    url = mosquitto.url  # type: ignore[attr-defined]
    port = mosquitto.port  # type: ignore[attr-defined]
    running = await start_edge(nursery, request.param, store, url, port)
    yield running
    running.hive.shutdown(hard=True)
