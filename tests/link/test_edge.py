"""EdgeHub pieces: token bucket, full-jitter reconnect spread, inbound FIFO, keepalive shape, ack timing."""

from __future__ import annotations

import collections
import itertools
import json
import random
import time

import pytest
import trio
import trio.testing

from kubeedge.edge.edgehub.hub import EdgeHub, EdgeHubSettings, _Inbox, is_connect_event, keepalive_message
from kubeedge.edge.edgehub.pacing import TokenBucket
from kubeedge.kit.backoff import Backoff
from kubeedge.proto import codec
from kubeedge.proto.message import Message
from kubeedge.proto.vocab import CLOUD_CONNECTED

from .conftest import PKI, make_edge, start_cloud

# --- token bucket ----------------------------------------------------------------------------------------


def test_token_bucket_burst_then_rate() -> None:
    bucket = TokenBucket(rate=30, burst=60)
    assert [bucket.reserve(0.0) for _ in range(60)] == [0.0] * 60
    # the 61st waits one token's time, the 62nd two
    assert bucket.reserve(0.0) == pytest.approx(1 / 30)
    assert bucket.reserve(0.0) == pytest.approx(2 / 30)
    # after 10 s the balance is back to (at most) the burst
    assert bucket.available(10.0) == pytest.approx(60.0)
    assert bucket.available(1000.0) == pytest.approx(60.0)


def test_token_bucket_sustained_rate() -> None:
    bucket = TokenBucket(rate=30, burst=60)
    now, sent = 0.0, 0
    while now < 100.0:  # a greedy sender for 100 s gets burst + rate * time
        wait = bucket.reserve(now)
        now += wait
        sent += 1
    assert sent == pytest.approx(60 + 30 * 100, abs=2)


def test_token_bucket_rejects_bad_config() -> None:
    with pytest.raises(ValueError, match="messageQPS"):
        TokenBucket(rate=0)
    with pytest.raises(ValueError, match="messageBurst"):
        TokenBucket(burst=0)


# --- reconnect spread ------------------------------------------------------------------------------------


def _attempt_times(nodes: int, failures: int, make: object) -> list[float]:
    """Every dial time of ``nodes`` edges dropped at t=0 whose first ``failures`` redials fail."""
    assert callable(make)
    times = []
    for node in range(nodes):
        next_delay = make(node)
        t = 0.0
        for _ in range(failures + 1):
            t += next_delay()
            times.append(t)
    return times


def test_full_jitter_spreads_reconnects() -> None:
    nodes = 5000
    jittered = _attempt_times(nodes, 3, lambda node: Backoff(30.0, 120.0, random.Random(node)).next_delay)
    upstream = _attempt_times(nodes, 3, lambda node: lambda: 30.0)  # upstream: a fixed 30 s sleep
    per_second = collections.Counter(int(t) for t in jittered)
    upstream_per_second = collections.Counter(int(t) for t in upstream)
    # upstream brings every node back in the same second, every time
    assert max(upstream_per_second.values()) == nodes
    # full jitter: the first redials spread over a 30 s window (~3.3 % of nodes a second) and, with
    # three failed rounds overlapping, no second ever sees more than 6 % of the nodes dial
    first = sorted(jittered[0::4])
    assert max(collections.Counter(int(t) for t in first).values()) <= 0.045 * nodes
    assert max(per_second.values()) <= 0.06 * nodes
    assert first[0] < 1.0
    assert first[-1] > 29.0
    assert 13.0 < sum(first) / nodes < 17.0  # mean 15 s vs upstream's 30 s


async def test_edgehub_redials_with_jitter(pki: PKI, autojump_clock: trio.testing.MockClock) -> None:
    """Against a closed port EdgeHub keeps redialling, waits grow and stay under the cap, none identical."""
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    await listener.aclose()  # nothing listens on it any more
    edge = make_edge(pki, f"127.0.0.1:{port}", "edge-j", reconnect_base=1.0, reconnect_cap=16.0)
    dial_times: list[float] = []
    connect = edge._connect_and_serve

    async def recording_connect() -> None:
        dial_times.append(trio.current_time())
        if len(dial_times) == 12:
            nursery.cancel_scope.cancel()
        await connect()

    edge._connect_and_serve = recording_connect  # type: ignore[method-assign]
    with trio.fail_after(300):
        async with trio.open_nursery() as nursery:
            await nursery.start(edge.run)
    gaps = [b - a for a, b in itertools.pairwise(dial_times)]
    assert len(gaps) == 11
    assert all(0.0 <= g <= 16.0 + 0.01 for g in gaps)
    assert len({round(g, 6) for g in gaps}) == len(gaps)  # jittered, not a fixed period
    assert sum(gaps[6:]) > sum(gaps[:3])  # windows grew


# --- inbound FIFO ----------------------------------------------------------------------------------------


def _cloud_msg(i: int) -> Message:
    return Message.new(
        source="edgecontroller", group="resource", operation="update", resource=f"ns/pod/{i}", now_ms=0
    )


def _connect(content: str) -> Message:
    return Message.new(
        source="edgehub", group="", operation="connect", resource="node/connection", content=content, now_ms=0
    )


async def test_inbox_drops_oldest_cloud_message_never_connect_events() -> None:
    inbox = _Inbox(3)
    inbox.put(_connect("cloud_connected"))
    msgs = [_cloud_msg(i) for i in range(5)]
    for m in msgs:
        inbox.put(m)
    assert len(inbox) == 3
    assert inbox.dropped == 3
    got = [await inbox.get() for _ in range(3)]
    assert is_connect_event(got[0])
    assert got[1:] == msgs[3:]
    inbox.put(_connect("cloud_disconnected"))  # even when full, a connect event is kept
    for m in msgs:
        inbox.put(m)
    kinds = [is_connect_event(await inbox.get()) for _ in range(len(inbox))]
    assert kinds.count(True) == 1


# --- wire shapes -----------------------------------------------------------------------------------------


def test_keepalive_exactly_upstream_shape() -> None:
    wire = json.loads(codec.encode(keepalive_message(1717000000000)))
    assert wire["route"] == {
        "source": "websocket",
        "group": "resource",
        "operation": "keepalive",
        "resource": "node",
    }
    assert wire["content"] == "ping"
    assert wire["header"]["timestamp"] == 1717000000000
    assert set(wire["header"]) == {"msg_id", "timestamp"}


def test_settings_validation() -> None:
    with pytest.raises(ValueError, match="host:port"):
        EdgeHubSettings(server="nohost", node_name="n")
    with pytest.raises(ValueError, match="heartbeat"):
        EdgeHubSettings(server="h:1", node_name="n", heartbeat=0)
    s = EdgeHubSettings(server="[::1]:10000", node_name="n")
    assert (s.host, s.port, s.effective_read_deadline) == ("::1", 10000, 30.0)


# --- acks only after the consumer says so ----------------------------------------------------------------


async def test_ack_only_after_durably_handled(pki: PKI, nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        cloud = await start_cloud(nursery, pki, ack_timeout=60.0)
        edge: EdgeHub = make_edge(pki, cloud.server, "edge-a")
        await nursery.start(edge.run)
        assert (await edge.receive()).content == CLOUD_CONNECTED
        session = cloud.hub.session("edge-a")
        assert session is not None
        down = Message.new(
            source="edgecontroller",
            group="resource",
            operation="update",
            resource="node/edge-a/default/configmap/c",
            content={"metadata": {"uid": "cm-1", "name": "c"}},
            now_ms=int(time.time() * 1000),
            resource_version="3",
        )
        sent: list[Message] = []
        write = edge._write

        async def recording_write(msg: Message) -> None:
            sent.append(msg)
            await write(msg)

        edge._write = recording_write  # type: ignore[method-assign]
        cloud.hub.send_to_node("edge-a", down)
        got = await edge.receive()
        # several heartbeats pass (keepalives flow), the message stays unacknowledged
        await trio.sleep(0.3)
        assert session.delivery.in_flight == 1
        await edge.durably_handled(got)
        while session.delivery.in_flight:
            await trio.sleep(0.01)
        assert session.delivery.stats.acked == 1
        acks = [m for m in sent if m.route.operation == "response"]
        assert len(acks) == 1
        ack = acks[0]
        # beehive reply rules: new id, parent = request id, source/group/resource copied, content "OK"
        assert ack.parent_msg_id == down.msg_id
        assert ack.msg_id != down.msg_id
        assert (ack.route.source, ack.route.group, ack.route.resource) == (
            "edgecontroller",
            "resource",
            "default/configmap/c",
        )
        assert ack.content == "OK"
        assert all(m.route.operation == "keepalive" for m in sent if m is not ack)
        await edge.durably_handled(_connect("cloud_connected"))  # a local event is never acked
        assert len([m for m in sent if m.route.operation == "response"]) == 1


async def test_send_while_disconnected_raises(pki: PKI) -> None:
    from kubeedge.edge.edgehub.hub import NotConnected

    edge = make_edge(pki, "127.0.0.1:1", "edge-z")
    with pytest.raises(NotConnected):
        await edge.send(_cloud_msg(1))
    await edge.durably_handled(_cloud_msg(1))  # dropped quietly: the cloud re-sends unacked messages
