"""Devices on real processes: kubectl -> cloudcore -> edgecore -> MQTT broker -> mapper, and back.

cloudcore and edgecore run as subprocesses (see ``conftest.py``); edgecore's EventBus is on the session's
mosquitto (mqttMode 2), then, for the same test, on edgecore's internal broker (mqttMode 0). The mapper
is a real paho-mqtt client; ``mosquitto_pub``/``mosquitto_sub`` act as a second one, so both client
kinds are covered. The Device and DeviceModel are created and changed with the real ``kubectl``;
edgecore's SQLite file is read directly. A second Device is deleted with kubectl and leaves the node. The
last step stops cloudcore and checks that ``twin/get`` is answered from the edge's database.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from tests.conftest import Broker
from tests.devicekit import Mapper
from tests.e2e.conftest import BIN, EdgeCluster, start_edge_cluster, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.mqtt]

DEV = "$hw/events/device"
NAME = "therm-live"
ID = f"default/{NAME}"


@dataclass(frozen=True)
class Setup:
    cluster: EdgeCluster
    broker: Broker
    """The broker edgecore's EventBus uses, which the mappers talk to."""


@pytest.fixture(scope="module", params=["mosquitto", "internal-broker"])
def setup(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, mosquitto: Broker
) -> Iterator[Setup]:
    """cloudcore + edgecore whose EventBus uses the session's mosquitto (mqttMode 2) or its own broker (mode 0)."""
    external = request.param == "mosquitto"
    c = start_edge_cluster(
        tmp_path_factory.mktemp("e2e-mapper"), mqtt_external=mosquitto.url if external else ""
    )
    try:
        yield Setup(c, mosquitto if external else Broker("127.0.0.1", c.mqtt_port))
    finally:
        c.teardown()


def kubectl(c: EdgeCluster, *args: str, stdin: str | None = None) -> str:
    """Run the real kubectl against the embedded API server; fails the test on a non-zero exit."""
    done = subprocess.run(
        [str(BIN / "kubectl"), "--kubeconfig", str(c.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done.stdout


def device_status(c: EdgeCluster) -> dict[str, Any]:
    out = kubectl(c, "get", "devices.devices.kubeedge.io", NAME, "-n", "default", "-o", "json")
    return dict(json.loads(out).get("status") or {})


def reported(status: dict[str, Any], prop: str) -> str | None:
    for twin in status.get("twins") or []:
        if twin.get("propertyName") == prop:
            return (twin.get("reported") or {}).get("value")
    return None


def edge_db(c: EdgeCluster, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows from edgecore's SQLite file, read-only (edgecore keeps writing it in WAL mode)."""
    path = c.work / "edge/edgecore.db"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
        return list(db.execute(sql, params))


def manifests(node: str, setpoint: str, name: str = NAME) -> str:
    model = {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "DeviceModel",
        "metadata": {"name": "thermometer-live", "namespace": "default"},
        "spec": {
            "protocol": "modbus",
            "properties": [
                {"name": "temp", "type": "INT", "accessMode": "ReadOnly"},
                {"name": "setpoint", "type": "INT", "accessMode": "ReadWrite"},
            ],
        },
    }
    device = {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "deviceModelRef": {"name": "thermometer-live"},
            "nodeName": node,
            "protocol": {"protocolName": "modbus"},
            "properties": [
                {"name": "temp", "reportToCloud": True},
                {"name": "setpoint", "desired": {"value": setpoint, "metadata": {"type": "int"}}},
            ],
        },
    }
    return yaml.safe_dump_all([model, device])


def mosquitto_sub(broker: Broker, topic: str, count: int) -> subprocess.Popen[str]:
    """``mosquitto_sub -d`` printing ``count`` messages on ``topic`` then exiting (60 s bound)."""
    return subprocess.Popen(
        # stdbuf: mosquitto_sub's stdout is block-buffered on a pipe, and the test reads its SUBACK line.
        [
            "stdbuf",
            "-oL",
            "mosquitto_sub",
            "-h",
            broker.host,
            "-p",
            str(broker.port),
            "-q",
            "1",
            "-t",
            topic,
            "-C",
            str(count),
            "-W",
            "60",
            "-d",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def mosquitto_pub(broker: Broker, topic: str, payload: str) -> None:
    subprocess.run(
        ["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-q", "1", "-t", topic, "-m", payload],
        check=True,
        timeout=15,
    )


def test_device_through_kubectl_cloudcore_edgecore_and_mappers(setup: Setup) -> None:
    c, broker = setup.cluster, setup.broker
    logs = (c.edge_log, c.cloud_log)
    mapper = Mapper(broker.host, broker.port, client_id=f"mapper-{c.node}")
    try:
        kubectl(c, "apply", "-f", "-", stdin=manifests(c.node, "20"))

        # Created with kubectl -> membership on the node's topic and a row in edgecore's SQLite.
        added = mapper.wait_for(
            f"$hw/events/node/{c.node}/membership/updated",
            lambda p: any(d["id"] == ID for d in p.get("added_devices") or []),
            timeout=30,
        )
        assert [d["name"] for d in added["added_devices"] if d["id"] == ID] == [NAME]
        assert edge_db(c, "SELECT name FROM device WHERE id = ?", ID) == [(NAME,)]
        # Device acks are DeviceController's business: no ObjectSync made only to be reconciled away.
        assert "does not manage" not in c.cloud_log.read_text()
        delta = mapper.wait_for(f"{DEV}/{ID}/twin/update/delta", timeout=15)
        assert delta["delta"] == {"setpoint": "20"}
        twin_rows = dict(edge_db(c, "SELECT name, expected FROM device_twin WHERE deviceid = ?", ID))
        assert twin_rows["setpoint"] == "20"

        # The mapper reports a value -> the twin result, then the Device status in the API.
        mapper.publish(
            f"{DEV}/{ID}/twin/update",
            {"event_id": "r1", "twin": {"temp": {"actual": {"value": "23"}, "metadata": {"type": "int"}}}},
        )
        result = mapper.wait_for(f"{DEV}/{ID}/twin/update/result", lambda p: p.get("event_id") == "r1")
        assert "code" not in result
        wait_until(
            "temp=23 in the Device status", lambda: reported(device_status(c), "temp") == "23", 30, *logs
        )

        # A state update from a command-line client -> status.state in the API.
        mosquitto_pub(broker, f"{DEV}/{ID}/state/update", json.dumps({"event_id": "s1", "state": "online"}))
        status = wait_until(
            "state online in the Device status",
            lambda: (s := device_status(c)).get("state") == "online" and s,
            30,
            *logs,
        )
        assert status["lastOnlineTime"].endswith("Z")

        # A desired value changed with kubectl patch -> a delta, seen by mosquitto_sub.
        sub = mosquitto_sub(broker, f"{DEV}/{ID}/twin/update/delta", 1)
        try:
            assert sub.stdout is not None
            # -d prints the SUBACK; reading up to it (bounded by -W) means the subscription is in place.
            for line in sub.stdout:
                if "SUBACK" in line:
                    break
            props = [
                {"name": "temp", "reportToCloud": True},
                {"name": "setpoint", "desired": {"value": "25", "metadata": {"type": "int"}}},
            ]
            kubectl(
                c, "patch", "devices.devices.kubeedge.io", NAME, "-n", "default", "--type", "merge",
                "-p", json.dumps({"spec": {"properties": props}}),
            )  # fmt: skip
            out, err = sub.communicate(timeout=60)
        finally:
            if sub.poll() is None:
                sub.kill()
                sub.wait(timeout=5)
        assert sub.returncode == 0, err
        (payload,) = [line for line in out.splitlines() if line.startswith("{")]
        delta = json.loads(payload)
        assert delta["delta"] == {"setpoint": "25"}
        assert delta["twin"]["setpoint"]["expected"]["value"] == "25"

        # Invalid payloads get error results naming what was wrong.
        mapper.publish(f"{DEV}/{ID}/twin/update", "{not json")
        bad_json = mapper.wait_for(f"{DEV}/{ID}/twin/update/result", lambda p: "code" in p)
        assert bad_json["code"] == 400
        assert bad_json["reason"]
        mapper.publish(
            f"{DEV}/{ID}/twin/update",
            {"event_id": "bad-key", "twin": {"bad key!": {"actual": {"value": "1"}}}},
        )
        bad_key = mapper.wait_for(
            f"{DEV}/{ID}/twin/update/result", lambda p: p.get("event_id") == "bad-key", timeout=15
        )
        assert bad_key["code"] == 400
        assert "bad key!" in bad_key["reason"] or "key" in bad_key["reason"].lower()

        # A Device deleted with kubectl leaves the node: membership removed, row gone from SQLite.
        kubectl(c, "apply", "-f", "-", stdin=manifests(c.node, "1", name="therm-gone"))
        gone = "default/therm-gone"
        mapper.wait_for(
            f"$hw/events/node/{c.node}/membership/updated",
            lambda p: any(d["id"] == gone for d in p.get("added_devices") or []),
            timeout=30,
        )
        kubectl(c, "delete", "devices.devices.kubeedge.io", "therm-gone", "-n", "default")
        mapper.wait_for(
            f"$hw/events/node/{c.node}/membership/updated",
            lambda p: any(d["id"] == gone for d in p.get("removed_devices") or []),
            timeout=30,
        )
        wait_until(
            "therm-gone removed from edgecore's SQLite",
            lambda: edge_db(c, "SELECT id FROM device WHERE id = ?", gone) == [],
            15,
            *logs,
        )
        assert edge_db(c, "SELECT count(*) FROM device_twin WHERE deviceid = ?", gone) == [(0,)]
        assert edge_db(c, "SELECT id FROM device WHERE id = ?", ID) == [(ID,)]

        # With cloudcore stopped, twin/get is answered from edgecore's SQLite.
        assert c.stop("cloudcore") == 0
        mapper.publish(f"{DEV}/{ID}/twin/get", {"event_id": "g-offline"})
        got = mapper.wait_for(
            f"{DEV}/{ID}/twin/get/result", lambda p: p.get("event_id") == "g-offline", timeout=15
        )
        assert got["twin"]["temp"]["actual"]["value"] == "23"
        assert got["twin"]["setpoint"]["expected"]["value"] == "25"
        c.alive("edgecore")
    finally:
        mapper.close()
