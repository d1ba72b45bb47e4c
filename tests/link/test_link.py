"""CloudHub and EdgeHub over real mTLS on loopback: round trips, identity, limits, replacement."""

from __future__ import annotations

import logging
import time

import pytest
import trio

from kubeedge.cli import cloudapp
from kubeedge.edge.edgehub.hub import EdgeHub, is_connect_event
from kubeedge.kit import config
from kubeedge.kit.wslink import CloseCode
from kubeedge.proto.message import Message
from kubeedge.proto.vocab import CLOUD_CONNECTED, CLOUD_DISCONNECTED, Operation

from .conftest import PKI, RunningCloud, make_edge, start_cloud


def _pod(node: str, name: str, uid: str, rv: str, op: str = "update") -> Message:
    return Message.new(
        source="edgecontroller",
        group="resource",
        operation=op,
        resource=f"node/{node}/default/pod/{name}",
        content={"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "uid": uid}},
        now_ms=int(time.time() * 1000),
        resource_version=rv,
    )


async def _connected(edge: EdgeHub) -> None:
    msg = await edge.receive()
    assert is_connect_event(msg)
    assert msg.content == CLOUD_CONNECTED


async def _wait_for(predicate: object, what: str) -> None:
    assert callable(predicate)
    while not predicate():
        await trio.sleep(0.01)


async def test_round_trip_both_directions(pki: PKI, cloud: RunningCloud, nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        edge = make_edge(pki, cloud.server, "edge-1")
        await nursery.start(edge.run)
        await _connected(edge)
        event = await cloud.next_upstream(lambda m: m.route.operation == Operation.CONNECTED)
        assert event.route.resource == "node/edge-1"
        assert event.content["client_id"] == "edge-1"

        # edge -> cloud: the hub adds the node prefix on read
        up = Message.new(
            source="edged",
            group="meta",
            operation="update",
            resource="default/podstatus/nginx",
            content={"UID": "u1"},
            now_ms=1,
        )
        await edge.send(up)
        got = await cloud.next_upstream(lambda m: m.msg_id == up.msg_id)
        assert got.route.resource == "node/edge-1/default/podstatus/nginx"
        assert got.content == {"UID": "u1"}

        # cloud -> edge: prefix stripped on write, acked after durably_handled
        acked: list[Message] = []
        session = cloud.hub.session("edge-1")
        assert session is not None
        session.delivery.on_acked = lambda node, msg: acked.append(msg)
        down = _pod("edge-1", "nginx", "uid-1", "42")
        assert cloud.hub.send_to_node("edge-1", down) == "queued"
        received = await edge.receive()
        assert received.msg_id == down.msg_id
        assert received.route.resource == "default/pod/nginx"
        assert received.header.resource_version == "42"
        assert session.delivery.in_flight == 1
        await edge.durably_handled(received)
        await _wait_for(lambda: acked, "ack")
        assert acked[0].msg_id == down.msg_id
        assert session.delivery.in_flight == 0


async def test_unknown_node_send_returns_none(cloud: RunningCloud) -> None:
    assert cloud.hub.send_to_node("nobody", _pod("nobody", "p", "u", "1")) is None


async def test_unacked_message_is_resent_with_same_id(pki: PKI, nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        cloud = await start_cloud(nursery, pki, ack_timeout=0.2)
        edge = make_edge(pki, cloud.server, "edge-r")
        await nursery.start(edge.run)
        await _connected(edge)
        down = _pod("edge-r", "p", "uid-r", "7")
        cloud.hub.send_to_node("edge-r", down)
        first = await edge.receive()
        second = await edge.receive()  # no ack yet: the same message id again after ack_timeout
        assert first.msg_id == second.msg_id == down.msg_id
        await edge.durably_handled(second)
        session = cloud.hub.session("edge-r")
        assert session is not None
        await _wait_for(lambda: session.delivery.in_flight == 0, "ack")


async def test_refused_clients(pki: PKI, cloud: RunningCloud, nursery: trio.Nursery) -> None:
    """No client cert, a cert from another CA, node A's cert claiming node B: no session, ever."""
    with trio.fail_after(15):
        no_cert = make_edge(pki, cloud.server, "edge-x", ctx=pki.client_context(None))
        foreign = make_edge(pki, cloud.server, "edge-y", ctx=pki.client_context("edge-y", ca=pki.foreign))
        impostor = make_edge(pki, cloud.server, "edge-b", ctx=pki.client_context("edge-a"))
        for edge in (no_cert, foreign, impostor):
            await nursery.start(edge.run)
        await _wait_for(lambda: all(e.dials >= 3 for e in (no_cert, foreign, impostor)), "redials")
        assert cloud.hub.nodes == []
        assert not any(e.connected for e in (no_cert, foreign, impostor))
        # The impostor passed TLS, so the cloud told it why with a close code.
        assert impostor.last_close is not None
        assert impostor.last_close[0] == CloseCode.NODE_FORBIDDEN
        assert "system:node:edge-a" in impostor.last_close[1]


@pytest.mark.parametrize(
    ("cloud_hub_yaml", "enforced"),
    [
        ("{}", True),
        ("{authorization: {enable: false, debug: true}}", True),  # upstream's default keeps our check on
        ("{nodeAuthorization: {enable: false}}", False),
        ("{nodeAuthorization: {enable: false}, authorization: {enable: true, debug: true}}", False),
        ("{nodeAuthorization: {enable: false}, authorization: {enable: true, debug: false}}", True),
    ],
)
async def test_node_authorization_config_key(
    pki: PKI, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture, cloud_hub_yaml: str, enforced: bool
) -> None:
    """``modules.cloudHub.nodeAuthorization.enable`` decides whether node A's certificate may claim node B."""
    with caplog.at_level(logging.WARNING, logger="kubeedge.cli.cloudapp"):
        configured = cloudapp.hub_settings(config.load_cloudcore(f"modules: {{cloudHub: {cloud_hub_yaml}}}"))
    assert configured.authorize_nodes is enforced
    assert ("node authorization is OFF" in caplog.text) is not enforced
    with trio.fail_after(10):
        cloud = await start_cloud(nursery, pki, authorize_nodes=configured.authorize_nodes)
        edge = make_edge(pki, cloud.server, "edge-b", ctx=pki.client_context("edge-a"))
        await nursery.start(edge.run)
        if enforced:
            await _wait_for(lambda: edge.dials >= 2, "a redial")
            assert edge.last_close is not None
            assert edge.last_close[0] == CloseCode.NODE_FORBIDDEN
            assert cloud.hub.nodes == []
            assert not edge.connected
        else:
            await _connected(edge)
            assert cloud.hub.nodes == ["edge-b"]


async def test_node_limit_closes_with_code(pki: PKI, nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        cloud = await start_cloud(nursery, pki, node_limit=1)
        first = make_edge(pki, cloud.server, "edge-1")
        await nursery.start(first.run)
        await _connected(first)
        second = make_edge(pki, cloud.server, "edge-2")
        await nursery.start(second.run)
        await _wait_for(lambda: second.last_close is not None, "refusal")
        assert second.last_close is not None
        assert second.last_close[0] == CloseCode.TRY_AGAIN_LATER
        assert "nodeLimit 1" in second.last_close[1]
        assert cloud.hub.nodes == ["edge-1"]
        # refused right after the upgrade: the edge never announced a session
        assert not second.connected
        with trio.move_on_after(0.2) as quiet:
            await second.receive()
        assert quiet.cancelled_caught


async def test_new_connection_replaces_session(pki: PKI, cloud: RunningCloud, nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        old = make_edge(pki, cloud.server, "edge-1", reconnect_base=30.0, reconnect_cap=30.0)
        await nursery.start(old.run)
        await _connected(old)
        old_session = cloud.hub.session("edge-1")
        new = make_edge(pki, cloud.server, "edge-1")
        await nursery.start(new.run)
        await _connected(new)
        gone = await old.receive()
        assert gone.content == CLOUD_DISCONNECTED
        assert old.last_close is not None
        assert old.last_close[0] == CloseCode.REPLACED
        current = cloud.hub.session("edge-1")
        assert current is not None
        assert current is not old_session
        assert cloud.hub.nodes == ["edge-1"]
        # The replaced session announced nothing: the last event for edge-1 is "connected".
        events = []
        while True:
            try:
                events.append(cloud.upstream.receive_nowait())
            except trio.WouldBlock:
                break
        ops = [m.route.operation for m in events if m.route.resource == "node/edge-1"]
        assert ops == [Operation.CONNECTED, Operation.CONNECTED]
        # The new session works.
        cloud.hub.send_to_node("edge-1", _pod("edge-1", "p", "u", "1"))
        assert (await new.receive()).route.resource == "default/pod/p"


async def test_node_delete_ends_the_session_instead_of_being_sent(
    pki: PKI, cloud: RunningCloud, nursery: trio.Nursery
) -> None:
    with trio.fail_after(10):
        edge = make_edge(pki, cloud.server, "edge-d", reconnect_base=30.0, reconnect_cap=30.0)
        await nursery.start(edge.run)
        await _connected(edge)
        delete = Message.new(
            source="edgecontroller",
            group="resource",
            operation="delete",
            resource="node/edge-d/null/node/edge-d",
            content={"metadata": {"name": "edge-d", "uid": "n1"}},
            now_ms=0,
        )
        assert cloud.hub.send_to_node("edge-d", delete) is None
        assert (await edge.receive()).content == CLOUD_DISCONNECTED  # nothing else arrived first
        assert edge.last_close is not None
        assert edge.last_close[0] == CloseCode.NODE_DELETED
