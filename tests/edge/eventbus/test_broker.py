"""Conformance of the internal broker over real sockets: wildcards, retained, QoS 1 redelivery, ``$`` topics,
keepalive, takeover, malformed packets, queue overflow."""

from __future__ import annotations

import trio

from kubeedge.edge.eventbus.broker import Broker
from kubeedge.edge.eventbus.client import open_client
from kubeedge.proto import mqtt

from .conftest import DEADLINE, Peers, Raw, RunningBroker


async def _received(client_messages: trio.MemoryReceiveChannel[mqtt.Publish], n: int) -> list[mqtt.Publish]:
    out: list[mqtt.Publish] = []
    with trio.fail_after(DEADLINE):
        for _ in range(n):
            out.append(await client_messages.receive())
    return out


async def _nothing_more(raw: Raw, publisher: Raw, marker_topic: str) -> None:
    """Prove ``raw`` got nothing before a marker message published after everything else."""
    await publisher.send(mqtt.Publish(marker_topic, b"end", 1, packet_id=999))
    with trio.fail_after(DEADLINE):
        packet = await raw.recv()
    assert isinstance(packet, mqtt.Publish)
    assert packet.topic == marker_topic


async def test_wildcards_route_and_dollar_topics_are_separate(peers: Peers, broker: RunningBroker) -> None:
    with trio.fail_after(DEADLINE):
        sub = await peers.open(broker.port)
        await sub.connect("sub")
        await sub.send(mqtt.Subscribe(1, (("a/+/c", 1), ("a/#", 0), ("#", 0), ("$hw/#", 1))))
        assert await sub.recv() == mqtt.SubAck(1, (1, 0, 0, 1))
        pub = await peers.open(broker.port)
        await pub.connect("pub")
        await pub.send(
            mqtt.Publish("a/b/c", b"1", 1, packet_id=1),
            mqtt.Publish("x/y", b"2", 0),
            mqtt.Publish("$hw/events/device/ns/d/twin/update", b"3", 1, packet_id=2),
        )
        got = [await sub.recv() for _ in range(3)]
    publishes = [p for p in got if isinstance(p, mqtt.Publish)]
    # Overlapping filters give one copy at the highest granted QoS.
    assert [(p.topic, p.payload, p.qos) for p in publishes] == [
        ("a/b/c", b"1", 1),
        ("x/y", b"2", 0),
        ("$hw/events/device/ns/d/twin/update", b"3", 1),
    ]
    # "#" alone must not see $-topics: only "$hw/#" matched above (one copy). Check with "#" only.
    with trio.fail_after(DEADLINE):
        only_hash = await peers.open(broker.port)
        await only_hash.connect("hash")
        await only_hash.send(mqtt.Subscribe(1, (("#", 1),)))
        assert await only_hash.recv() == mqtt.SubAck(1, (1,))
        await pub.send(mqtt.Publish("$hw/events/node/n/membership/get", b"x", 1, packet_id=3))
    await _nothing_more(only_hash, pub, "plain/marker")


async def test_retained_messages(peers: Peers, broker: RunningBroker) -> None:
    with trio.fail_after(DEADLINE):
        pub = await peers.open(broker.port)
        await pub.connect("pub")
        await pub.send(
            mqtt.Publish("$hw/events/device/ns/d/updated", b"v1", 1, retain=True, packet_id=1),
            mqtt.Publish("$hw/events/device/ns/d/updated", b"v2", 1, retain=True, packet_id=2),
            mqtt.Publish("plain/t", b"kept", 0, retain=True),
            mqtt.Publish("plain/gone", b"x", 0, retain=True),
            mqtt.Publish("plain/gone", b"", 0, retain=True),  # empty payload clears it
        )
        assert await pub.recv() == mqtt.PubAck(1)
        assert await pub.recv() == mqtt.PubAck(2)
        sub = await peers.open(broker.port)
        await sub.connect("late")
        await sub.send(mqtt.Subscribe(5, (("$hw/#", 1), ("plain/+", 1))))
        assert await sub.recv() == mqtt.SubAck(5, (1, 1))
        first = await sub.recv()
        second = await sub.recv()
    assert isinstance(first, mqtt.Publish)
    assert isinstance(second, mqtt.Publish)
    assert (first.topic, first.payload, first.retain, first.qos) == (
        "$hw/events/device/ns/d/updated",
        b"v2",
        True,
        1,
    )
    assert (second.topic, second.payload, second.retain, second.qos) == ("plain/t", b"kept", True, 0)
    assert first.packet_id is not None
    await sub.send(mqtt.PubAck(first.packet_id))
    # Live messages to an existing subscription carry RETAIN 0 even when published retained.
    await pub.send(mqtt.Publish("plain/t", b"new", 0, retain=True))
    with trio.fail_after(DEADLINE):
        live = await sub.recv()
    assert isinstance(live, mqtt.Publish)
    assert (live.payload, live.retain) == (b"new", False)
    await _nothing_more(sub, pub, "plain/marker")


async def test_qos1_redelivered_to_persistent_session(peers: Peers, broker: RunningBroker) -> None:
    with trio.fail_after(DEADLINE):
        sub = await peers.open(broker.port)
        assert await sub.connect("mapper", clean=False) == mqtt.ConnAck(False, 0)
        await sub.send(mqtt.Subscribe(1, (("dev/+/cmd", 2),)))
        assert await sub.recv() == mqtt.SubAck(1, (1,))  # QoS 2 is granted as 1
        pub = await peers.open(broker.port)
        await pub.connect("cloud")
        await pub.send(mqtt.Publish("dev/1/cmd", b"on", 1, packet_id=7))
        first = await sub.recv()
        assert isinstance(first, mqtt.Publish)
        assert first.qos == 1
        assert not first.dup
        # Gone before PUBACK; meanwhile another message arrives for the absent session.
        await sub.aclose()
        while broker.broker.state.sessions["mapper"].connected:  # until the broker has seen the close
            await trio.sleep(0.01)
        await pub.send(mqtt.Publish("dev/1/cmd", b"off", 1, packet_id=8), mqtt.Publish("dev/1/cmd", b"q0", 0))
        assert await pub.recv() == mqtt.PubAck(7)
        assert await pub.recv() == mqtt.PubAck(8)
        back = await peers.open(broker.port)
        assert await back.connect("mapper", clean=False) == mqtt.ConnAck(True, 0)
        again = await back.recv()
        queued = await back.recv()
    assert isinstance(again, mqtt.Publish)
    assert (again.payload, again.dup, again.packet_id) == (b"on", True, first.packet_id)
    assert isinstance(queued, mqtt.Publish)
    assert (queued.payload, queued.qos) == (b"off", 1)  # the QoS 0 one was not queued for an absent client
    assert queued.packet_id is not None
    assert again.packet_id is not None
    await back.send(mqtt.PubAck(again.packet_id), mqtt.PubAck(queued.packet_id))
    await _nothing_more(back, pub, "dev/2/cmd")
    # A clean session starts over: no session present, nothing kept.
    with trio.fail_after(DEADLINE):
        await back.aclose()
        fresh = await peers.open(broker.port)
        assert await fresh.connect("mapper", clean=True) == mqtt.ConnAck(False, 0)


async def test_qos2_publish_is_completed_and_delivered_once(peers: Peers, broker: RunningBroker) -> None:
    async with open_client("127.0.0.1", broker.port, client_id="watcher") as watcher:
        await watcher.subscribe(["q2/#"], qos=1)
        with trio.fail_after(DEADLINE):
            pub = await peers.open(broker.port)
            await pub.connect("q2pub")
            message = mqtt.Publish("q2/x", b"once", 2, packet_id=4)
            await pub.send(message)
            assert await pub.recv() == mqtt.PubRec(4)
            await pub.send(mqtt.Publish("q2/x", b"once", 2, dup=True, packet_id=4))  # resent before PUBREL
            assert await pub.recv() == mqtt.PubRec(4)
            await pub.send(mqtt.PubRel(4))
            assert await pub.recv() == mqtt.PubComp(4)
            await pub.send(mqtt.Publish("q2/end", b"end", 0))
        got = await _received(watcher.messages, 2)
    assert [(p.topic, p.payload, p.qos) for p in got] == [("q2/x", b"once", 1), ("q2/end", b"end", 0)]


async def test_keepalive_expiry_disconnects_and_publishes_will(peers: Peers, broker: RunningBroker) -> None:
    async with open_client("127.0.0.1", broker.port, client_id="watcher") as watcher:
        await watcher.subscribe(["$hw/events/disconnected/#"])
        with trio.fail_after(DEADLINE):
            silent = await peers.open(broker.port)
            will = mqtt.Will("$hw/events/disconnected/mapper-1", b"gone")
            await silent.connect("mapper-1", keepalive=1, will=will)
            began = trio.current_time()
            await silent.wait_closed()
        waited = trio.current_time() - began
        assert 1.4 <= waited < 5, waited  # 1.5 x keepalive, then the broker closes
        (got,) = await _received(watcher.messages, 1)
    assert (got.topic, got.payload) == ("$hw/events/disconnected/mapper-1", b"gone")
    assert broker.broker.stats.keepalive_expired == 1


async def test_pings_keep_a_client_alive(peers: Peers, broker: RunningBroker) -> None:
    with trio.fail_after(DEADLINE):
        raw = await peers.open(broker.port)
        await raw.connect("pinger", keepalive=1)
        for _ in range(4):
            await trio.sleep(0.5)  # the client's own ping schedule, well inside the keepalive
            await raw.send(mqtt.PingReq())
            assert await raw.recv() == mqtt.PingResp()
    assert broker.broker.stats.keepalive_expired == 0


async def test_client_id_takeover(peers: Peers, broker: RunningBroker) -> None:
    with trio.fail_after(DEADLINE):
        first = await peers.open(broker.port)
        await first.connect("same", clean=False)
        await first.send(mqtt.Subscribe(1, (("t/#", 1),)))
        assert await first.recv() == mqtt.SubAck(1, (1,))
        second = await peers.open(broker.port)
        assert await second.connect("same", clean=False) == mqtt.ConnAck(True, 0)
        await first.wait_closed()
        pub = await peers.open(broker.port)
        await pub.connect("p")
        await pub.send(mqtt.Publish("t/1", b"to-second", 0))
        got = await second.recv()
    assert isinstance(got, mqtt.Publish)
    assert got.payload == b"to-second"
    assert broker.broker.stats.takeovers == 1


async def test_malformed_packet_drops_only_that_client(peers: Peers, broker: RunningBroker) -> None:
    async with open_client("127.0.0.1", broker.port, client_id="healthy") as healthy:
        await healthy.subscribe(["ok/#"])
        bad_inputs = [
            b"\xf0\x00",  # reserved packet type
            mqtt.encode(mqtt.Connect("c1")) + b"\x30\x04\x00\x02a+",  # wildcard in a topic name
            mqtt.encode(mqtt.Connect("c2")) + b"\x30\x04\x00\x02\xff\xfe",  # invalid UTF-8
            mqtt.encode(mqtt.Connect("c3")) + b"\x30\xff\xff\xff\x7f",  # far over the packet limit
            mqtt.encode(mqtt.Connect("c4")) + mqtt.encode(mqtt.Connect("c4")),  # second CONNECT
            mqtt.encode(mqtt.Publish("ok/x", b"")),  # PUBLISH before CONNECT
        ]
        for data in bad_inputs:
            with trio.fail_after(DEADLINE):
                bad = await peers.open(broker.port)
                await bad.send(data)
                await bad.wait_closed()
            await healthy.publish("ok/still", data[:4], qos=1)
        got = await _received(healthy.messages, len(bad_inputs))
    assert [p.payload for p in got] == [d[:4] for d in bad_inputs]
    assert broker.broker.stats.malformed == len(bad_inputs)


async def test_silent_connection_is_closed_before_connect(peers: Peers, nursery: trio.Nursery) -> None:
    b = Broker(connect_timeout=0.3)
    port = await nursery.start(b.serve, "127.0.0.1", 0)
    with trio.fail_after(DEADLINE):
        raw = await peers.open(port)
        await raw.wait_closed()
    assert b.clients == 0


async def test_unsupported_protocol_level_gets_connack_1(peers: Peers, broker: RunningBroker) -> None:
    with trio.fail_after(DEADLINE):
        raw = await peers.open(broker.port)
        await raw.send(mqtt.Connect("v5", protocol_level=5))
        assert await raw.recv() == mqtt.ConnAck(False, mqtt.ConnAckCode.UNACCEPTABLE_PROTOCOL_VERSION)
        await raw.wait_closed()
        anon = await peers.open(broker.port)
        await anon.send(mqtt.Connect("", clean_session=False))
        assert await anon.recv() == mqtt.ConnAck(False, mqtt.ConnAckCode.IDENTIFIER_REJECTED)


async def test_queue_overflow_drops_oldest(peers: Peers, broker: RunningBroker) -> None:
    # The fixture's broker has mqttSessionQueueSize 10.
    with trio.fail_after(DEADLINE):
        sub = await peers.open(broker.port)
        await sub.connect("slow", clean=False)
        await sub.send(mqtt.Subscribe(1, (("load/#", 1),)))
        assert await sub.recv() == mqtt.SubAck(1, (1,))
        await sub.aclose()
        async with open_client("127.0.0.1", broker.port, client_id="fast") as pub:
            for i in range(25):
                await pub.publish("load/x", str(i).encode(), qos=1)
            await pub.wait_acknowledged()
        back = await peers.open(broker.port)
        await back.connect("slow", clean=False)
        got = []
        for _ in range(10):
            packet = await back.recv()
            assert isinstance(packet, mqtt.Publish)
            assert packet.packet_id is not None
            got.append(int(packet.payload))
            await back.send(mqtt.PubAck(packet.packet_id))
    assert got == list(range(15, 25))
    assert broker.broker.state.sessions["slow"].dropped == 15


async def test_too_many_clients_refuses_only_the_new_one(peers: Peers, nursery: trio.Nursery) -> None:
    b = Broker(max_clients=1)
    port = await nursery.start(b.serve, "127.0.0.1", 0)
    with trio.fail_after(DEADLINE):
        first = await peers.open(port)
        await first.connect("one")
        second = await peers.open(port)
        await second.wait_closed()
        await first.send(mqtt.PingReq())
        assert await first.recv() == mqtt.PingResp()
    assert b.stats.refused == 1
