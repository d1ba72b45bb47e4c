"""Liveness of the link: keepalive expiry, half-open detection on both sides, bad frames drop one session."""

from __future__ import annotations

import time
from typing import Any

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed

from kubeedge.cloud.cloudhub.hub import CloudHub, HubSettings
from kubeedge.edge.edgehub.hub import keepalive_message
from kubeedge.kit import limits
from kubeedge.kit.wslink import CloseCode
from kubeedge.proto import codec
from kubeedge.proto.message import Message
from kubeedge.proto.vocab import CLOUD_CONNECTED, CLOUD_DISCONNECTED, Operation

from .conftest import PKI, FaultyProxy, make_edge, raw_client, start_cloud


async def _close_code(ws: Any) -> tuple[int, str]:
    """Read until the cloud closes; its close code and reason."""
    for _ in range(1000):  # bounded: the cloud sends nothing but the close here
        try:
            await ws.get_message()
        except ConnectionClosed as exc:
            closed = exc
            break
    else:
        raise AssertionError("the cloud kept the connection open")
    reason = closed.reason
    assert reason is not None
    return reason.code, reason.reason or ""


async def test_keepalive_expiry(
    pki: PKI, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A session that answers pings but sends no keepalive ends after keepaliveInterval (30 s)."""
    with trio.fail_after(120):
        cloud = await start_cloud(nursery, pki)
        async with raw_client(pki, cloud.server, "edge-k") as ws:
            start = trio.current_time()
            code, reason = await _close_code(ws)
        elapsed = trio.current_time() - start
        assert code == CloseCode.KEEPALIVE_TIMEOUT
        assert "keepalive" in reason
        assert 30.0 <= elapsed < 31.0
        assert cloud.hub.nodes == []


async def test_keepalives_keep_the_session(
    pki: PKI, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(300):
        cloud = await start_cloud(nursery, pki)
        async with raw_client(pki, cloud.server, "edge-k") as ws:
            for _ in range(10):  # 150 virtual seconds, a keepalive every 15 s as upstream edges do
                await ws.send_message(codec.encode(keepalive_message(0)).decode())
                await trio.sleep(15)
                assert cloud.hub.nodes == ["edge-k"]
            code, _ = await _close_code(ws)
        assert code == CloseCode.KEEPALIVE_TIMEOUT


@pytest.mark.parametrize("answer_keepalives", [True, False], ids=["our-cloud", "upstream-like-cloud"])
async def test_half_open_link_detected_on_both_sides(
    pki: PKI, nursery: trio.Nursery, answer_keepalives: bool
) -> None:
    heartbeat = 0.3
    with trio.fail_after(20):
        cloud = await start_cloud(
            nursery, pki, keepalive_interval=2 * heartbeat, answer_keepalives=answer_keepalives
        )
        proxy = await nursery.start(FaultyProxy(cloud.hub.port).run)
        edge = make_edge(
            pki,
            f"127.0.0.1:{proxy.port}",
            "edge-h",
            heartbeat=heartbeat,
            reconnect_base=60.0,
            reconnect_cap=60.0,
        )
        await nursery.start(edge.run)
        assert (await edge.receive()).content == CLOUD_CONNECTED
        await cloud.next_upstream(lambda m: m.route.operation == Operation.CONNECTED)
        await trio.sleep(3 * heartbeat)  # a few healthy heartbeats first
        assert cloud.hub.nodes == ["edge-h"]
        # against an upstream-like cloud (keepalives unanswered) the edge pings every heartbeat;
        # ours answers keepalives, so only the first keepalive (which announces the session) is probed
        if answer_keepalives:
            assert edge.pings_sent <= 1  # none if the first keepalive's pong beat the probe
        else:
            assert edge.pings_sent >= 3

        proxy.dropping = True
        cut = trio.current_time()
        detected: dict[str, float] = {}

        async def edge_side() -> None:
            assert (await edge.receive()).content == CLOUD_DISCONNECTED
            detected["edge"] = trio.current_time() - cut

        async def cloud_side() -> None:
            await cloud.next_upstream(lambda m: m.route.operation == Operation.DISCONNECTED)
            detected["cloud"] = trio.current_time() - cut

        async with trio.open_nursery() as watch:
            watch.start_soon(edge_side)
            watch.start_soon(cloud_side)
        # within 2 x heartbeat (plus scheduling slack), nowhere near TCP's 15-20 minutes
        assert detected["edge"] <= 2 * heartbeat + 0.15, detected
        assert detected["cloud"] <= 2 * heartbeat + 0.15, detected
        assert cloud.hub.nodes == []


def _probe(node: str, i: int) -> Message:
    return Message.new(
        source="edged",
        group="meta",
        operation="update",
        resource=f"default/podstatus/p{i}",
        content={"i": i},
        now_ms=int(time.time() * 1000),
    )


async def test_bad_frames_drop_only_the_offending_session(pki: PKI, nursery: trio.Nursery) -> None:
    with trio.fail_after(30):
        cloud = await start_cloud(nursery, pki)
        good = make_edge(pki, cloud.server, "edge-good")
        await nursery.start(good.run)
        assert (await good.receive()).content == CLOUD_CONNECTED

        bad_frames: list[tuple[str | bytes, CloseCode]] = [
            ("this is not json", CloseCode.INVALID_PAYLOAD),
            (b"\xff\xfe\x00garbage", CloseCode.INVALID_PAYLOAD),
            ('{"header": 5, "route": {}, "content": null}', CloseCode.INVALID_PAYLOAD),
            ('{"header": {"msg_id": ""}, "route": {}, "content": null}', CloseCode.INVALID_PAYLOAD),
            ("[" * 10_000, CloseCode.INVALID_PAYLOAD),
            (b"x" * (limits.MAX_FRAME_BYTES + 1), CloseCode.MESSAGE_TOO_BIG),
        ]
        for i, (frame, expected) in enumerate(bad_frames):
            async with raw_client(pki, cloud.server, "edge-bad") as bad:
                await bad.send_message(frame)
                code, _ = await _close_code(bad)
            assert code == expected, (i, code)
            # the other edge is untouched and keeps exchanging messages both ways
            probe = _probe("edge-good", i)
            await good.send(probe)
            got = await cloud.next_upstream(lambda m, probe=probe: m.msg_id == probe.msg_id)
            assert got.route.resource == f"node/edge-good/default/podstatus/p{i}"
            down = Message.new(
                source="router_eventbus",
                group="user",
                operation="publish",
                resource=f"node/edge-good/topic/{i}",
                content="x",
                now_ms=0,
            )
            cloud.hub.send_to_node("edge-good", down)
            assert (await good.receive()).msg_id == down.msg_id
            assert "edge-good" in cloud.hub.nodes
        assert cloud.hub.nodes == ["edge-good"]


async def test_missing_connection_use_header_is_refused(pki: PKI, nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        cloud = await start_cloud(nursery, pki)
        async with raw_client(pki, cloud.server, "edge-m", headers=[(b"node_id", b"edge-m")]) as ws:
            code, reason = await _close_code(ws)
        assert code == CloseCode.POLICY_VIOLATION
        assert "ConnectionUse" in reason
        assert cloud.hub.nodes == []


async def test_cloud_pings_a_quiet_link(
    pki: PKI, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A quiet edge that only answers pings outlives the read deadline; only the keepalive rule ends it."""
    with trio.fail_after(300):
        cloud = await start_cloud(
            nursery, pki, keepalive_interval=100.0, read_timeout=10.0, ping_interval=4.0
        )
        async with raw_client(pki, cloud.server, "edge-q") as ws:
            start = trio.current_time()
            await trio.sleep(60)  # six read deadlines: pongs to the cloud's pings keep it alive
            assert cloud.hub.nodes == ["edge-q"]
            code, _ = await _close_code(ws)
            assert code == CloseCode.KEEPALIVE_TIMEOUT
            assert 100.0 <= trio.current_time() - start < 101.0


async def test_read_deadline_without_pings(
    pki: PKI, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """The control for the test above: with pings effectively off, the read deadline ends the session."""
    with trio.fail_after(300):
        cloud = await start_cloud(
            nursery, pki, keepalive_interval=100.0, read_timeout=10.0, ping_interval=1000.0
        )
        async with raw_client(pki, cloud.server, "edge-q") as ws:
            start = trio.current_time()
            code, reason = await _close_code(ws)
            assert code == CloseCode.KEEPALIVE_TIMEOUT
            assert "nothing received" in reason
            assert 10.0 <= trio.current_time() - start < 11.0


@pytest.mark.parametrize("answer_keepalives", [True, False], ids=["our-cloud", "upstream-like-cloud"])
async def test_healthy_link_outlives_read_deadlines(
    pki: PKI, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, answer_keepalives: bool
) -> None:
    """15 s heartbeats for 10 virtual minutes: no false alarm on either side, pings only when needed."""
    with trio.fail_after(1200):
        cloud = await start_cloud(nursery, pki, answer_keepalives=answer_keepalives)
        edge = make_edge(pki, cloud.server, "edge-l", heartbeat=15.0)
        await nursery.start(edge.run)
        assert (await edge.receive()).content == CLOUD_CONNECTED
        await trio.sleep(600)
        assert edge.connected
        assert edge.dials == 1
        assert cloud.hub.nodes == ["edge-l"]
        if answer_keepalives:
            assert edge.pings_sent <= 1  # the first keepalive's probe at most
        else:
            assert 39 <= edge.pings_sent <= 42  # one per heartbeat


async def test_silent_clients_hold_only_bounded_handshake_slots(pki: PKI, nursery: trio.Nursery) -> None:
    """Silent TCP clients use at most max_pending_handshakes slots and are cut at handshake_timeout."""
    with trio.fail_after(15):
        cloud = await start_cloud(nursery, pki, max_pending_handshakes=2, handshake_timeout=0.5)
        # The cloud's handshake clock starts when it accepts, which may be before open_tcp_stream returns.
        start = trio.current_time()
        silent = [await trio.open_tcp_stream("127.0.0.1", cloud.hub.port) for _ in range(3)]
        edge = make_edge(pki, cloud.server, "edge-s")
        await nursery.start(edge.run)
        assert (await edge.receive()).content == CLOUD_CONNECTED
        # the edge had to wait for silent clients to time out of their slots
        assert trio.current_time() - start >= 0.5
        for sock in silent:
            assert await sock.receive_some(100) == b""  # closed by the cloud, not left dangling
            await sock.aclose()


async def test_stalled_upstream_consumer_does_not_expire_sessions(
    pki: PKI, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """While nobody drains the upstream channel, a live edge's session is not expired for it."""
    with trio.fail_after(600):
        send, receive = trio.open_memory_channel[Message](0)
        hub = CloudHub(pki.server_context(), send, HubSettings(address="127.0.0.1", port=0))
        await nursery.start(hub.run)
        async with raw_client(pki, f"127.0.0.1:{hub.port}", "edge-st") as ws:
            connected = await receive.receive()  # the session event; then nobody reads for a while
            assert connected.route.operation == Operation.CONNECTED
            await ws.send_message(codec.encode(_probe("edge-st", 1)).decode())
            for _ in range(8):  # 120 virtual seconds of keepalives the cloud cannot read yet
                await ws.send_message(codec.encode(keepalive_message(0)).decode())
                await trio.sleep(15)
            assert hub.nodes == ["edge-st"]
            got = await receive.receive()
            assert got.route.resource == "node/edge-st/default/podstatus/p1"
            await trio.sleep(15)  # the backlog of keepalives is read; the session carries on
            assert hub.nodes == ["edge-st"]
