"""EventBus, DeviceTwin and MetaManager feeding the status board, on real components: mosquitto brokers,
paho-mqtt mappers, the twin module on a real edgecore.db, MetaManager on real SQLite held by a real writer."""

from __future__ import annotations

import itertools
import shutil
import sqlite3
import ssl
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio

from kubeedge.edge.devicetwin import store as twinstore
from kubeedge.edge.devicetwin.module import DeviceTwin
from kubeedge.edge.eventbus.eventbus import EventBus
from kubeedge.edge.metamanager import store as st
from kubeedge.edge.status import providers
from kubeedge.edge.status.board import StatusBoard
from kubeedge.kit import beehive
from kubeedge.kit import status as s
from kubeedge.proto.message import Message
from tests.conftest import Broker, free_port, wait_for_port
from tests.devicekit import EdgeLink, LinkState, Mapper, eventbus, wait_subscribed
from tests.edge.metamanager.conftest import run_manager
from tests.edge.metamanager.test_manager import cloud_msg, configmap, connect, until

from .conftest import DEADLINE, get

NODE = "edge-feeds"
DEV = "$hw/events/device"
_ids = itertools.count()


@contextmanager
def private_mosquitto(folder: Path) -> Iterator[tuple[Broker, subprocess.Popen[bytes]]]:
    """A mosquitto of this test alone, so that the test may stop it."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port("127.0.0.1", port, timeout=15)
        yield Broker("127.0.0.1", port), proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def refreshed_until(
    board: StatusBoard, provider: providers.Provider, pred: Callable[[], bool], what: str
) -> None:
    """Run ``provider`` until ``pred`` holds on the board (the caller's fail_after bounds it)."""
    while True:
        await provider(board)
        if pred():
            return
        await trio.sleep(0.02)  # polling a real broker connection for a state, under the caller's deadline


# --- EventBus ------------------------------------------------------------------------------------------------


@pytest.mark.mqtt
async def test_mqtt_section_follows_the_broker_connection_and_counts_messages(tmp_path: Path) -> None:
    board = StatusBoard(clock=lambda: 1000.0)
    board.mqtt = s.MqttStatus(enabled=True, mode="external", broker="tcp://configured:1883")
    with private_mosquitto(tmp_path) as (broker, proc):
        bus = eventbus(broker.host, broker.port, f"feeds-{next(_ids)}")
        provider = providers.MqttProvider(bus)
        mapper = Mapper(broker.host, broker.port, client_id=f"mapper-feeds-{next(_ids)}", subscribe="out/#")
        try:
            with trio.fail_after(DEADLINE):
                hive = beehive.Beehive([bus], shutdown_timeout=2)
                async with trio.open_nursery() as nursery:
                    await nursery.start(hive.run)
                    await wait_subscribed(bus)
                    await refreshed_until(board, provider, lambda: board.mqtt.connected, "connected")
                    assert (board.mqtt.messages_in, board.mqtt.messages_out) == (0, 0)
                    for i in range(3):
                        mapper.publish(f"{DEV}/default/d{i}/state/update", {"state": "online"})
                    bus.publish("out/a", b"1")
                    bus.publish("out/b", b"2")
                    await refreshed_until(
                        board,
                        provider,
                        lambda: (board.mqtt.messages_in, board.mqtt.messages_out) == (3, 2),
                        "three in, two out",
                    )
                    assert await mapper.await_for("out/b") == 2
                    assert board.mqtt.mode == "external"
                    assert board.mqtt.broker == "tcp://configured:1883"  # as configured
                    assert board.mqtt.last_error == ""

                    proc.terminate()
                    await trio.to_thread.run_sync(proc.wait)
                    await refreshed_until(board, provider, lambda: not board.mqtt.connected, "disconnected")
                    await refreshed_until(board, provider, lambda: bool(board.mqtt.last_error), "an error")
                    hive.shutdown()
        finally:
            mapper.close()
    assert board.mqtt.last_error.startswith("external broker: ")
    assert (board.mqtt.messages_in, board.mqtt.messages_out) == (3, 2)  # counters survive the outage
    events = [(e.severity, e.source, e.reason) for e in board.events]
    assert events[0] == (s.Severity.INFO, "eventbus", "MqttConnected")
    assert events[1] == (s.Severity.WARNING, "eventbus", "MqttDisconnected")
    assert len(events) == 2  # one event per change, however often the board refreshes


@pytest.mark.mqtt
async def test_mqtt_section_of_a_broker_that_is_not_there(tmp_path: Path) -> None:
    port = free_port()
    bus = eventbus("127.0.0.1", port, f"feeds-{next(_ids)}")
    board = StatusBoard()
    provider = providers.MqttProvider(bus)
    await provider(board)
    assert board.mqtt.connected is False  # not started: no links
    with trio.fail_after(DEADLINE):
        hive = beehive.Beehive([bus], shutdown_timeout=2)
        async with trio.open_nursery() as nursery:
            await nursery.start(hive.run)
            await refreshed_until(board, provider, lambda: bool(board.mqtt.last_error), "an error")
            hive.shutdown()
    assert board.mqtt.connected is False
    assert board.mqtt.last_error.startswith("external broker: ")
    assert f"connect to 127.0.0.1:{port} failed" in board.mqtt.last_error
    assert list(board.events) == []  # never connected: nothing changed


# --- DeviceTwin ----------------------------------------------------------------------------------------------


async def send_to_twin(
    hive: beehive.Beehive, resource: str, content: object, operation: str = "update"
) -> None:
    msg = Message.new(
        source="devicecontroller",
        group="twin",
        operation=operation,
        resource=resource,
        content=content,
        now_ms=hive.now_ms(),
    )
    await hive.bus.send_to_group("twin", msg)


@pytest.mark.mqtt
async def test_devices_section_shows_what_the_twin_module_committed(
    tmp_path: Path, mosquitto: Broker
) -> None:
    db = tmp_path / "edgecore.db"
    board = StatusBoard()
    provider = providers.DeviceProvider(str(db))
    await provider(board)
    assert board.devices == ()  # no database yet
    mapper = Mapper(mosquitto.host, mosquitto.port, client_id=f"mapper-feeds-{next(_ids)}")
    try:
        with trio.fail_after(30):
            twin = DeviceTwin(data_source=db, node_name=NODE)
            bus = eventbus(mosquitto.host, mosquitto.port, f"feeds-{next(_ids)}")
            hive = beehive.Beehive(
                [twin, bus, EdgeLink(LinkState(NODE), cloud_module="")], shutdown_timeout=2
            )
            async with trio.open_nursery() as nursery:
                await nursery.start(hive.run)
                await wait_subscribed(bus)
                await send_to_twin(
                    hive,
                    "membership",
                    {
                        "event_id": "m1",
                        "added_devices": [
                            {"id": "default/thermo-1", "name": "thermo-1"},
                            {"id": "plant/door-2", "name": "door-2"},
                        ],
                    },
                )
                await mapper.await_for(f"$hw/events/node/{NODE}/membership/updated")
                device = {
                    "metadata": {"name": "thermo-1", "namespace": "default"},
                    "spec": {"properties": [{"name": "setpoint", "desired": {"value": "21"}}]},
                }
                await send_to_twin(hive, "default/device/thermo-1", device)
                await mapper.await_for(f"{DEV}/default/thermo-1/twin/update/delta")
                mapper.publish(
                    f"{DEV}/default/thermo-1/twin/update",
                    {"event_id": "r1", "twin": {"temperature": {"actual": {"value": "23.5"}}}},
                )
                await mapper.await_for(f"{DEV}/default/thermo-1/twin/update/result")
                mapper.publish(f"{DEV}/default/thermo-1/state/update", {"event_id": "s1", "state": "online"})
                await mapper.await_for(f"{DEV}/default/thermo-1/state/update/result")
                await provider(board)
                first = board.devices
                mapper.publish(f"{DEV}/default/thermo-1/state/update", {"event_id": "s2", "state": "offline"})
                await mapper.await_for(
                    f"{DEV}/default/thermo-1/state/update/result", lambda p: p["event_id"] == "s2"
                )
                await provider(board)
                hive.shutdown()
    finally:
        mapper.close()
    thermo, door = sorted(first, key=lambda d: d.name != "thermo-1")
    assert (thermo.id, thermo.name, thermo.namespace, thermo.state) == (
        "default/thermo-1",
        "thermo-1",
        "default",
        s.DeviceState.ONLINE,
    )
    twins = {t.name: t for t in thermo.twins}
    assert set(twins) == {"setpoint", "temperature"}
    assert (twins["setpoint"].expected, twins["setpoint"].actual) == ("21", None)
    assert twins["setpoint"].expected_at is not None
    assert not twins["setpoint"].in_sync
    assert (twins["temperature"].expected, twins["temperature"].actual) == (None, "23.5")
    assert twins["temperature"].actual_at is not None
    assert thermo.last_report is not None
    assert thermo.last_report >= twins["temperature"].actual_at - 1  # the online time has whole seconds
    assert (door.id, door.namespace, door.state, door.twins, door.last_report) == (
        "plant/door-2",
        "plant",
        s.DeviceState.UNKNOWN,
        (),
        None,
    )
    (after,) = [d for d in board.devices if d.id == "default/thermo-1"]
    assert after.state is s.DeviceState.OFFLINE
    (event,) = list(board.events)
    assert (event.severity, event.source, event.reason, event.object) == (
        s.Severity.WARNING,
        "twin",
        "DeviceOffline",
        "device default/thermo-1",
    )


def test_device_reads_are_bounded_and_the_document_says_it_was_cut(tmp_path: Path) -> None:
    db = tmp_path / "edgecore.db"
    store = twinstore.DeviceStore.open(db)
    try:
        for i in range(6):
            assert store.put_device(twinstore.Device(f"default/d{i}", f"d{i}"))
        many = {
            f"p{i:02d}": twinstore.Twin(f"p{i:02d}", actual=str(i), actual_ts=1_000 * (i + 1))
            for i in range(9)
        }
        store.apply(twinstore.Batch(twins=[("default/d0", many, None)]))
    finally:
        store.close()
    devices = providers.read_devices(str(db), max_devices=4, max_twins=5)
    assert [d.id for d in devices] == [f"default/d{i}" for i in range(5)]  # one more than allowed: "cut"
    assert [t.name for t in devices[0].twins] == [f"p{i:02d}" for i in range(6)]
    assert devices[0].last_report == 6.0  # the newest actual value read
    body = s.render(s.DeviceList(devices=tuple(devices) * 200))
    doc = s.loads(s.DeviceList, body)
    assert "devices" in doc.truncated


def test_a_database_without_device_tables_has_no_devices_and_garbage_is_an_error(tmp_path: Path) -> None:
    meta_only = tmp_path / "meta.db"
    st.MetaStore.open(meta_only).close()
    assert providers.read_devices(str(meta_only)) == []
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database" * 100)
    with pytest.raises(sqlite3.DatabaseError):
        providers.read_devices(str(garbage))


# --- MetaManager ---------------------------------------------------------------------------------------------


async def test_pending_acks_counts_cloud_messages_until_they_are_stored_and_acked(tmp_path: Path) -> None:
    db_path = tmp_path / "edgecore.db"
    store = st.MetaStore.open(db_path)
    board = StatusBoard()
    # A second writer on the same file holds the write lock: MetaManager's commit waits, as behind a slow disk.
    blocker = sqlite3.connect(db_path, isolation_level=None)
    try:
        with trio.fail_after(DEADLINE):
            async with run_manager(store) as r:
                provider = providers.MetaProvider(
                    r.manager, str(db_path), pending_acks=lambda: r.manager.pending_acks
                )
                await connect(r)
                # The outbox check on connect reads the store; it must be done before the other writer blocks it.
                await until(lambda: not r.manager.outbox_pending)
                await provider(board)
                assert board.meta.pending_acks == 0
                blocker.execute("BEGIN IMMEDIATE")
                for i in range(3):
                    await r.inbox.send(
                        cloud_msg(
                            "insert", f"default/configmap/c{i}", configmap(f"c{i}", str(i + 1)), rv=str(i + 1)
                        )
                    )
                await trio.sleep(0.2)  # MetaManager takes what it can; its write waits on the other writer
                await provider(board)
                blocked = board.meta
                in_inbox = r.inbox.statistics().current_buffer_used
                blocker.execute("COMMIT")
                acks = [await r.recv_cloud() for _ in range(3)]
                await until(lambda: r.manager.pending_acks == 0)
                await provider(board)
    finally:
        blocker.close()
        store.close()
    assert blocked.pending_acks == 3
    assert in_inbox < 3  # some were taken from the inbox: counted while their write and ack are not done
    assert blocked.acked == 0
    assert [a.content for a in acks] == ["OK"] * 3
    assert board.meta.pending_acks == 0
    assert board.meta.acked == 3


async def test_edgecore_wires_the_feeds_onto_its_board(tmp_path: Path, sock_dir: Path) -> None:
    from kubeedge.edge import app
    from kubeedge.kit import config

    db = tmp_path / "edgecore.db"
    sock = str(sock_dir / "s.sock")
    cfg = config.load_edgecore(
        "apiVersion: edgecore.config.kubeedge.io/v1alpha2\nkind: EdgeCore\n"
        f"database:\n  dataSource: {db}\n"
        "modules:\n  edged:\n    enable: false\n  edgeHub:\n    enable: false\n    websocket:\n      server: 127.0.0.1:10000\n"
        f"  statusServer:\n    socketPath: {sock}\n"
        f"  eventBus:\n    mqttMode: 0\n    mqttServerInternal: tcp://127.0.0.1:{free_port()}\n"
    )
    store = app.open_store(cfg)
    try:
        modules = app.build_modules(cfg, store, ssl.create_default_context())
        bus = next(m for m in modules if isinstance(m, EventBus))
        with trio.fail_after(DEADLINE):
            hive = beehive.Beehive(modules, shutdown_timeout=2)
            async with trio.open_nursery() as nursery:
                await nursery.start(hive.run)
                await wait_subscribed(bus)
                doc = None
                while doc is None or not doc.mqtt.connected or doc.meta.pending_acks is None:
                    await trio.sleep(0.05)  # the board refreshes at most once a second
                    doc = s.loads(s.Snapshot, (await get(sock, "/v1/status")).body)
                hive.shutdown()
    finally:
        store.close()
    assert doc.mqtt.mode == "internal"
    assert doc.meta.pending_acks == 0
    assert doc.devices == ()
    assert not any(e.reason == "ProviderFailed" for e in doc.events)
