"""The EventBus module itself: routing rules, mqttMode 1, config errors, bad inbox messages, missing twin."""

from __future__ import annotations

import base64
import dataclasses

import pytest
import trio

from kubeedge.edge.eventbus.eventbus import SUB_TOPICS, EventBus, route_mqtt_message
from kubeedge.edge.metamanager.store import MetaStore
from kubeedge.kit import beehive
from kubeedge.kit.config import edgecore as config
from tests.conftest import Broker as MosquittoBroker

from .conftest import DEADLINE, Edge, Recorder
from .test_mapper import Sub, mosquitto_pub


def test_routing_rules() -> None:
    group, msg = route_mqtt_message("$hw/events/device/ns/d/state/update", b'{"state":"online"}', now_ms=5)
    assert group == "twin"
    assert msg.route.resource == base64.urlsafe_b64encode(b"$hw/events/device/ns/d/state/update").decode()
    assert (msg.route.source, msg.route.group, msg.route.operation) == ("bus", "user", "response")
    assert msg.header.timestamp == 5
    group, msg = route_mqtt_message("SYS/dis/upload_records", b"\xffraw", now_ms=5)
    assert group == "hub"
    assert (msg.route.operation, msg.route.resource) == ("upload", "SYS/dis/upload_records")
    assert msg.content == "\ufffdraw"  # not UTF-8: replaced, as Go's JSON encoding of the string does


def test_upstream_subscription_set() -> None:
    assert "$hw/events/device/+/+/twin/+" in SUB_TOPICS
    assert "+/user/#" in SUB_TOPICS


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"mqtt_server_external": "http://127.0.0.1:8883"}, "scheme must be tcp://"),
        ({"mqtt_server_internal": "tcp://127.0.0.1:99999"}, "port"),
        ({"mqtt_server_external": "tcp://:1883"}, "needs a host"),
        ({"mqtt_session_queue_size": 10**9}, "mqttSessionQueueSize"),
    ],
)
def test_config_errors_name_the_problem(changes: dict[str, object], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        EventBus(dataclasses.replace(config.EventBus(), **changes))  # type: ignore[arg-type]


async def test_mode_both_bridges_internal_and_external(
    nursery: trio.Nursery, mosquitto: MosquittoBroker, store: MetaStore
) -> None:
    cfg = dataclasses.replace(
        config.EventBus(),
        mqtt_mode=1,
        mqtt_server_internal="tcp://127.0.0.1:0",
        mqtt_server_external=mosquitto.url,
    )
    bus = EventBus(cfg, store=store)
    twin = Recorder("twin", "twin")
    hub = Recorder("websocket", "hub")
    hive = beehive.Beehive([twin, hub, bus])
    with trio.fail_after(DEADLINE):
        await nursery.start(hive.run)
    assert bus.internal_port is not None
    edge = Edge(hive, bus, twin, hub, "127.0.0.1", bus.internal_port, "both", store)
    await edge.connected()
    assert [link.name for link in bus.links] == ["internal", "external"]

    for port in (bus.internal_port, mosquitto.port):
        topic = f"$hw/events/device/ns/via-{port}/twin/update"
        await mosquitto_pub(port, topic, "{}")
        msg = await twin.next()
        assert base64.urlsafe_b64decode(msg.route.resource).decode() == topic

    subs = [await Sub.start(nursery, port, "both/out") for port in (bus.internal_port, mosquitto.port)]
    await edge.from_cloud("publish", "both/out", "hello")
    for sub in subs:
        assert "both/out hello" in await sub.lines()
    hive.shutdown(hard=True)


async def test_bad_messages_are_skipped_and_missing_twin_is_survived(
    nursery: trio.Nursery, store: MetaStore
) -> None:
    cfg = dataclasses.replace(config.EventBus(), mqtt_mode=0, mqtt_server_internal="tcp://127.0.0.1:0")
    bus = EventBus(cfg, store=store, node_name="edge-9", clock=lambda: 1_700_000_123_456)
    hub = Recorder("websocket", "hub")
    hive = beehive.Beehive([hub, bus])  # no DeviceTwin running on this node
    with trio.fail_after(DEADLINE):
        await nursery.start(hive.run)
    assert bus.internal_port is not None
    edge = Edge(hive, bus, Recorder("twin", "twin"), hub, "127.0.0.1", bus.internal_port, "internal", store)
    await edge.connected()

    await mosquitto_pub(bus.internal_port, "$hw/events/device/ns/d/twin/update", "{}")  # no twin group
    await edge.from_cloud("publish", "bad/+/topic", "x")  # wildcard in a topic name
    await edge.from_cloud("message", "r", {"message": "not an object"})
    await edge.from_cloud("subscribe", "bad/#/filter", None)
    await edge.from_cloud("no-such-op", "r", None)
    sub = await Sub.start(nursery, bus.internal_port, "$hw/events/node/edge-9/authInfo/get/result")
    await edge.from_cloud("get_result", "auth_info", {"ak": "x"})
    assert '$hw/events/node/edge-9/authInfo/get/result {"ak":"x"}' in await sub.lines()
    assert await trio.to_thread.run_sync(store.sub_topics) == []
    # Still routing after all that.
    await mosquitto_pub(bus.internal_port, "ns/user/after", "ok")
    msg = await hub.next()
    assert (msg.route.resource, msg.content) == ("ns/user/after", "ok")
    assert hive.restarts("eventbus") == 0
    # Upstream's client ids: hub-client-sub|pub-<first 10 digits of Unix ms>.
    assert bus.broker is not None
    assert {"hub-client-sub-1700000123", "hub-client-pub-1700000123"} <= set(bus.broker.state.sessions)
    hive.shutdown(hard=True)
