"""The sans-io delivery core with explicit times: classification, ack, resend, supersede, backoff, bounds."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kubeedge.cloud.cloudhub.delivery import Mode, NodeDelivery, Outcome, classify, parse_rv
from kubeedge.proto.message import Message

NODE = "edge-1"


def obj(
    uid: str,
    rv: str,
    *,
    op: str = "update",
    source: str = "edgecontroller",
    group: str = "resource",
    rtype: str = "pod",
    deleting: bool = False,
    content: Any = None,
) -> Message:
    meta: dict[str, Any] = {"name": uid, "uid": uid}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return Message.new(
        source=source,
        group=group,
        operation=op,
        resource=f"node/{NODE}/default/{rtype}/{uid}",
        content={"metadata": meta} if content is None else content,
        now_ms=0,
        resource_version=rv,
    )


def plain(
    resource: str,
    *,
    op: str = "update",
    source: str = "edgecontroller",
    group: str = "resource",
    content: Any = None,
) -> Message:
    return Message.new(source=source, group=group, operation=op, resource=resource, content=content, now_ms=0)


# --- classification (wire notes 2.5) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("msg", "mode"),
    [
        (plain(f"node/{NODE}/default/podlist"), Mode.NO_ACK),
        (plain(f"node/{NODE}/membership", source="devicecontroller", group="twin"), Mode.NO_ACK),
        (plain(f"node/{NODE}/device/default/d1/twin/cloud_updated", group="twin"), Mode.NO_ACK),
        (plain(f"node/{NODE}/default/serviceaccounttoken/sa", op="response"), Mode.NO_ACK),
        (plain(f"node/{NODE}/k8s/ca.crt", source="cloudhub", op="response"), Mode.NO_ACK),
        (plain(f"node/{NODE}/volume/x", op="createvolume"), Mode.NO_ACK),
        (
            plain(f"node/{NODE}/default/app", op="applicationResponse", source="dynamiccontroller"),
            Mode.NO_ACK,
        ),
        (plain(f"node/{NODE}/topic/a", op="publish", source="router_eventbus", group="user"), Mode.NO_ACK),
        (plain(f"node/{NODE}/task/x", op="upgrade", source="nodeupgradejobcontroller"), Mode.NO_ACK),
        (plain(f"node/{NODE}/default/pod/p", op="response", content="OK"), Mode.NO_ACK),
        (plain(f"node/{NODE}/default/pod/p", op="error", content="boom"), Mode.NO_ACK),
        (plain(f"node/{NODE}/null/node/{NODE}", op="response"), Mode.NO_ACK),
        (plain(f"node/{NODE}/null/node/{NODE}", op="update"), Mode.ACK),
        (plain(f"node/{NODE}/kube-node-lease/lease/{NODE}", op="response"), Mode.NO_ACK),
        (plain(f"node/{NODE}/null/nodepatch/{NODE}", op="response"), Mode.NO_ACK),
        (plain(f"node/{NODE}/default/podpatch/p", op="response"), Mode.NO_ACK),
        (plain(f"node/{NODE}/default/podstatus/p", op="response"), Mode.NO_ACK),
        (plain(f"node/{NODE}/default/certificatesigningrequest/c", op="response"), Mode.NO_ACK),
        (plain(f"node/{NODE}/default/pod/p", op="response", content={"Object": {}}), Mode.NO_ACK),
        (plain(f"node/{NODE}/default/pod/p", op="update"), Mode.ACK),
        (plain(f"node/{NODE}/default/configmap/c", op="response", content={"metadata": {}}), Mode.ACK),
        (plain(f"node/{NODE}/default/secret/s", op="update"), Mode.ACK),
        (plain(f"node/{NODE}/default/device/d", op="update", source="devicecontroller"), Mode.ACK),
        (plain(f"node/{NODE}/null/persistentvolume/pv", op="response"), Mode.ACK),
    ],
)
def test_classify(msg: Message, mode: Mode) -> None:
    assert classify(msg) is mode


def test_parse_rv_is_uint64() -> None:
    assert parse_rv("18446744073709551615") == 2**64 - 1
    assert parse_rv("18446744073709551616") is None
    assert parse_rv("") is None
    assert parse_rv("-1") is None
    assert parse_rv("12a") is None
    assert parse_rv("٣") is None  # a non-ASCII digit is not a version


# --- ack queue -----------------------------------------------------------------------------------------


def test_send_ack_resend_then_backoff() -> None:
    acked: list[Message] = []
    d = NodeDelivery(NODE, on_acked=lambda node, m: acked.append(m))
    m = obj("u1", "10")
    assert d.enqueue(m, 0.0) is Outcome.QUEUED
    assert d.next_deadline(0.0) == 0.0
    assert d.poll(0.0) == [m]
    assert d.next_deadline(0.0) == 5.0
    assert d.poll(4.999) == []
    # four more sends with the same message id, 5 s apart
    for i in range(1, 5):
        assert d.poll(5.0 * i) == [m]
    assert d.stats.resent == 4
    # fifth timeout: requeued with 5 ms backoff, then sent again (same message)
    assert d.poll(25.0) == []
    assert d.next_deadline(25.0) == pytest.approx(25.005)
    assert d.poll(25.004) == []
    assert d.poll(25.005) == [m]
    for i in range(1, 5):
        assert d.poll(25.005 + 5.0 * i) == [m]
    assert d.poll(50.005) == []
    assert d.next_deadline(50.005) == pytest.approx(50.015)  # doubled: 10 ms
    assert d.poll(50.015) == [m]
    # ack stops everything and reports once
    assert d.ack(m.msg_id, 51.0) == m
    assert acked == [m]
    assert d.ack(m.msg_id, 51.0) is None
    assert d.next_deadline(51.0) == math.inf
    assert d.poll(1000.0) == []


def test_backoff_doubles_and_is_capped_at_1000s() -> None:
    d = NodeDelivery(NODE)
    m = obj("u1", "1")
    d.enqueue(m, 0.0)
    now, sends = 0.0, []
    while len(sends) < 5 * 25:
        now = d.next_deadline(now)
        out = d.poll(now)
        if out:
            assert out == [m]
            sends.append(now)
    gaps = [b - a for a, b in itertools.pairwise(sends)]
    backoffs = [g - 5.0 for g in gaps if abs(g - 5.0) > 1e-9]  # requeue: ack timeout + backoff
    assert backoffs[:3] == pytest.approx([0.005, 0.010, 0.020])
    assert max(backoffs) == pytest.approx(1000.0)
    assert backoffs[-1] == pytest.approx(1000.0)
    assert all(abs(g - 5.0) < 1e-9 or g > 5.0 for g in gaps)


def test_newer_version_supersedes_older_is_discarded() -> None:
    acked: list[Message] = []
    d = NodeDelivery(NODE, on_acked=lambda node, m: acked.append(m))
    v5, v7, v6 = obj("u1", "5"), obj("u1", "7"), obj("u1", "6")
    d.enqueue(v5, 0.0)
    assert d.enqueue(v7, 0.0) is Outcome.QUEUED  # replaces the queued v5 before it is sent
    assert d.enqueue(v6, 0.0) is Outcome.STALE
    assert d.enqueue(obj("u1", "7"), 0.0) is Outcome.STALE  # equal is discarded too
    assert d.poll(0.0) == [v7]
    # newer while v7 is in flight: v7 is abandoned, v9 goes out at once
    v9 = obj("u1", "9")
    assert d.enqueue(v9, 1.0) is Outcome.QUEUED
    assert d.poll(1.0) == [v9]
    assert d.ack(v7.msg_id, 1.5) is None  # a late ack for the abandoned version reports nothing
    assert d.ack(v9.msg_id, 2.0) == v9
    assert acked == [v9]
    assert d.poll(100.0) == []


def test_uint64_compare_not_string_compare() -> None:
    d = NodeDelivery(NODE)
    d.enqueue(obj("u1", "9"), 0.0)
    assert d.enqueue(obj("u1", "10"), 0.0) is Outcome.QUEUED  # "10" < "9" as strings


def test_deletes_and_responses_always_queued_and_stored_delete_wins() -> None:
    d = NodeDelivery(NODE)
    d.enqueue(obj("u1", "9"), 0.0)
    delete = obj("u1", "3", op="delete")
    assert d.enqueue(delete, 0.0) is Outcome.QUEUED
    assert d.queued("u1") == delete
    assert d.enqueue(obj("u1", "20"), 0.0) is Outcome.STALE  # nothing after a stored delete
    marked = obj("u2", "", deleting=True)  # deletionTimestamp counts as delete, RV may be empty
    assert d.enqueue(marked, 0.0) is Outcome.QUEUED
    response = obj("u3", "1", op="response", rtype="configmap")  # a query reply
    d.enqueue(obj("u3", "5", rtype="configmap"), 0.0)
    assert d.enqueue(response, 0.0) is Outcome.QUEUED
    assert d.queued("u3") == response


def test_ack_mode_rejections() -> None:
    d = NodeDelivery(NODE)
    assert d.enqueue(obj("u1", ""), 0.0) is Outcome.NO_VERSION
    assert d.enqueue(obj("u1", "x1"), 0.0) is Outcome.INVALID
    assert d.enqueue(obj("u1", "1", group="twin"), 0.0) is Outcome.INVALID
    assert d.enqueue(obj("u1", "1", content={"spec": {}}), 0.0) is Outcome.INVALID
    assert d.poll(0.0) == []


def test_acked_version_lookup_filters_duplicates() -> None:
    recorded = {"u1": 10}
    d = NodeDelivery(NODE, acked_version=recorded.get)
    assert d.enqueue(obj("u1", "10"), 0.0) is Outcome.STALE
    assert d.enqueue(obj("u1", "11"), 0.0) is Outcome.QUEUED
    assert d.enqueue(obj("u2", "1"), 0.0) is Outcome.QUEUED


def test_window_bounds_in_flight() -> None:
    d = NodeDelivery(NODE, max_in_flight=2)
    msgs = [obj(f"u{i}", "1") for i in range(5)]
    for m in msgs:
        d.enqueue(m, 0.0)
    assert d.poll(0.0) == msgs[:2]
    assert d.in_flight == 2
    assert d.next_deadline(0.0) == 5.0
    d.ack(msgs[0].msg_id, 1.0)
    assert d.next_deadline(1.0) == 1.0
    assert d.poll(1.0) == [msgs[2]]


def test_overflow_policies() -> None:
    d = NodeDelivery(NODE, ack_queue_size=2, noack_queue_size=2)
    assert d.enqueue(obj("u1", "1"), 0.0) is Outcome.QUEUED
    assert d.enqueue(obj("u2", "1"), 0.0) is Outcome.QUEUED
    assert d.enqueue(obj("u3", "1"), 0.0) is Outcome.OVERFLOW  # a new UID is refused
    assert d.enqueue(obj("u2", "2"), 0.0) is Outcome.QUEUED  # an existing UID still supersedes
    replies = [plain(f"node/{NODE}/default/pod/p{i}", op="response", content="OK") for i in range(3)]
    for r in replies[:2]:
        assert d.enqueue(r, 0.0) is Outcome.QUEUED
    assert d.enqueue(replies[2], 0.0) is Outcome.DROPPED_OLDEST
    out = d.poll(0.0)
    assert out[:2] == replies[1:]  # no-ack first, oldest dropped
    assert d.stats.overflow == 1
    assert d.stats.dropped_oldest == 1


def test_noack_sent_once() -> None:
    d = NodeDelivery(NODE)
    r = plain(f"node/{NODE}/default/pod/p", op="response", content="OK")
    d.enqueue(r, 0.0)
    assert d.poll(0.0) == [r]
    assert d.next_deadline(0.0) == math.inf
    assert d.poll(100.0) == []


# --- state machine -------------------------------------------------------------------------------------

UIDS = ("a", "b", "c")


class DeliveryMachine(RuleBasedStateMachine):
    """Random enqueues, acks and time steps; checks ordering, bounds and liveness invariants."""

    def __init__(self) -> None:
        super().__init__()
        self.acked: list[Message] = []
        self.d = NodeDelivery(
            NODE, ack_queue_size=2, max_in_flight=2, on_acked=lambda node, m: self.acked.append(m)
        )
        self.now = 0.0
        self.on_wire: dict[str, Message] = {}  # msg id -> message written, not yet acked by us
        self.sends: dict[str, list[float]] = {}
        self.best_rv: dict[str, int] = {}  # highest version the core accepted per uid
        self.acked_rv: dict[str, int] = {}

    @rule(uid=st.sampled_from(UIDS), rv=st.integers(min_value=1, max_value=30), delete=st.booleans())
    def enqueue(self, uid: str, rv: int, delete: bool) -> None:
        msg = obj(uid, str(rv), op="delete" if delete else "update")
        before = self.d.queued(uid)
        outcome = self.d.enqueue(msg, self.now)
        if outcome is Outcome.QUEUED:
            assert self.d.queued(uid) == msg
        elif outcome is Outcome.STALE:
            assert not delete
            assert before is not None or uid in self.acked_rv
            if before is not None:
                assert before.route.operation == "delete" or int(before.header.resource_version) >= rv
        else:
            assert outcome is Outcome.OVERFLOW
            assert before is None
            assert self.d.ack_queue_len == 2

    @rule(dt=st.sampled_from([0.0, 0.001, 0.01, 1.0, 5.0, 60.0, 2000.0]))
    def advance(self, dt: float) -> None:
        self.now += dt
        for msg in self.d.poll(self.now):
            self.on_wire[msg.msg_id] = msg
            self.sends.setdefault(msg.msg_id, []).append(self.now)

    @precondition(lambda self: bool(self.on_wire))
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        # by position, not by id: ids are random uuids and Hypothesis must replay draws exactly
        index = data.draw(st.integers(min_value=0, max_value=len(self.on_wire) - 1))
        msg_id = list(self.on_wire)[index]
        msg = self.on_wire.pop(msg_id)
        got = self.d.ack(msg_id, self.now)
        if got is not None:
            assert got == msg
            uid = msg.content["metadata"]["uid"]
            rv = int(msg.header.resource_version)
            if msg.route.operation != "delete":
                # acks of one uid never go backwards in version
                assert rv >= self.acked_rv.get(uid, 0) or any(
                    m.route.operation == "delete" for m in self.acked if m.content["metadata"]["uid"] == uid
                )
                self.acked_rv[uid] = max(rv, self.acked_rv.get(uid, 0))

    @invariant()
    def bounded(self) -> None:
        assert self.d.in_flight <= 2
        assert self.d.ack_queue_len <= 2
        assert self.d.in_flight >= 0

    @invariant()
    def acked_once(self) -> None:
        ids = [m.msg_id for m in self.acked]
        assert len(ids) == len(set(ids))

    @invariant()
    def resends_spaced(self) -> None:
        for times in self.sends.values():
            # a message id is only ever re-sent after a full ack timeout (plus backoff after requeues)
            for a, b in itertools.pairwise(times):
                assert b - a >= 5.0 - 1e-9

    @invariant()
    def liveness(self) -> None:
        # anything still queued has a deadline: nothing is ever stranded
        if self.d.ack_queue_len:
            assert self.d.next_deadline(self.now) < math.inf


TestDeliveryMachine = DeliveryMachine.TestCase
