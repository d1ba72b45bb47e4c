"""Devices end to end: kubernetes client -> embedded API server -> DeviceController -> twin -> mosquitto -> mapper, and back.

One beehive holds the cloud side (DeviceController, a CloudHub stand-in) and one edge node (twin, the
real EventBus on the real broker, an EdgeHub stand-in); the stand-ins do CloudHub's resource
rewriting (see ``tests/devicekit.py``). The API server is the embedded one, driven with the real
``kubernetes`` client, which DeviceController also uses.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from kubeedge.cloud.devicecontroller.controller import DEVICES, GROUP, MODELS, VERSION, DeviceController
from kubeedge.edge.devicetwin.module import DeviceTwin
from kubeedge.kit import beehive
from kubeedge.proto.message import Message
from tests.apiserver.conftest import Cluster, start_cluster
from tests.conftest import Broker
from tests.devicekit import CloudLink, EdgeLink, LinkState, Mapper, eventbus, wait_subscribed, wait_until

NODE = "edge-e2e"
DEV = "$hw/events/device"
_ids = itertools.count()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = start_cluster(tmp_path_factory.mktemp("apiserver"), bookmark_interval_s=0.5)
    try:
        yield c
    finally:
        c.thread.stop()


@asynccontextmanager
async def running(
    cluster: Cluster, broker: Broker, db: Path
) -> AsyncIterator[tuple[beehive.Beehive, LinkState]]:
    state = LinkState(NODE)
    modules = [
        DeviceController(cluster.api_client, watch_timeout_s=5),
        CloudLink(state),
        DeviceTwin(data_source=db, node_name=NODE),
        bus := eventbus(broker.host, broker.port, f"e2e-{next(_ids)}"),
        EdgeLink(state),
    ]
    hive = beehive.Beehive(modules, shutdown_timeout=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(hive.run)
        await wait_subscribed(bus)
        try:
            yield hive, state
        finally:
            hive.shutdown()


def device(name: str, desired: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Device",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "deviceModelRef": {"name": "thermometer"},
            "nodeName": NODE,
            "protocol": {"protocolName": "modbus"},
            "properties": [
                {"name": "temp", "reportToCloud": True},
                {"name": "setpoint", "desired": {"value": desired, "metadata": {"type": "int"}}},
            ],
        },
    }


MODEL = {
    "apiVersion": f"{GROUP}/{VERSION}",
    "kind": "DeviceModel",
    "metadata": {"name": "thermometer", "namespace": "default"},
    "spec": {"protocol": "modbus", "properties": [{"name": "temp", "type": "INT", "accessMode": "ReadOnly"}]},
}


async def api(cluster: Cluster, fn: str, *args: Any) -> Any:
    from kubernetes import client

    def call() -> Any:
        with cluster.api_client() as c:
            return getattr(client.CustomObjectsApi(c), fn)(*args)

    return await trio.to_thread.run_sync(call)


async def poll(cluster: Cluster, name: str, pred: Any, timeout: float = 15) -> dict[str, Any]:
    with trio.fail_after(timeout):
        while True:
            obj = await api(cluster, "get_namespaced_custom_object", GROUP, VERSION, "default", DEVICES, name)
            if pred(obj):
                return dict(obj)
            await trio.sleep(0.1)  # polling the API server for a condition, under the deadline above


@pytest.mark.mqtt
async def test_device_lifecycle_through_api_controller_twin_and_mapper(
    cluster: Cluster, mosquitto: Broker, tmp_path: Path
) -> None:
    mapper = Mapper(mosquitto.host, mosquitto.port, client_id="mapper-e2e")
    try:
        with trio.fail_after(60):
            async with running(cluster, mosquitto, tmp_path / "edgecore.db") as (hive, link):
                await api(
                    cluster, "create_namespaced_custom_object", GROUP, VERSION, "default", MODELS, MODEL
                )
                await api(
                    cluster,
                    "create_namespaced_custom_object",
                    GROUP,
                    VERSION,
                    "default",
                    DEVICES,
                    device("therm-1", "20"),
                )
                # Device created in the API -> membership on the node, desired value -> delta for the mapper.
                added = await mapper.await_for(
                    f"$hw/events/node/{NODE}/membership/updated",
                    lambda p: any(d["id"] == "default/therm-1" for d in p["added_devices"]),
                )
                assert added["added_devices"][0]["name"] == "therm-1"
                delta = await mapper.await_for(f"{DEV}/default/therm-1/twin/update/delta")
                assert delta["delta"] == {"setpoint": "20"}
                assert any(m.route.resource == "default/devicemodel/thermometer" for m in link.downstream)
                # The mapper reports a value and a state -> Device status in the API.
                mapper.publish(
                    f"{DEV}/default/therm-1/twin/update",
                    {
                        "event_id": "r1",
                        "twin": {"temp": {"actual": {"value": "23"}, "metadata": {"type": "int"}}},
                    },
                )
                mapper.publish(f"{DEV}/default/therm-1/state/update", {"event_id": "s1", "state": "online"})
                obj = await poll(
                    cluster,
                    "therm-1",
                    lambda o: (
                        o.get("status", {}).get("state") == "online"
                        and any(
                            t.get("reported", {}).get("value") == "23"
                            for t in o.get("status", {}).get("twins", [])
                        )
                    ),
                )
                (temp,) = [t for t in obj["status"]["twins"] if t["propertyName"] == "temp"]
                assert temp["reported"]["metadata"]["type"] == "int"
                assert obj["status"]["lastOnlineTime"].endswith("Z")
                # Every report was confirmed by DeviceController's reply.
                ok = [
                    m
                    for m in link.downstream
                    if m.route.resource == "twin" and m.route.operation == "response"
                ]
                assert {m.content for m in ok} == {"OK"}
                assert {m.route.source for m in ok} == {"devicecontroller"}
                assert {m.route.group for m in ok} == {"twin"}
                # A desired change in the API arrives as a delta on the topic.
                patch = {"spec": {"properties": device("therm-1", "25")["spec"]["properties"]}}
                await api(
                    cluster,
                    "patch_namespaced_custom_object",
                    GROUP,
                    VERSION,
                    "default",
                    DEVICES,
                    "therm-1",
                    patch,
                )
                delta = await mapper.await_for(
                    f"{DEV}/default/therm-1/twin/update/delta", lambda p: p["delta"].get("setpoint") == "25"
                )
                assert delta["twin"]["setpoint"]["expected_version"]["cloud"] == 2
                # Deleting the Device removes it from the node.
                await api(
                    cluster, "delete_namespaced_custom_object", GROUP, VERSION, "default", DEVICES, "therm-1"
                )
                removed = await mapper.await_for(
                    f"$hw/events/node/{NODE}/membership/updated",
                    lambda p: any(d["id"] == "default/therm-1" for d in p["removed_devices"]),
                )
                assert removed["added_devices"] == []
                await wait_until(
                    link,
                    lambda: any(
                        m.route.operation == "delete" and m.route.resource == "default/device/therm-1"
                        for m in link.downstream
                    ),
                )
                # A report for a Device that no longer exists is answered, so the edge stops resending it;
                # a malformed one is dropped unanswered.
                ghost = Message.new(
                    source="twin", group="resource", operation="update",
                    resource=f"node/{NODE}/device/default/ghost/twin/edge_updated",
                    content={"twin": {"temp": {"actual": {"value": "1"}}}}, now_ms=hive.now_ms(),
                )  # fmt: skip
                broken = Message.new(
                    source="twin", group="resource", operation="update",
                    resource=f"node/{NODE}/device/default/ghost/state/update", content="{not json", now_ms=hive.now_ms(),
                )  # fmt: skip
                await hive.bus.send("devicecontroller", broken)
                await hive.bus.send("devicecontroller", ghost)
                await wait_until(link, lambda: any(m.parent_msg_id == ghost.msg_id for m in link.downstream))
                assert not any(m.parent_msg_id == broken.msg_id for m in link.downstream)
    finally:
        mapper.close()
