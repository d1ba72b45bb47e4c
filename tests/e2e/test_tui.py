"""The status TUI against a real edgecore: cloudcore and a joined edgecore as processes, a pod applied with
kubectl and run on Docker, a Device bound to the node whose paho-mqtt mapper reports over mosquitto (edgecore's
EventBus in mqttMode 2 on the test's broker), and the Textual app driven with the Pilot over edgecore's own
status socket: every tab and key binding, then cloudcore stopped and the header turning offline."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from textual.widgets import DataTable, Input, Static, TabbedContent

from kubeedge.cloud.devicecontroller.controller import DEVICES, GROUP, MODELS, VERSION
from kubeedge.kit import images
from kubeedge.kit import status as s
from kubeedge.tui.app import DeviceScreen, EdgeStatusApp, HelpScreen, KeyedTable, PodScreen
from tests.conftest import Broker
from tests.devicekit import Mapper
from tests.e2e.conftest import BIN, EdgeCluster, wait_until
from tests.tui.conftest import first_refresh, run, text_of
from tests.tui.conftest import wait_until as pilot_until

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.mqtt]

POD = "tui-web"
DEVICE = "tui-thermo"
DEV = "$hw/events/device"
LIVE = 90.0
"""Deadline for what real processes must do (a pod to start on a loaded machine, the cloud to notice)."""


def cells(table: DataTable[Any], column: int) -> list[str]:
    return [str(table.get_row_at(i)[column]) for i in range(table.row_count)]


@pytest.fixture
def cluster(tmp_path: Path, mosquitto: Broker) -> Iterator[EdgeCluster]:
    """A joined node whose EventBus uses the test's mosquitto (mqttMode 2), as a mapper would find it."""
    import docker as docker_sdk

    client = docker_sdk.from_env()
    try:
        images.ensure_busybox_image(client)
    finally:
        client.close()
    (tmp_path / "edge").mkdir()
    c = EdgeCluster(tmp_path, node=f"tui-{uuid.uuid4().hex[:8]}")
    c.write_cloud_config()
    try:
        c.start_cloud()
        c.join()
        cfg = yaml.safe_load(c.edge_config.read_text())
        bus = cfg["modules"]["eventBus"]
        bus["mqttMode"] = 2
        bus["mqttServerExternal"] = mosquitto.url
        tag = uuid.uuid4().hex[:8]
        bus["mqttSubClientID"] = f"hub-client-sub-{tag}"
        bus["mqttPubClientID"] = f"hub-client-pub-{tag}"
        # Node status goes up every 2 s, so that the offline part sees it queue in MetaManager's outbox soon.
        cfg["modules"]["edged"]["tailoredKubeletConfig"]["nodeStatusUpdateFrequency"] = "2s"
        c.edge_config.write_text(yaml.safe_dump(cfg, sort_keys=False))
        c.start_edge()
        c.wait_node_ready(LIVE)
        yield c
    finally:
        c.teardown()


def kubectl(c: EdgeCluster, *args: str) -> str:
    result = subprocess.run(
        [str(BIN / "kubectl"), "--kubeconfig", str(c.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result.stdout


def custom(c: EdgeCluster, plural: str, body: dict[str, Any]) -> None:
    from kubernetes import client, config

    with config.new_client_from_config(str(c.kubeconfig)) as api:
        client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, "default", plural, body)


def apply_workload(c: EdgeCluster, folder: Path) -> None:
    """The pod (kubectl apply), then a DeviceModel and a Device bound to the node (the kubernetes client)."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": POD, "namespace": "default"},
        "spec": {
            "nodeName": c.node,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "web",
                    "image": images.BUSYBOX_TAG,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", "echo serving the status demo; exec sleep 3600"],
                }
            ],
        },
    }
    manifest = folder / "pod.yaml"
    manifest.write_text(json.dumps(pod))
    assert "created" in kubectl(c, "apply", "-f", str(manifest))
    custom(
        c,
        MODELS,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "DeviceModel",
            "metadata": {"name": "thermometer", "namespace": "default"},
            "spec": {"protocol": "modbus", "properties": [{"name": "temp", "type": "INT"}]},
        },
    )
    custom(
        c,
        DEVICES,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Device",
            "metadata": {"name": DEVICE, "namespace": "default"},
            "spec": {
                "deviceModelRef": {"name": "thermometer"},
                "nodeName": c.node,
                "protocol": {"protocolName": "modbus"},
                "properties": [
                    {"name": "temp", "reportToCloud": True},
                    {"name": "setpoint", "desired": {"value": "21", "metadata": {"type": "int"}}},
                ],
            },
        },
    )


def test_every_screen_and_key_against_a_real_edgecore(
    cluster: EdgeCluster, mosquitto: Broker, tmp_path: Path
) -> None:
    c = cluster
    socket_path = yaml.safe_load(c.edge_config.read_text())["modules"]["statusServer"]["socketPath"]
    mapper = Mapper(mosquitto.host, mosquitto.port, client_id=f"mapper-{c.node}")
    try:
        apply_workload(c, tmp_path)
        # The mapper learns its device from the node's membership, then reports a value and its state.
        mapper.wait_for(
            f"$hw/events/node/{c.node}/membership/updated",
            lambda p: any(d["id"] == f"default/{DEVICE}" for d in p.get("added_devices") or ()),
            timeout=LIVE,
        )
        mapper.publish(
            f"{DEV}/default/{DEVICE}/twin/update",
            {"event_id": "r1", "twin": {"temp": {"actual": {"value": "23"}, "metadata": {"type": "int"}}}},
        )
        mapper.wait_for(f"{DEV}/default/{DEVICE}/twin/update/result", lambda p: p.get("event_id") == "r1")
        mapper.publish(f"{DEV}/default/{DEVICE}/state/update", {"event_id": "s1", "state": "online"})
        mapper.wait_for(f"{DEV}/default/{DEVICE}/state/update/result", lambda p: p.get("event_id") == "s1")
        uid = wait_until("the pod in the API", lambda: c.pod(POD), 30, c.cloud_log).metadata.uid

        async def body() -> None:
            app = EdgeStatusApp(socket_path, interval=0.5)
            async with app.run_test(size=(100, 30)) as pilot:
                await first_refresh(pilot)
                header = app.query_one("#header", Static)
                await pilot_until(
                    pilot, lambda: "cloud connected" in text_of(header), lambda: text_of(header), LIVE
                )
                assert text_of(header).startswith(f"{c.node} │ cloud connected")
                assert not header.has_class("offline")
                overview = app.query_one("#overview-text", Static)
                tabs = app.query_one("#tabs", TabbedContent)

                # Pods: the pod runs on Docker; Enter shows its container and the container's log lines.
                await pilot.press("2")
                assert tabs.active == "pods"
                pods = app.query_one("#pods-table", KeyedTable)

                def running() -> bool:
                    return POD in cells(pods, 1) and cells(pods, 3)[cells(pods, 1).index(POD)] == "Running"

                await pilot_until(pilot, running, lambda: f"{POD} Running, rows {cells(pods, 1)}", LIVE)
                pods.move_cursor(row=cells(pods, 1).index(POD))
                assert pods.selected_key() == uid
                await pilot.press("enter")
                assert isinstance(app.screen, PodScreen)
                assert cells(app.screen.query_one("#containers", KeyedTable), 0) == ["web"]
                log = app.screen.query_one("#log-text", Static)
                await pilot_until(
                    pilot, lambda: "serving the status demo" in text_of(log), lambda: text_of(log), LIVE
                )
                assert text_of(log).startswith("── web ──\n")
                await pilot.press("escape")
                assert not isinstance(app.screen, PodScreen)

                # Filter: '/' narrows the pods to what is typed; escape clears it.
                await pilot.press("slash")
                assert app.focused is app.query_one("#filter", Input)
                await pilot.press(*"no-such-pod")
                assert pods.row_count == 0
                await pilot.press("escape")
                assert POD in cells(pods, 1)

                # Devices: the device with the value its mapper reported over mosquitto.
                await pilot.press("3")
                assert tabs.active == "devices"
                devices = app.query_one("#devices-table", KeyedTable)
                await pilot_until(
                    pilot, lambda: DEVICE in cells(devices, 0), lambda: f"rows {cells(devices, 0)}", LIVE
                )
                row = cells(devices, 0).index(DEVICE)
                assert (cells(devices, 1)[row], cells(devices, 4)[row]) == ("default", "online")
                assert cells(devices, 5)[row] == "1/2"  # setpoint expected 21, nothing reported yet
                devices.move_cursor(row=row)
                await pilot.press("enter")
                assert isinstance(app.screen, DeviceScreen)
                twins = app.screen.query_one("#twins", KeyedTable)
                by_name = {
                    str(r[0]): [str(v) for v in r]
                    for r in (twins.get_row_at(i) for i in range(twins.row_count))
                }
                assert set(by_name) == {"temp", "setpoint"}
                assert by_name["temp"][1:4] == ["-", "23", "yes"]
                assert by_name["setpoint"][1:4] == ["21", "-", "NO"]
                await pilot.press("q")  # closes the detail screen, not the app
                assert not isinstance(app.screen, DeviceScreen)

                # Link: the cloud server and state; Events: what the modules reported.
                await pilot.press("4")
                link_table = app.query_one("#link-table", KeyedTable)
                link = dict(zip(cells(link_table, 0), cells(link_table, 1), strict=True))
                assert link["server"] == f"127.0.0.1:{c.ws_port}"
                assert link["state"] == "connected"
                await pilot.press("5")
                assert tabs.active == "events"
                events = app.query_one("#events-table", KeyedTable)
                assert "MqttConnected" in cells(events, 3)

                await pilot.press("question_mark")
                assert isinstance(app.screen, HelpScreen)
                await pilot.press("escape")
                assert not isinstance(app.screen, HelpScreen)

                await pilot.press("1")
                assert tabs.active == "overview"
                assert app.snapshot is not None
                snap = app.snapshot
                assert snap.mqtt.connected
                assert snap.mqtt.mode == "external"
                assert snap.mqtt.messages_in >= 2  # the twin and state reports
                assert snap.meta.pending_acks is not None
                text = text_of(overview)
                assert "1 (1 online, 1 twins out of sync)" in text
                assert f"external {mosquitto.url}  connected  in " in text
                assert "pending acks 0" in text

                # The cloud goes away: the header turns red and says for how long.
                await asyncio.to_thread(c.stop, "cloudcore")
                await pilot_until(
                    pilot,
                    lambda: header.has_class("offline"),
                    lambda: f"offline, saw {text_of(header)}",
                    LIVE,
                )
                assert "CLOUD OFFLINE" in text_of(header)
                assert app.snapshot is not None
                assert app.snapshot.link.state is not s.LinkState.CONNECTED
                # What edged sends up meanwhile waits in MetaManager's outbox, shown as queued upstream.
                await pilot_until(
                    pilot,
                    lambda: app.snapshot is not None and (app.snapshot.meta.outbox or 0) > 0,
                    lambda: f"queued upstream messages, saw {app.snapshot and app.snapshot.meta}",
                    LIVE,
                )
                assert f"queued upstream {app.snapshot.meta.outbox}" in text_of(overview)

                await pilot.press("q")
                await pilot.pause()
            assert not app.is_running

        run(body(), timeout=4 * LIVE)
    finally:
        mapper.close()
