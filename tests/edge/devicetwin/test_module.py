"""DeviceTwin end to end on the edge: real mosquitto, a paho mapper, SQLite, the twin module in a beehive."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import trio

from kubeedge.edge.devicetwin import store as storemod
from kubeedge.proto import vocab
from kubeedge.proto.message import Message
from tests.conftest import Broker
from tests.devicekit import Mapper, wait_until

from .conftest import NODE, Edge, running_edge

DEV = "$hw/events/device"


async def add_member(edge: Edge, ns: str, name: str) -> None:
    msg = Message.new(
        source="devicecontroller",
        group="twin",
        operation="update",
        resource="membership",
        content={
            "event_id": "m1",
            "timestamp": 1,
            "added_devices": [{"id": f"{ns}/{name}", "name": name, "description": "a thermometer"}],
            "removed_devices": None,
        },
        now_ms=edge.hive.now_ms(),
    )
    await edge.hive.bus.send_to_group("twin", msg)


def reports(edge: Edge, suffix: str) -> list[Message]:
    return [m for m in edge.link.upstream if m.route.resource.endswith(suffix)]


async def test_membership_update_result_document_and_report(
    db: Path, mosquitto: Broker, mapper: Mapper
) -> None:
    with trio.fail_after(20):
        async with running_edge(db, mosquitto) as edge:
            await add_member(edge, "default", "thermo-a")
            updated = await mapper.await_for(
                f"$hw/events/node/{NODE}/membership/updated",
                lambda p: any(d["id"] == "default/thermo-a" for d in p["added_devices"]),
            )
            assert updated["removed_devices"] == []
            mapper.publish(
                f"{DEV}/default/thermo-a/twin/update",
                {
                    "event_id": "e1",
                    "timestamp": 5,
                    "twin": {"temp": {"actual": {"value": "23"}, "metadata": {"type": "int"}}},
                },
            )
            result = await mapper.await_for(
                f"{DEV}/default/thermo-a/twin/update/result", lambda p: p["event_id"] == "e1"
            )
            assert result["twin"]["temp"]["actual"]["value"] == "23"
            assert result["twin"]["temp"]["actual_version"] == {"cloud": 0, "edge": 1}
            assert "code" not in result
            doc = await mapper.await_for(f"{DEV}/default/thermo-a/twin/update/document")
            assert doc["twin"]["temp"]["last"] is None
            assert doc["twin"]["temp"]["current"]["actual"]["value"] == "23"
            await wait_until(edge.link, lambda: bool(reports(edge, "twin/edge_updated")))
            (report,) = reports(edge, "twin/edge_updated")
            assert report.route.source == "twin"
            assert report.route.group == "resource"
            assert report.route.operation == "update"
            assert report.route.resource == "device/default/thermo-a/twin/edge_updated"
            assert report.content["twin"]["temp"]["actual"]["value"] == "23"
            mapper.publish(f"{DEV}/default/thermo-a/state/update", {"event_id": "s1", "state": "online"})
            state = await mapper.await_for(
                f"{DEV}/default/thermo-a/state/update/result", lambda p: p["event_id"] == "s1"
            )
            assert state["device"]["state"] == "online"
            assert state["device"]["lastOnlineTime"].endswith("Z")
            await wait_until(edge.link, lambda: bool(reports(edge, "state/update")))
            (sreport,) = reports(edge, "state/update")
            assert isinstance(sreport.content, str)  # upstream sends this one as a JSON string
            assert json.loads(sreport.content)["device"]["state"] == "online"
            assert edge.twin.store is not None
            assert await trio.to_thread.run_sync(edge.twin.store.outbox_len) == 2
            for r in (report, sreport):  # DeviceController's reply confirms each report
                reply = Message.new(
                    source="devicecontroller", group="twin", operation="response", resource="twin",
                    content="OK", now_ms=edge.hive.now_ms(), parent_msg_id=r.msg_id,
                )  # fmt: skip
                await edge.hive.bus.send_to_group("twin", reply)
            store = edge.twin.store
            await wait_until(edge.link, lambda: store.outbox_len() == 0)
            mapper.publish(f"{DEV}/default/thermo-a/twin/get", {"event_id": "g0"})
            got = await mapper.await_for(
                f"{DEV}/default/thermo-a/twin/get/result", lambda p: p["event_id"] == "g0"
            )
            assert got["twin"]["temp"]["actual"]["value"] == "23"
    # Upstream's tables and columns, in the shared database file.
    with sqlite3.connect(db) as conn:
        (row,) = conn.execute("SELECT id, name, description, state FROM device").fetchall()
        assert row == ("default/thermo-a", "thermo-a", "a thermometer", "online")
        twin_row = conn.execute(
            "SELECT deviceid, name, actual, attr_type, actual_version FROM device_twin"
        ).fetchall()
        assert twin_row == [("default/thermo-a", "temp", "23", "int", '{"cloud": 0, "edge": 1}')]


async def test_invalid_payloads_get_error_results(db: Path, mosquitto: Broker, mapper: Mapper) -> None:
    base = f"{DEV}/default/thermo-b"
    with trio.fail_after(20):
        async with running_edge(db, mosquitto) as edge:
            await add_member(edge, "default", "thermo-b")
            await mapper.await_for(f"$hw/events/node/{NODE}/membership/updated")
            cases: list[tuple[str, Any, str, int, str]] = [
                ("twin/update", b"{not json", "twin/update/result", 400, "not valid JSON"),
                ("twin/update", {"event_id": "k", "twin": {"bad key!": {"actual": {"value": "1"}}}}, "twin/update/result", 400, "bad key!"),
                ("twin/update", {"event_id": "v", "twin": {"t": {"actual": {"value": "x"}, "metadata": {"type": "int"}}}}, "twin/update/result", 400, "not a valid int"),
                ("twin/update", {"event_id": "c", "twin": {"t": {"actual": {"value": "a b"}}}}, "twin/update/result", 400, "must match"),
                ("twin/update", [1, 2], "twin/update/result", 400, "JSON object"),
                ("state/update", {"event_id": "st", "state": "sleepy"}, "state/update/result", 400, "sleepy"),
            ]  # fmt: skip
            for suffix, payload, result_suffix, code, needle in cases:
                mapper.publish(f"{base}/{suffix}", payload)
                res = await mapper.await_for(
                    f"{base}/{result_suffix}", lambda p, n=needle: n in p.get("reason", "")
                )
                assert res["code"] == code
            mapper.publish(f"{DEV}/default/ghost/twin/get", {"event_id": "g"})
            res = await mapper.await_for(f"{DEV}/default/ghost/twin/get/result")
            assert res["code"] == 404
            assert "default/ghost" in res["reason"]
            mapper.publish(
                f"{DEV}/default/ghost/twin/update",
                {"event_id": "u", "twin": {"t": {"actual": {"value": "1"}}}},
            )
            res = await mapper.await_for(f"{DEV}/default/ghost/twin/update/result")
            assert res["code"] == 404
            assert edge.link.upstream == []  # nothing refused reached the cloud
            assert edge.twin.store is not None
            assert edge.twin.store.twins("default/thermo-b") == {}


async def test_twin_get_answers_from_sqlite_with_cloud_unreachable(
    db: Path, mosquitto: Broker, mapper: Mapper
) -> None:
    with trio.fail_after(20):
        async with running_edge(db, mosquitto) as edge:
            await add_member(edge, "default", "thermo-c")
            await mapper.await_for(f"$hw/events/node/{NODE}/membership/updated")
        # edgecore restarts with the cloud unreachable: answers come from the database alone.
        async with running_edge(db, mosquitto, up=False) as edge:
            mapper.publish(
                f"{DEV}/default/thermo-c/twin/update",
                {
                    "event_id": "u1",
                    "twin": {"hum": {"actual": {"value": "40.5"}, "metadata": {"type": "float"}}},
                },
            )
            await mapper.await_for(
                f"{DEV}/default/thermo-c/twin/update/result", lambda p: p["event_id"] == "u1"
            )
            mapper.publish(f"{DEV}/default/thermo-c/twin/get", {"event_id": "g1"})
            got = await mapper.await_for(
                f"{DEV}/default/thermo-c/twin/get/result", lambda p: p["event_id"] == "g1"
            )
            assert got["twin"]["hum"]["actual"]["value"] == "40.5"
            assert got["twin"]["hum"]["metadata"] == {"type": "float"}
            mapper.publish(f"$hw/events/node/{NODE}/membership/get", {"event_id": "mg"})
            members = await mapper.await_for(
                f"$hw/events/node/{NODE}/membership/get/result", lambda p: p["event_id"] == "mg"
            )
            assert [d["id"] for d in members["devices"]] == ["default/thermo-c"]
            assert edge.link.upstream == []
            assert edge.twin.store is not None
            assert edge.twin.store.outbox_len() == 1  # kept for when the cloud comes back


async def test_device_desired_value_becomes_expected_and_delta(
    db: Path, mosquitto: Broker, mapper: Mapper
) -> None:
    def device(value: str) -> dict[str, Any]:
        return {
            "apiVersion": "devices.kubeedge.io/v1beta1",
            "kind": "Device",
            "metadata": {"name": "fan-d", "namespace": "default", "resourceVersion": "7"},
            "spec": {
                "nodeName": NODE,
                "deviceModelRef": {"name": "fan"},
                "properties": [
                    {"name": "speed", "desired": {"value": value, "metadata": {"type": "int"}}},
                    {"name": "noise"},
                ],
            },
        }

    with trio.fail_after(20):
        async with running_edge(db, mosquitto) as edge:
            for value in ("3", "5"):
                msg = Message.new(
                    source="metamanager", group="meta", operation="update", resource="default/device/fan-d",
                    content=device(value), now_ms=edge.hive.now_ms(),
                )  # fmt: skip
                await edge.hive.bus.send_to_group("twin", msg)
                delta = await mapper.await_for(
                    f"{DEV}/default/fan-d/twin/update/delta", lambda p, v=value: p["delta"] == {"speed": v}
                )
                assert delta["twin"]["speed"]["expected"]["value"] == value
            assert edge.twin.store is not None
            t = edge.twin.store.twins("default/fan-d")["speed"]
            assert (t.expected, t.expected_version.cloud) == ("5", 2)
            # The mapper reaching the desired value ends the delta (the result carries no delta).
            mapper.publish(
                f"{DEV}/default/fan-d/twin/update",
                {"event_id": "r", "twin": {"speed": {"actual": {"value": "5"}}}},
            )
            res = await mapper.await_for(
                f"{DEV}/default/fan-d/twin/update/result", lambda p: p["event_id"] == "r"
            )
            assert res["twin"]["speed"]["expected"]["value"] == res["twin"]["speed"]["actual"]["value"] == "5"
            delete = Message.new(
                source="metamanager",
                group="meta",
                operation=vocab.Operation.DELETE,
                resource="default/device/fan-d",
                content=None,
                now_ms=edge.hive.now_ms(),
            )
            await edge.hive.bus.send_to_group("twin", delete)
            gone = await mapper.await_for(
                f"$hw/events/node/{NODE}/membership/updated", lambda p: bool(p["removed_devices"])
            )
            assert gone["removed_devices"][0]["id"] == "default/fan-d"


async def test_reports_survive_restart_and_are_resent_until_confirmed(
    db: Path, mosquitto: Broker, mapper: Mapper
) -> None:
    with trio.fail_after(30):
        async with running_edge(db, mosquitto, up=False) as edge:
            await add_member(edge, "default", "thermo-e")
            await mapper.await_for(f"$hw/events/node/{NODE}/membership/updated")
            mapper.publish(
                f"{DEV}/default/thermo-e/twin/update",
                {"event_id": "x", "twin": {"t": {"actual": {"value": "1"}}}},
            )
            await mapper.await_for(
                f"{DEV}/default/thermo-e/twin/update/result", lambda p: p["event_id"] == "x"
            )
            assert edge.link.upstream == []
        # The process is gone; only the database file remains.
        pending = storemod.DeviceStore.open(db)
        try:
            (queued,) = pending.pending(sent_before_ms=2**62)
        finally:
            pending.close()
        async with running_edge(db, mosquitto, up=True, resend_interval=0.2) as edge:
            # Sent at once on connect, then again and again while unconfirmed.
            await wait_until(edge.link, lambda: len(edge.link.upstream) >= 3)
            assert {m.msg_id for m in edge.link.upstream} == {queued.msg_id}
            assert edge.link.upstream[0].content["twin"]["t"]["actual"]["value"] == "1"
            reply = Message.new(
                source="devicecontroller",
                group="twin",
                operation="response",
                resource="twin",
                content="OK",
                now_ms=edge.hive.now_ms(),
                parent_msg_id=queued.msg_id,
            )
            await edge.hive.bus.send_to_group("twin", reply)
            store = edge.twin.store
            assert store is not None
            await wait_until(edge.link, lambda: store.outbox_len() == 0)
            seen = len(edge.link.upstream)
            await trio.sleep(0.6)  # three resend intervals: a confirmed report is never sent again
            assert len(edge.link.upstream) == seen


async def test_burst_is_group_committed_in_order(db: Path, mosquitto: Broker, mapper: Mapper) -> None:
    n = 30
    topic = f"{DEV}/default/thermo-f/twin/update"
    with trio.fail_after(30):
        async with running_edge(db, mosquitto, up=False) as edge:
            await add_member(edge, "default", "thermo-f")
            await mapper.await_for(f"$hw/events/node/{NODE}/membership/updated")
            for i in range(1, n + 1):
                mapper.publish_nowait(
                    topic,
                    {
                        "event_id": f"b{i}",
                        "twin": {"t": {"actual": {"value": str(i)}, "metadata": {"type": "int"}}},
                    },
                )
            await mapper.await_for(f"{topic}/result", lambda p: p["event_id"] == f"b{n}")
            results = [m.payload for m in mapper.messages if m.topic == f"{topic}/result"]
            assert [r["event_id"] for r in results] == [f"b{i}" for i in range(1, n + 1)]
            assert [r["twin"]["t"]["actual_version"]["edge"] for r in results] == list(range(1, n + 1))
            mapper.publish(f"{DEV}/default/thermo-f/twin/get", {"event_id": "g"})
            got = await mapper.await_for(f"{DEV}/default/thermo-f/twin/get/result")
            assert got["twin"]["t"]["actual"]["value"] == str(n)
            assert edge.twin.store is not None
            assert edge.twin.store.outbox_len() == n  # one durable report per accepted update
        # What was answered is on disk.
        store = storemod.DeviceStore.open(db)
        try:
            t = store.twins("default/thermo-f")["t"]
            assert (t.actual, t.actual_version.edge) == (str(n), n)
        finally:
            store.close()
