"""Reliable cloud-to-edge delivery bookkeeping: classification, superseding, resends, backoff, bounds."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from kubeedge.kit import limits
from kubeedge.proto import delivery
from kubeedge.proto.delivery import Delivery, NodeDelivery, classify
from kubeedge.proto.message import Header, Message, Route

_ids = iter(range(10**9))


def msg(
    resource: str = "default/pod/p",
    *,
    op: str = "update",
    source: str = "edgecontroller",
    group: str = "resource",
    rv: str = "",
    uid: str | None = "uid-1",
    content: Any = None,
    deletion: bool = False,
) -> Message:
    if content is None and uid is not None:
        meta: dict[str, Any] = {"uid": uid, "resourceVersion": rv}
        if deletion:
            meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        content = {"apiVersion": "v1", "kind": "Pod", "metadata": meta}
    return Message(
        Header(f"m{next(_ids)}", 0, resource_version=rv), Route(source, group, op, resource), content
    )


def ack_for(m: Message) -> Message:
    return m.reply("OK", now_ms=0)


def test_bounds_mirror_kit_limits() -> None:
    assert delivery.DEFAULT_CAPACITY == limits.NODE_SEND_QUEUE


@pytest.mark.parametrize(
    ("m", "expected"),
    [
        (msg("default/pod/p", rv="1"), Delivery.ACK),
        (msg("node/n1/default/configmap/c", rv="1"), Delivery.ACK),
        (msg("null/node/n1", op="update", rv="1"), Delivery.ACK),
        (msg("default/device/d", source="devicecontroller", rv="1"), Delivery.ACK),
        (msg("default/configmap/c", op="response", rv="1"), Delivery.ACK),
        (msg("default/podlist", op="response"), Delivery.NO_ACK),
        (msg("membership", source="devicecontroller", group="twin"), Delivery.NO_ACK),
        (msg("membership/detail", source="devicecontroller", group="twin", op="response"), Delivery.NO_ACK),
        (msg("device/ns/d/twin/cloud_updated", source="devicecontroller", group="resource"), Delivery.NO_ACK),
        (msg("default/serviceaccounttoken/sa", op="response"), Delivery.NO_ACK),
        (msg("k8s/ca.crt", source="cloudhub", op="response"), Delivery.NO_ACK),
        (msg("default/pvc/x", op="createvolume"), Delivery.NO_ACK),
        (msg("r", op="applicationResponse", source="router"), Delivery.NO_ACK),
        (msg("rule/x", group="user", source="router"), Delivery.NO_ACK),
        (msg("task/x", source="taskmanager", group="resource"), Delivery.NO_ACK),
        (msg("default/pod/p", op="response", content="OK", uid=None), Delivery.NO_ACK),
        (msg("default/pod/p", op="error", content="boom", uid=None), Delivery.NO_ACK),
        (msg("null/node/n1", op="insert"), Delivery.NO_ACK),
        (msg("kube-node-lease/lease/n1", op="response"), Delivery.NO_ACK),
        (msg("null/nodepatch/n1", op="response"), Delivery.NO_ACK),
        (msg("default/podpatch/p", op="response"), Delivery.NO_ACK),
        (msg("default/podstatus/p", op="response"), Delivery.NO_ACK),
        (msg("default/certificatesigningrequest/c", op="response"), Delivery.NO_ACK),
        (msg("default/pod/p", op="response"), Delivery.NO_ACK),
        (
            msg("device/ns/d/twin/edge_updated", source="devicecontroller", group="twin", op="response"),
            Delivery.NO_ACK,
        ),
    ],
)
def test_classify_follows_the_notes(m: Message, expected: Delivery) -> None:
    assert classify(m) is expected


def test_parse_rv_is_uint64() -> None:
    assert delivery.parse_rv("0") == 0
    assert delivery.parse_rv(str(2**64 - 1)) == 2**64 - 1
    for bad in ("", "-1", "1.0", " 1", str(2**64), "١٢", "9" * 30):
        assert delivery.parse_rv(bad) is None
    # uint64 comparison, not string comparison: "10" is newer than "9"
    d = NodeDelivery()
    assert d.push(msg(rv="9"), 0) is None
    assert d.push(msg(rv="10"), 0) is None
    assert d.push(msg(rv="9"), 0) is not None


def test_send_wait_resend_then_backoff_then_ack() -> None:
    d = NodeDelivery()
    m = msg(rv="5")
    assert d.push(m, 100.0) is None
    assert d.next_deadline() == 100.0
    assert d.poll(100.0) == ([m], [])
    assert d.in_flight == 1
    assert d.poll(104.9) == ([], [])
    assert d.next_deadline() == 105.0
    sent_at = [100.0]
    for i in range(1, 5):  # four resends of the same id, 5 s apart
        t = 100.0 + 5 * i
        assert d.poll(t) == ([m], [])
        sent_at.append(t)
    assert len(sent_at) == 5
    # fifth send unanswered: requeued with 5 ms backoff, not resent yet
    assert d.poll(125.0) == ([], [])
    assert d.in_flight == 0
    assert d.next_deadline() == pytest.approx(125.005)
    assert d.poll(125.004) == ([], [])
    assert d.poll(125.005) == ([m], [])
    # a second round of failures doubles the backoff
    for i in range(1, 5):
        assert d.poll(125.005 + 5 * i) == ([m], [])
    assert d.poll(150.005) == ([], [])
    assert d.next_deadline() == pytest.approx(150.015)
    # a late ack of the backed-off message still counts
    acked = d.on_ack(ack_for(m), 150.01)
    assert acked == delivery.Acked("uid-1", m, 5, False)
    assert len(d) == 0
    assert d.next_deadline() is None


def test_backoff_is_capped() -> None:
    assert delivery.backoff(1) == 0.005
    assert delivery.backoff(2) == 0.01
    assert delivery.backoff(30) == 1000.0
    assert delivery.backoff(10**6) == 1000.0


def test_ack_must_be_a_response_with_matching_parent() -> None:
    d = NodeDelivery()
    m = msg(rv="1")
    d.push(m, 0)
    d.poll(0)
    assert d.on_ack(Message(Header("x", 0, parent_msg_id="other"), Route(operation="response")), 1) is None
    assert d.on_ack(Message(Header("x", 0, parent_msg_id=m.msg_id), Route(operation="update")), 1) is None
    assert d.in_flight == 1
    assert d.on_ack(ack_for(m), 1) is not None
    assert d.on_ack(ack_for(m), 1) is None  # duplicate ack


def test_newer_rv_supersedes_and_deletes_always_go_through() -> None:
    d = NodeDelivery()
    old, new = msg(rv="7"), msg(rv="8")
    assert d.push(old, 0) is None
    assert d.push(new, 0) is None
    dropped = d.push(msg(rv="8"), 0)
    assert dropped is not None
    assert "not newer" in dropped.reason
    assert d.poll(0) == ([new], [])  # only the newest is ever sent
    gone = msg(op="delete", rv="")
    assert d.push(gone, 1) is None  # a delete needs no RV and goes through
    later = d.push(msg(rv="99"), 1)
    assert later is not None
    assert "deleted" in later.reason
    # while `new` is in flight the delete waits (one message per object at a time)
    assert d.poll(1) == ([], [])
    assert d.on_ack(ack_for(new), 2) == delivery.Acked("uid-1", new, 8, False)
    assert d.poll(2) == ([gone], [])
    assert d.on_ack(ack_for(gone), 3) == delivery.Acked("uid-1", gone, None, True)
    assert delivery.is_delete(msg(rv="3", deletion=True))


def test_in_flight_superseded_after_unanswered_sends_is_dropped() -> None:
    d = NodeDelivery(max_sends=2, ack_timeout=1.0)
    old = msg(rv="1")
    d.push(old, 0)
    d.poll(0)
    new = msg(rv="2")
    d.push(new, 0.5)
    assert d.poll(1.0) == ([old], [])
    out, dropped = d.poll(2.0)
    assert out == [new]
    assert [x.msg for x in dropped] == [old]
    assert d.on_ack(ack_for(old), 2.1) is None


def test_rv_rules_against_objectsync_and_missing_rv() -> None:
    d = NodeDelivery()
    assert d.push(msg(rv="5"), 0, synced_rv=5) is not None
    assert d.push(msg(rv="6"), 0, synced_rv=5) is None
    no_rv = d.push(msg(uid="u2", rv=""), 0)
    assert no_rv is not None
    assert "resourceversion" in no_rv.reason
    # responses are keyed by their own id: never superseded, never dropped for RV
    r1, r2 = (msg("default/configmap/c", op="response", rv="") for _ in range(2))
    assert classify(r1) is Delivery.ACK
    assert d.push(r1, 0) is None
    assert d.push(r2, 0) is None
    assert len(d) == 3


def test_no_ack_messages_are_sent_once_in_order() -> None:
    d = NodeDelivery()
    a = msg("default/podlist", op="response")
    b = msg("membership", source="devicecontroller", group="twin")
    d.push(a, 0)
    d.push(b, 0)
    assert d.next_deadline() == float("-inf")
    assert d.poll(0) == ([a, b], [])
    assert d.poll(100) == ([], [])
    assert d.next_deadline() is None


def test_overflow_drops_the_newest_and_replacing_needs_no_room() -> None:
    d = NodeDelivery(capacity=2)
    assert d.push(msg(uid="a", rv="1"), 0) is None
    assert d.push(msg(uid="b", rv="1"), 0) is None
    full = d.push(msg(uid="c", rv="1"), 0)
    assert full is not None
    assert full.reason == "ack queue full"
    assert d.push(msg(uid="a", rv="2"), 0) is None  # same key: replaces
    for _ in range(2):
        assert d.push(msg("default/podlist", op="response"), 0) is None
    nofit = d.push(msg("default/podlist", op="response"), 0)
    assert nofit is not None
    assert nofit.reason == "no-ack queue full"
    assert len(d) == 4


def test_window_limits_messages_in_flight() -> None:
    d = NodeDelivery(window=2)
    ms = [msg(uid=f"u{i}", rv="1") for i in range(3)]
    for m in ms:
        d.push(m, 0)
    assert d.poll(0) == (ms[:2], [])
    assert d.poll(1) == ([], [])
    d.on_ack(ack_for(ms[0]), 1)
    assert d.poll(1) == ([ms[2]], [])


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="capacity"):
        NodeDelivery(capacity=0)


class DeliveryMachine(RuleBasedStateMachine):
    """Random pushes, acks, polls and clock steps keep every invariant of the queue."""

    @initialize(window=st.integers(1, 3), capacity=st.integers(1, 6))
    def setup(self, window: int, capacity: int) -> None:
        self.d = NodeDelivery(window=window, capacity=capacity, ack_timeout=5.0)
        self.now = 0.0
        self.sent: list[Message] = []
        self.pushed_ok: set[str] = set()
        self.dropped_ids: set[str] = set()
        self.first_sent_rv: dict[str, int] = {}
        self.seen_sent: set[str] = set()
        self.acked: list[delivery.Acked] = []
        self.synced: dict[str, int] = {}
        """The ObjectSync RVs the cloud shell would persist from Acked events."""

    @rule(uid=st.sampled_from(["a", "b", "c"]), rv=st.integers(0, 12), delete=st.booleans())
    def push_object(self, uid: str, rv: int, delete: bool) -> None:
        m = msg(uid=uid, rv=str(rv), op="delete" if delete else "update")
        if self.d.push(m, self.now, synced_rv=self.synced.get(uid)) is None:
            self.pushed_ok.add(m.msg_id)
        else:
            self.dropped_ids.add(m.msg_id)

    @rule()
    def push_no_ack(self) -> None:
        m = msg("default/podlist", op="response")
        if self.d.push(m, self.now) is None:
            self.pushed_ok.add(m.msg_id)

    @rule(step=st.sampled_from([0.0, 0.001, 0.005, 1.0, 5.0, 30.0, 1000.0]))
    def tick(self, step: float) -> None:
        self.now += step
        out, dropped = self.d.poll(self.now)
        for m in out:
            assert m.msg_id in self.pushed_ok
            assert m.msg_id not in self.dropped_ids
            if (
                classify(m) is Delivery.ACK
                and m.msg_id not in self.seen_sent
                and m.route.operation != "delete"
            ):
                key = delivery.object_key(m)
                rv = int(m.header.resource_version)
                # the first send of each new message for an object carries a newer RV than the previous one
                assert rv > self.first_sent_rv.get(key, -1)
                self.first_sent_rv[key] = rv
            self.seen_sent.add(m.msg_id)
        self.sent.extend(out)
        for x in dropped:
            self.dropped_ids.add(x.msg.msg_id)

    @rule(index=st.integers(0, 1000))
    def ack_something_sent(self, index: int) -> None:
        if not self.sent:
            return
        # Mostly the latest sends (what a live edge acks), sometimes a stale one.
        m = self.sent[-1 - index % min(len(self.sent), 3)] if index % 4 else self.sent[index % len(self.sent)]
        result = self.d.on_ack(ack_for(m), self.now)
        if result is not None:
            assert result.msg == m
            self.acked.append(result)
            if result.deleted:
                self.synced.pop(result.key, None)
                self.first_sent_rv.pop(result.key, None)
            elif result.resource_version is not None:
                self.synced[result.key] = result.resource_version

    @invariant()
    def bounded(self) -> None:
        assert self.d.in_flight <= self.d.window
        assert len(self.d) <= 2 * self.d.capacity

    @invariant()
    def deadline_iff_work(self) -> None:
        assert (self.d.next_deadline() is None) == (len(self.d) == 0)

    def teardown(self) -> None:
        # Liveness: acking everything as it is sent drains the queue in a bounded number of polls.
        for _ in range(100):
            deadline = self.d.next_deadline()
            if deadline is None:
                break
            self.now = max(self.now, deadline)
            out, _ = self.d.poll(self.now)
            for m in out:
                self.d.on_ack(ack_for(m), self.now)
        assert len(self.d) == 0


DeliveryMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=30, deadline=None)
test_delivery_state_machine = DeliveryMachine.TestCase
