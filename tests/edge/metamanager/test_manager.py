"""MetaManager's message logic on a real database, wired through real trio channels (see conftest.Link)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

from kubeedge.edge.metamanager import manager as mm
from kubeedge.edge.metamanager import store as st
from kubeedge.kit import limits
from kubeedge.proto.message import Message

from .conftest import CLOCK_MS, Running, run_manager

DEADLINE = 10


def cloud_msg(
    op: str, resource: str, content: Any, *, rv: str = "", source: str = "edgecontroller"
) -> Message:
    return Message.new(
        source=source,
        group="resource",
        operation=op,
        resource=resource,
        content=content,
        now_ms=1,
        resource_version=rv,
    )


def edged_msg(op: str, resource: str, content: Any = None) -> Message:
    return Message.new(
        source="edged", group="meta", operation=op, resource=resource, content=content, now_ms=1
    )


def connect_msg(state: str) -> Message:
    return Message.new(
        source="edgehub",
        group="meta",
        operation="connect",
        resource="node/connection",
        content=state,
        now_ms=1,
    )


def pod(name: str, uid: str, rv: str, ns: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "uid": uid, "resourceVersion": rv},
    }


def configmap(name: str, rv: str, data: str = "x") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "resourceVersion": rv},
        "data": {"k": data},
    }


async def until(pred: Callable[[], bool]) -> None:
    """Poll ``pred`` (the caller's fail_after bounds it)."""
    while not pred():
        await trio.sleep(0.001)


async def connect(r: Running) -> None:
    r.link.connected = True
    await r.inbox.send(connect_msg("cloud_connected"))
    await until(lambda: r.manager.connected)


async def test_cloud_insert_is_durable_before_ack_then_forwarded(store: st.MetaStore, db_path: Any) -> None:
    with trio.fail_after(DEADLINE):
        async with run_manager(store) as r:
            r.link.connected = True
            msg = cloud_msg("insert", "default/pod/nginx", pod("nginx", "u1", "7"), rv="7")
            await r.inbox.send(msg)
            forwarded = await r.edged.receive()
            ack = await r.recv_cloud()
            # The ack exists only once the row is committed: an independent connection sees it.
            with st.MetaStore.open(db_path) as other:
                assert json.loads(other.get("default/pod/nginx") or "null") == pod("nginx", "u1", "7")
    assert forwarded == msg
    assert ack.parent_msg_id == msg.msg_id
    assert ack.content == "OK"
    assert (ack.route.source, ack.route.group, ack.route.operation, ack.route.resource) == (
        "edgecontroller",
        "resource",
        "response",
        "default/pod/nginx",
    )


@pytest.mark.parametrize(("group_max", "commits"), [(256, 1), (1, 50)])
async def test_group_commit_batches_waiting_messages(
    store: st.MetaStore, group_max: int, commits: int
) -> None:
    with trio.fail_after(DEADLINE):
        async with run_manager(store, group_commit_max=group_max) as r:
            r.link.connected = True
            msgs = [
                cloud_msg("update", f"default/configmap/c{i}", configmap(f"c{i}", "1"), rv="1")
                for i in range(50)
            ]
            for m in msgs:
                r.inbox.send_nowait(m)
            acks = [await r.recv_cloud() for _ in msgs]
            forwarded = [await r.edged.receive() for _ in msgs]
    assert [a.parent_msg_id for a in acks] == [m.msg_id for m in msgs]
    assert forwarded == msgs
    assert r.manager.stats["commits"] == commits
    assert len(store.list_type("default", "configmap")) == 50


async def test_stale_and_duplicate_are_acked_not_forwarded(store: st.MetaStore) -> None:
    with trio.fail_after(DEADLINE):
        async with run_manager(store) as r:
            r.link.connected = True
            new = cloud_msg("update", "default/configmap/c", configmap("c", "10", "new"), rv="10")
            old = cloud_msg("update", "default/configmap/c", configmap("c", "9", "old"), rv="9")
            for m in (new, old, new):
                await r.inbox.send(m)
            acks = [await r.recv_cloud() for _ in range(3)]
            assert await r.edged.receive() == new
    assert [a.parent_msg_id for a in acks] == [new.msg_id, old.msg_id, new.msg_id]
    assert r.manager.stats["stale"] == 2
    assert json.loads(store.get("default/configmap/c") or "null")["data"]["k"] == "new"
    assert r.edged.statistics().current_buffer_used == 0


async def test_node_update_stored_only(store: st.MetaStore) -> None:
    with trio.fail_after(DEADLINE):
        async with run_manager(store) as r:
            r.link.connected = True
            node = {"kind": "Node", "metadata": {"name": "edge-1", "resourceVersion": "3"}}
            msg = cloud_msg("update", "null/node/edge-1", node)
            await r.inbox.send(msg)
            ack = await r.recv_cloud()
    assert ack.parent_msg_id == msg.msg_id
    assert store.get("null/node/edge-1") is not None
    assert store.resource_version("null/node/edge-1") == ("3", False)
    assert r.edged.statistics().current_buffer_used == 0


async def test_device_messages_go_to_twin(store: st.MetaStore) -> None:
    with trio.fail_after(DEADLINE):
        async with run_manager(store) as r:
            r.link.connected = True
            device = cloud_msg(
                "insert", "default/device/d1", {"metadata": {"name": "d1"}}, source="devicecontroller"
            )
            membership = Message.new(
                source="devicecontroller",
                group="twin",
                operation="update",
                resource="membership",
                content={},
                now_ms=1,
            )
            await r.inbox.send(device)
            await r.inbox.send(membership)
            got = [await r.twin.receive(), await r.twin.receive()]
            acks = [await r.recv_cloud(), await r.recv_cloud()]
    assert got[0].route.source == "meta"
    assert got[0].route.resource == "default/device/d1"
    assert got[1].route.resource == "membership"
    assert [a.parent_msg_id for a in acks] == [device.msg_id, membership.msg_id]
    assert store.get("default/device/d1") is not None
    assert r.edged.statistics().current_buffer_used == 0


async def test_reply_with_parent_bypasses_store(store: st.MetaStore) -> None:
    with trio.fail_after(DEADLINE):
        async with run_manager(store) as r:
            r.link.connected = True
            reply = Message.new(
                source="edgecontroller",
                group="resource",
                operation="response",
                resource="default/configmap/c",
                content={"Object": configmap("c", "2")},
                now_ms=1,
                parent_msg_id="some-request",
            )
            await r.inbox.send(reply)
            assert await r.edged.receive() == reply
    assert store.keys() == []
    assert r.link.cloud.statistics().current_buffer_used == 0


async def test_cloud_pod_delete_uid_rule(store: st.MetaStore) -> None:
    with trio.fail_after(DEADLINE):
        async with run_manager(store) as r:
            r.link.connected = True
            await r.inbox.send(cloud_msg("insert", "default/pod/p", pod("p", "uid-2", "5"), rv="5"))
            store.upsert("default/podpatch/p", "podpatch", '"patch"', now_ms=1)
            stale_uid = cloud_msg("delete", "default/pod/p", pod("p", "uid-1", "6"), rv="6")
            await r.inbox.send(stale_uid)
            for _ in range(2):
                await r.recv_cloud()
            assert store.get("default/pod/p") is not None
            right = cloud_msg("delete", "default/pod/p", pod("p", "uid-2", "7"), rv="7")
            await r.inbox.send(right)
            await r.recv_cloud()
            forwarded = [await r.edged.receive() for _ in range(3)]
    assert [m.route.operation for m in forwarded] == ["insert", "delete", "delete"]
    assert store.get("default/pod/p") is None
    assert store.get("default/podpatch/p") is None
    assert store.resource_version("default/pod/p") == ("7", True)
    assert store.get_v2("/core/v1/pods/default/p") is None


async def test_api_objects_are_mirrored_to_meta_v2(store: st.MetaStore) -> None:
    with trio.fail_after(DEADLINE):
        async with run_manager(store) as r:
            r.link.connected = True
            lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "edge-1"}}
            for m in (
                cloud_msg("insert", "default/pod/p", pod("p", "u", "5"), rv="5"),
                cloud_msg("update", "kube-node-lease/lease/edge-1", lease, rv="9"),
            ):
                await r.inbox.send(m)
                await r.recv_cloud()
    row = store.get_v2("/core/v1/pods/default/p")
    assert row is not None
    assert row[0] == "/v1, Resource=pods"
    assert json.loads(row[1]) == pod("p", "u", "5")
    lease_row = store.get_v2("/coordination.k8s.io/v1/leases/kube-node-lease/edge-1")
    assert lease_row is not None
    assert lease_row[0] == "coordination.k8s.io/v1, Resource=leases"


async def test_bad_cloud_messages_get_errors(store: st.MetaStore) -> None:
    with trio.fail_after(DEADLINE):
        async with run_manager(store) as r:
            r.link.connected = True
            bad_resource = cloud_msg("insert", "nonsense", {})
            bad_rv = cloud_msg("insert", "default/pod/p", pod("p", "u", "v1"), rv="v1")
            for m in (bad_resource, bad_rv):
                await r.inbox.send(m)
            errors = [await r.recv_cloud(), await r.recv_cloud()]
    assert [e.route.operation for e in errors] == ["error", "error"]
    assert [e.parent_msg_id for e in errors] == [bad_resource.msg_id, bad_rv.msg_id]
    assert "nonsense" in errors[0].content
    assert "resourceVersion" in errors[1].content
    assert store.keys() == []


async def test_offline_queries_answer_from_db(store: st.MetaStore) -> None:
    store.apply(
        [
            st.Upsert("default/configmap/c", "configmap", json.dumps(configmap("c", "1"))),
            st.Upsert("default/pod/a", "pod", json.dumps(pod("a", "ua", "1"))),
            st.Upsert("default/pod/b", "pod", json.dumps(pod("b", "ub", "1"))),
            st.Upsert("other/pod/c", "pod", json.dumps(pod("c", "uc", "1", "other"))),
        ],
        now_ms=1,
    )
    with trio.fail_after(DEADLINE):
        async with run_manager(store) as r:
            queries = [
                edged_msg("query", "default/configmap/c"),
                edged_msg("query", "default/pod"),
                edged_msg("query", "default/secret/missing"),
                edged_msg("query", "default/secret"),
            ]
            for q in queries:
                await r.inbox.send(q)
            answers = [await r.edged.receive() for _ in queries]
    assert [a.parent_msg_id for a in answers] == [q.msg_id for q in queries]
    assert {a.route.source for a in answers} == {"metamanager"}
    assert [json.loads(v) for v in answers[0].content] == [configmap("c", "1")]
    assert [json.loads(v)["metadata"]["name"] for v in answers[1].content] == ["a", "b"]
    assert answers[2].content is None
    assert answers[3].content is None


async def test_node_and_pod_reads_stay_local_when_connected(store: st.MetaStore) -> None:
    store.upsert("null/node/edge-1", "node", '{"kind":"Node"}', now_ms=1)
    with trio.fail_after(DEADLINE):
        async with run_manager(store) as r:
            await connect(r)
            q = edged_msg("query", "null/node/edge-1")
            await r.inbox.send(q)
            answer = await r.edged.receive()
    assert answer.content == ['{"kind":"Node"}']
    assert r.link.cloud.statistics().current_buffer_used == 0


@pytest.mark.parametrize("keys", [("Object", "Err"), ("object", "err")])
async def test_remote_query_stores_answer_and_replies_with_original_id(
    store: st.MetaStore, keys: tuple[str, str]
) -> None:
    cm = configmap("c", "42", "from-cloud")
    with trio.fail_after(DEADLINE):
        async with run_manager(store) as r:
            await connect(r)
            q = edged_msg("query", "default/configmap/c")
            await r.inbox.send(q)
            request = await r.recv_cloud()
            assert request.msg_id != q.msg_id
            assert request.route == q.route
            answer = Message.new(
                source="edgecontroller",
                group="resource",
                operation="response",
                resource=q.route.resource,
                content={keys[0]: cm, keys[1]: None},
                now_ms=2,
                parent_msg_id=request.msg_id,
            )
            await r.link.answer(answer)
            to_edged = await r.edged.receive()
            ack = await r.recv_cloud()
    assert to_edged.parent_msg_id == q.msg_id
    assert to_edged.content == answer.content
    assert ack.parent_msg_id == answer.msg_id
    assert ack.content == "OK"
    assert json.loads(store.get("default/configmap/c") or "null") == cm
    assert store.resource_version("default/configmap/c") == ("42", False)


async def test_remote_error_is_passed_on_not_stored(store: st.MetaStore) -> None:
    with trio.fail_after(DEADLINE):
        async with run_manager(store) as r:
            await connect(r)
            q = edged_msg("query", "default/secret/s")
            await r.inbox.send(q)
            request = await r.recv_cloud()
            content = {
                "Object": None,
                "Err": {"ErrStatus": {"message": 'secrets "s" not found', "code": 404}},
            }
            answer = Message.new(
                source="edgecontroller",
                group="resource",
                operation="response",
                resource=q.route.resource,
                content=content,
                now_ms=2,
                parent_msg_id=request.msg_id,
            )
            await r.link.answer(answer)
            to_edged = await r.edged.receive()
    assert to_edged.parent_msg_id == q.msg_id
    assert to_edged.content == content
    assert store.get("default/secret/s") is None


async def test_remote_timeout_falls_back_to_db(store: st.MetaStore) -> None:
    store.upsert("default/secret/s", "secret", '{"kind":"Secret"}', now_ms=1)
    with trio.fail_after(DEADLINE):
        async with run_manager(store, remote_query_timeout=0.2) as r:
            await connect(r)
            q = edged_msg("query", "default/secret/s")
            await r.inbox.send(q)
            request = await r.recv_cloud()  # the cloud never answers
            answer = await r.edged.receive()
    assert request.route.resource == "default/secret/s"
    assert answer.parent_msg_id == q.msg_id
    assert answer.content == ['{"kind":"Secret"}']
    assert answer.route.source == "metamanager"


async def test_remote_insert_offline_is_refused(store: st.MetaStore) -> None:
    with trio.fail_after(DEADLINE):
        async with run_manager(store) as r:
            q = edged_msg("insert", "null/node/edge-1", {"kind": "Node"})
            await r.inbox.send(q)
            answer = await r.edged.receive()
    assert (answer.route.operation, answer.content, answer.parent_msg_id) == (
        "error",
        "not connected",
        q.msg_id,
    )
    assert store.keys() == []


async def test_remote_insert_connected_answers_edged(store: st.MetaStore) -> None:
    with trio.fail_after(DEADLINE):
        async with run_manager(store) as r:
            await connect(r)
            q = edged_msg("insert", "kube-node-lease/lease/edge-1", {"kind": "Lease"})
            await r.inbox.send(q)
            request = await r.recv_cloud()
            await r.link.answer(
                Message.new(
                    source="edgecontroller",
                    group="resource",
                    operation="response",
                    resource=q.route.resource,
                    content={"Object": {"kind": "Lease"}, "Err": None},
                    now_ms=2,
                    parent_msg_id=request.msg_id,
                )
            )
            answer = await r.edged.receive()
    assert answer.parent_msg_id == q.msg_id
    assert answer.content == {"Object": {"kind": "Lease"}, "Err": None}


async def test_edged_update_stores_forwards_and_answers_ok(store: st.MetaStore) -> None:
    status = {"UID": "u1", "Name": "p", "Status": {"phase": "Running"}}
    with trio.fail_after(DEADLINE):
        async with run_manager(store) as r:
            await connect(r)
            u = edged_msg("update", "default/podstatus/p", status)
            await r.inbox.send(u)
            up = await r.recv_cloud()
            ok = await r.edged.receive()
    assert up == u
    assert (ok.content, ok.parent_msg_id) == ("OK", u.msg_id)
    assert json.loads(store.get("default/podstatus/p") or "null") == status


async def test_offline_statuses_drain_in_order_with_supersede(store: st.MetaStore) -> None:
    with trio.fail_after(DEADLINE):
        async with run_manager(store) as r:
            a1 = edged_msg("patch", "default/podpatch/a", '{"status":{"phase":"Pending"}}')
            b1 = edged_msg("patch", "default/podpatch/b", '{"status":{"phase":"Running"}}')
            gone = edged_msg(
                "delete", "default/pod/c", {"gracePeriodSeconds": 0, "preconditions": {"uid": "uc"}}
            )
            a2 = edged_msg("patch", "default/podpatch/a", '{"status":{"phase":"Running"}}')
            for m in (a1, b1, gone, a2):
                await r.inbox.send(m)
            lost = [await r.edged.receive() for _ in range(3)]
            assert store.outbox_len() == 3
            await connect(r)
            drained = [await r.recv_cloud() for _ in range(3)]
            await until(lambda: store.outbox_len() == 0)
            # Back to direct sends once the outbox is empty.
            await until(lambda: not r.manager.outbox_pending)
            live = edged_msg("patch", "default/podpatch/b", '{"status":{"phase":"Succeeded"}}')
            await r.inbox.send(live)
            assert await r.recv_cloud() == live
    assert [(m.content, m.route.operation) for m in lost] == [("connection lost", "error")] * 3
    assert [m.parent_msg_id for m in lost] == [a1.msg_id, b1.msg_id, a2.msg_id]
    assert drained == [b1, gone, a2]
    assert store.get("default/podpatch/a") == json.dumps(a2.content)


async def test_outbox_survives_restart(store: st.MetaStore) -> None:
    u = edged_msg("update", "default/podstatus/p", {"UID": "u", "Status": {}})
    with trio.fail_after(DEADLINE):
        async with run_manager(store) as r:
            await r.inbox.send(u)
            assert (await r.edged.receive()).content == "OK"
        async with run_manager(store) as r2:
            await connect(r2)
            assert await r2.recv_cloud() == u


async def test_disconnect_during_remote_query_falls_back(store: st.MetaStore) -> None:
    store.upsert("default/configmap/c", "configmap", '"stored"', now_ms=1)
    with trio.fail_after(DEADLINE):
        async with run_manager(store) as r:
            await connect(r)
            r.link.connected = False  # the link broke before the request could go out
            q = edged_msg("query", "default/configmap/c")
            await r.inbox.send(q)
            answer = await r.edged.receive()
    assert answer.content == ['"stored"']
    assert answer.parent_msg_id == q.msg_id


async def test_drain_stops_on_link_error_and_resumes_on_reconnect(store: st.MetaStore) -> None:
    msgs = [edged_msg("update", f"default/podstatus/p{i}", {"UID": f"u{i}", "Status": {}}) for i in range(3)]
    with trio.fail_after(DEADLINE):
        async with run_manager(store) as r:
            for m in msgs:
                await r.inbox.send(m)
                assert (await r.edged.receive()).content == "OK"
            # EdgeHub says connected but the link fails at once: the drain stops, nothing is lost.
            await r.inbox.send(connect_msg("cloud_connected"))
            await until(lambda: r.manager.connected and not r.manager.draining)
            assert store.outbox_len() == 3
            await r.inbox.send(connect_msg("cloud_disconnected"))
            await until(lambda: not r.manager.connected)
            await connect(r)
            drained = [await r.recv_cloud() for _ in msgs]
            await until(lambda: store.outbox_len() == 0)
    assert drained == msgs


async def test_tombstones_are_compacted(store: st.MetaStore) -> None:
    store.delete("default/configmap/c", resource_version="5", now_ms=CLOCK_MS - 10_000)
    store.delete("default/configmap/d", resource_version="5", now_ms=CLOCK_MS)
    with trio.fail_after(DEADLINE):
        async with run_manager(store, tombstone_ttl_s=5, compact_interval_s=0.01):
            await until(lambda: store.resource_version("default/configmap/c") == ("", False))
    assert store.resource_version("default/configmap/d") == ("5", True)


async def test_offline_reboot_restores_everything_edged_needs(db_path: Any) -> None:
    """Pods, their configmap and secret, and the node survive a restart and are served with no cloud."""
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "edge-1", "resourceVersion": "2"}}
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "resourceVersion": "4"}}
    pushed = [
        cloud_msg("update", "null/node/edge-1", node, rv="2"),
        cloud_msg("insert", "default/configmap/c", configmap("c", "3"), rv="3"),
        cloud_msg("update", "default/secret/s", secret, rv="4"),
        cloud_msg("insert", "default/pod/a", pod("a", "ua", "5"), rv="5"),
        cloud_msg("insert", "default/pod/b", pod("b", "ub", "6"), rv="6"),
    ]
    with trio.fail_after(DEADLINE):
        first = st.MetaStore.open(db_path)
        async with run_manager(first) as r:
            r.link.connected = True
            for m in pushed:
                await r.inbox.send(m)
            for _ in pushed:
                await r.recv_cloud()
        first.close()
        with st.MetaStore.open(db_path) as store:
            async with run_manager(store) as r2:
                queries = [
                    edged_msg("query", "default/pod"),
                    edged_msg("query", "default/configmap/c"),
                    edged_msg("query", "default/secret/s"),
                    edged_msg("query", "null/node/edge-1"),
                ]
                for q in queries:
                    await r2.inbox.send(q)
                answers = [await r2.edged.receive() for _ in queries]
    assert [[json.loads(v) for v in a.content] for a in answers] == [
        [pod("a", "ua", "5"), pod("b", "ub", "6")],
        [configmap("c", "3")],
        [secret],
        [node],
    ]


async def test_full_store_answers_errors_and_acks_nothing(db_path: Any) -> None:
    big = "x" * 60_000
    msgs = [
        cloud_msg("insert", f"default/configmap/c{i}", configmap(f"c{i}", "1", big), rv="1") for i in range(8)
    ]
    with trio.fail_after(DEADLINE), st.MetaStore.open(db_path, max_db_bytes=200 * 1024) as small:
        async with run_manager(small, group_commit_max=1) as r:
            r.link.connected = True
            for m in msgs:
                await r.inbox.send(m)
            replies = [await r.recv_cloud() for _ in msgs]
        stored = set(small.keys())
    acked = [m for m, rep in zip(msgs, replies, strict=True) if rep.route.operation == "response"]
    refused = [rep for rep in replies if rep.route.operation == "error"]
    assert acked
    assert refused
    assert all("database is full" in rep.content and str(db_path) in rep.content for rep in refused)
    assert stored == {m.route.resource for m in acked}


async def test_remote_requests_in_flight_are_bounded(
    store: st.MetaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "META_MAX_REMOTE_QUERIES", 2)
    with trio.fail_after(DEADLINE):
        async with run_manager(store) as r:
            await connect(r)
            queries = [edged_msg("query", f"default/configmap/c{i}") for i in range(3)]
            for q in queries:
                await r.inbox.send(q)
            first = [await r.recv_cloud(), await r.recv_cloud()]
            await trio.testing.wait_all_tasks_blocked()
            assert r.link.cloud.statistics().current_buffer_used == 0  # the third waits for a slot
            await r.link.answer(
                Message.new(
                    source="edgecontroller",
                    group="resource",
                    operation="response",
                    resource=first[0].route.resource,
                    content={"Object": configmap("c0", "1"), "Err": None},
                    now_ms=2,
                    parent_msg_id=first[0].msg_id,
                )
            )
            third = await r.recv_cloud()
            while third.route.operation == "response":  # skip the ack of the answer
                third = await r.recv_cloud()
    assert third.route.resource == "default/configmap/c2"


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="remoteQueryTimeout"):
        mm.MetaManagerConfig(remote_query_timeout=0)
    with pytest.raises(ValueError, match="group commit"):
        mm.MetaManagerConfig(group_commit_max=0)
