"""The broker's sans-io state: routing, QoS caps, queue overflow, persistent sessions, retained bounds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubeedge.edge.eventbus.sessions import BrokerState, Delivery, Session
from kubeedge.kit import limits
from kubeedge.proto import mqtt


def _connect(state: BrokerState, client_id: str, *, clean: bool = True) -> Session:
    ack, session = state.connect(mqtt.Connect(client_id, clean), client_id)
    assert ack.return_code == 0
    return session


def test_publish_routes_by_filter_with_qos_capped_at_1() -> None:
    state = BrokerState()
    a = _connect(state, "a")
    b = _connect(state, "b")
    assert state.subscribe(a, mqtt.Subscribe(1, (("x/#", 2),))) == mqtt.SubAck(1, (1,))
    assert state.subscribe(b, mqtt.Subscribe(1, (("y/+", 0),))) == mqtt.SubAck(1, (0,))
    woken = state.publish(mqtt.Publish("x/1", b"p", 2, packet_id=1))
    assert woken == [a]
    (pub,) = a.take()
    assert (pub.topic, pub.qos, pub.packet_id) == ("x/1", 1, 1)
    assert state.publish(mqtt.Publish("y/1", b"p", 1, packet_id=2)) == [b]
    (pub,) = b.take()
    assert (pub.qos, pub.packet_id) == (0, None)


def test_inflight_window_and_acknowledgement() -> None:
    session = Session("s", clean=True, queue_size=100, connected=True)
    for i in range(limits.MQTT_MAX_INFLIGHT + 5):
        session.enqueue(Delivery("t", str(i).encode(), 1))
    sent = session.take()
    assert len(sent) == limits.MQTT_MAX_INFLIGHT
    assert not session.has_work()
    assert sent[0].packet_id is not None
    assert session.acknowledge(sent[0].packet_id)
    assert not session.acknowledge(sent[0].packet_id)  # a duplicate PUBACK matches nothing
    (nxt,) = session.take()
    assert nxt.payload == str(limits.MQTT_MAX_INFLIGHT).encode()
    assert nxt.packet_id not in {p.packet_id for p in sent[1:]}


def test_full_queue_drops_oldest_and_counts() -> None:
    session = Session("s", clean=False, queue_size=3, connected=True)
    for i in range(5):
        session.enqueue(Delivery("t", bytes([i]), 0))
    assert [p.payload for p in session.take()] == [b"\x02", b"\x03", b"\x04"]
    assert session.dropped == 2


def test_persistent_session_survives_and_clean_one_does_not() -> None:
    state = BrokerState()
    keep = _connect(state, "keep", clean=False)
    state.subscribe(keep, mqtt.Subscribe(1, (("t", 1),)))
    state.disconnect(keep)
    assert state.publish(mqtt.Publish("t", b"q1", 1, packet_id=1)) == []  # absent: queued, nobody woken
    assert state.publish(mqtt.Publish("t", b"q0", 0)) == []  # QoS 0 is not queued for the absent
    ack, again = state.connect(mqtt.Connect("keep", clean_session=False), "keep")
    assert ack.session_present
    assert again is keep
    assert [p.payload for p in again.take()] == [b"q1"]
    gone = _connect(state, "gone")
    state.disconnect(gone)
    assert "gone" not in state.sessions
    ack, _ = state.connect(mqtt.Connect("keep", clean_session=True), "keep")
    assert not ack.session_present


def test_retained_store_is_bounded() -> None:
    state = BrokerState(max_retained=2)
    for topic in ("a", "b", "c"):
        state.publish(mqtt.Publish(topic, b"v", 0, retain=True))
    assert sorted(state.retained) == ["a", "b"]
    state.publish(mqtt.Publish("a", b"", 0, retain=True))
    assert sorted(state.retained) == ["b"]


def test_subscription_limit_refuses_extra_filters() -> None:
    state = BrokerState(max_subscriptions=1)
    s = _connect(state, "s")
    assert state.subscribe(s, mqtt.Subscribe(1, (("a", 1), ("b", 1)))).return_codes == (
        1,
        mqtt.SUBACK_FAILURE,
    )
    assert state.subscribe(s, mqtt.Subscribe(2, (("a", 0),))).return_codes == (0,)  # re-subscribing is fine


def test_queue_size_is_validated() -> None:
    with pytest.raises(ValueError, match="mqttSessionQueueSize 0"):
        BrokerState(session_queue_size=0)


@given(
    st.integers(1, 30),
    st.lists(
        st.one_of(
            st.tuples(st.just("publish"), st.integers(0, 1)),
            st.tuples(st.just("take"), st.just(0)),
            st.tuples(st.just("ack"), st.integers(0, 40)),
            st.tuples(st.just("reconnect"), st.just(0)),
        ),
        max_size=200,
    ),
)
def test_session_bounds_and_accounting_hold(queue_size: int, ops: list[tuple[str, int]]) -> None:
    session = Session("s", clean=False, queue_size=queue_size, connected=True)
    enqueued = delivered_q0 = acked = 0
    sent: list[int] = []
    for op, arg in ops:
        if op == "publish":
            session.enqueue(Delivery("t", b"", arg))
            enqueued += 1
        elif op == "take":
            for pub in session.take():
                if pub.qos == 0:
                    delivered_q0 += 1
                else:
                    assert pub.packet_id is not None
                    sent.append(pub.packet_id)
        elif op == "ack" and sent:
            pid = sent.pop(arg % len(sent))
            acked += session.acknowledge(pid)
        elif op == "reconnect":
            again = session.resend()
            assert all(p.dup for p in again)
            assert [p.packet_id for p in again] == list(session.inflight)
        assert len(session.queue) <= queue_size
        assert len(session.inflight) <= limits.MQTT_MAX_INFLIGHT
        assert all(1 <= pid <= 0xFFFF for pid in session.inflight)
        # Nothing is lost silently: every message is queued, in flight, delivered or counted as dropped.
        total = len(session.queue) + len(session.inflight) + delivered_q0 + acked + session.dropped
        assert total == enqueued
