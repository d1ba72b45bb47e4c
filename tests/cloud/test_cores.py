"""Sans-io cores of the controllers: references, change filter, sync index, liveness, access rules, relist."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubeedge.cloud import kubeapi
from kubeedge.cloud.edgecontroller import lifecycle
from kubeedge.cloud.edgecontroller.locations import Locations, Ref, RefKind, references, spec_changed
from kubeedge.cloud.edgecontroller.upstream import Refused, authorize, strip_kube_labels
from kubeedge.cloud.synccontroller.index import SyncIndex, SyncRecord, record_of, sync_object
from kubeedge.proto.resource import ResourceKey, parse_wire


def pod(name: str, node: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"u-{name}", "resourceVersion": "5"},
            "spec": {"nodeName": node, **spec}}  # fmt: skip


def test_references_cover_every_place_a_pod_names_a_configmap_or_secret() -> None:
    p = pod("p", "n", volumes=[
        {"name": "a", "configMap": {"name": "cm-vol"}},
        {"name": "b", "secret": {"secretName": "s-vol"}},
        {"name": "c", "projected": {"sources": [{"configMap": {"name": "cm-proj"}}, {"secret": {"name": "s-proj"}},
                                                {"serviceAccountToken": {"path": "t"}}]}},
    ], containers=[{"name": "x", "envFrom": [{"configMapRef": {"name": "cm-from"}}, {"secretRef": {"name": "s-from"}}],
                    "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm-env", "key": "k"}}},
                            {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s-env", "key": "k"}}},
                            {"name": "C", "value": "plain"}]}],
       initContainers=[{"name": "i", "envFrom": [{"configMapRef": {"name": "cm-init"}}]}],
       imagePullSecrets=[{"name": "s-pull"}])  # fmt: skip
    got = {(r.kind.value, r.name) for r in references(p)}
    assert got == {("configmap", "cm-vol"), ("secret", "s-vol"), ("configmap", "cm-proj"), ("secret", "s-proj"),
                   ("configmap", "cm-from"), ("secret", "s-from"), ("configmap", "cm-env"), ("secret", "s-env"),
                   ("configmap", "cm-init"), ("secret", "s-pull")}  # fmt: skip
    assert all(r.namespace == "ns" for r in references(p))


def test_locations_count_users_per_node_and_forget_with_the_last_pod() -> None:
    loc = Locations()
    cm = Ref(RefKind.CONFIGMAP, "ns", "conf")
    vol = [{"name": "v", "configMap": {"name": "conf"}}]
    assert loc.set_pod("ns/a", pod("a", "n1", volumes=vol), "n1") == {cm}
    assert loc.set_pod("ns/b", pod("b", "n1", volumes=vol), "n1") == set()  # n1 already had it
    assert loc.set_pod("ns/c", pod("c", "n2", volumes=vol), "n2") == {cm}
    assert loc.nodes_for(cm) == ["n1", "n2"]
    loc.remove_pod("ns/a")
    assert loc.nodes_for(cm) == ["n1", "n2"]
    loc.remove_pod("ns/b")
    assert loc.nodes_for(cm) == ["n2"]
    # A pod that drops the reference on update frees it too.
    loc.set_pod("ns/c", pod("c", "n2"), "n2")
    assert loc.nodes_for(cm) == []
    assert loc.pods_on("n2") == ["ns/c"]
    assert loc.node_has_pod("n2", "ns", "c")
    assert not loc.node_has_pod("n1", "ns", "c")


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.sampled_from(["n1", "n2", "n3"]),
                          st.sets(st.sampled_from(["x", "y", "z"])), st.booleans()), max_size=40))  # fmt: skip
def test_reverse_index_always_matches_the_pods(ops: list[tuple[str, str, set[str], bool]]) -> None:
    loc = Locations()
    for name, node, cms, delete in ops:
        key = f"ns/{name}"
        if delete:
            loc.remove_pod(key)
        else:
            loc.set_pod(
                key, pod(name, node, volumes=[{"name": c, "configMap": {"name": c}} for c in cms]), node
            )
    for cm in ("x", "y", "z"):
        ref = Ref(RefKind.CONFIGMAP, "ns", cm)
        want = sorted({e.node for e in loc.pods.values() if ref in e.refs})
        assert loc.nodes_for(ref) == want


def test_status_only_changes_are_not_pushed() -> None:
    old = pod("p", "n")
    assert not spec_changed(old, {**old, "status": {"phase": "Running"},
                                  "metadata": {**old["metadata"], "resourceVersion": "9"}})  # fmt: skip
    assert spec_changed(old, {**old, "metadata": {**old["metadata"], "labels": {"a": "b"}}})
    assert spec_changed(
        old, {**old, "metadata": {**old["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    )
    assert spec_changed(old, {**old, "spec": {"nodeName": "n", "x": 1}})


def test_sync_index_never_lowers_and_remembers_equivalents() -> None:
    index = SyncIndex()
    assert index.needs_send("n", "u", 5)
    index.put(SyncRecord("n", "u", "ns", "v1", "Pod", "p", 0))
    assert index.needs_send("n", "u", 5)  # created before the send, not acknowledged yet
    index.put(SyncRecord("n", "u", "ns", "v1", "Pod", "p", 7))
    index.put(SyncRecord("n", "u", "ns", "v1", "Pod", "p", 6))  # a late, older ack
    assert index.acked("n", "u") == 7
    assert not index.needs_send("n", "u", 7)
    assert index.needs_send("n", "u", 8)
    index.note_equivalent("n", "u", 7, 9)
    assert not index.needs_send("n", "u", 9)
    index.note_equivalent("n", "u", 3, 20)  # the edge does not hold version 3: nothing is implied
    assert index.needs_send("n", "u", 10)
    assert index.acked("n", "u") == 9
    index.remove("n", "u")
    assert index.acked("n", "u") is None


def test_sync_objects_round_trip_with_dotted_node_names() -> None:
    rec = SyncRecord("edge.site-1", "3f2c-11", "ns", "v1", "Pod", "p", 42)
    obj = sync_object(rec)
    assert obj["metadata"]["name"] == "edge.site-1.3f2c-11"
    assert obj["status"]["objectResourceVersion"] == "42"
    assert record_of(obj) == rec
    cluster = SyncRecord("edge-1", "u", "", "v1", "Node", "edge-1", 1)
    assert sync_object(cluster)["kind"] == "ClusterObjectSync"
    assert record_of(sync_object(cluster)) == cluster
    assert record_of({"metadata": {"name": "nodot"}, "spec": {}}) is None


def test_liveness_marks_silent_nodes_once_and_refreshes_live_ones() -> None:
    live = lifecycle.Liveness(grace=40, update_frequency=10)
    live.connected("a", 0)
    live.known("b", 0)
    assert live.due(5, {"a": 12, "b": 0}) == [("a", lifecycle.Action.REFRESH)]
    assert live.due(41, {"a": 0}) == [
        ("a", lifecycle.Action.MARK_UNKNOWN),
        ("b", lifecycle.Action.MARK_UNKNOWN),
    ]
    live.marked_unknown("a")
    live.marked_unknown("b")
    assert live.due(50, {}) == []
    assert live.heard("a", 51) is True
    assert live.due(52, {"a": 0}) == []
    live.disconnected("a", 60)
    assert live.due(80, {"a": 30}) == []  # no refresh while disconnected, not silent long enough yet
    assert live.due(92, {"a": 30}) == [("a", lifecycle.Action.MARK_UNKNOWN)]


def test_unknown_conditions_follow_the_node_lifecycle_controller() -> None:
    now = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    conds = [{"type": "Ready", "status": "True", "reason": "EdgeReady", "lastHeartbeatTime": "2026-01-01T00:00:00Z",
              "lastTransitionTime": "2025-12-31T00:00:00Z"}]  # fmt: skip
    out = {c["type"]: c for c in lifecycle.unknown_conditions(conds, now)}
    assert set(out) == {"Ready", "MemoryPressure", "DiskPressure", "PIDPressure"}
    ready = out["Ready"]
    assert ready["status"] == "Unknown"
    assert ready["reason"] == "NodeStatusUnknown"
    assert ready["message"] == "Kubelet stopped posting node status."
    assert ready["lastTransitionTime"] == "2026-01-02T03:04:05Z"
    assert ready["lastHeartbeatTime"] == "2026-01-01T00:00:00Z"
    assert lifecycle.heartbeat_age({"status": {"conditions": conds}}, now) == pytest.approx(97445)


def test_access_rules() -> None:
    loc = Locations()
    loc.set_pod("ns/mine", pod("mine", "n1", volumes=[{"name": "s", "secret": {"secretName": "sec"}}],
                               serviceAccountName="app"), "n1")  # fmt: skip
    ok = [
        ("null/node/n1", "patch"), ("null/nodepatch/n1", "patch"), ("ns/nodestatus/n1", "update"),
        ("kube-node-lease/lease/n1", "update"), ("ns/podpatch/mine", "patch"), ("ns/pod/mine", "delete"),
        ("ns/secret/sec", "query"), ("ns/serviceaccounttoken/app", "query"),
    ]  # fmt: skip
    for res, op in ok:
        authorize("n1", parse_wire(res), op, loc)
    refused = [
        ("n2", "null/nodepatch/n1", "patch"), ("n2", "kube-node-lease/lease/n1", "update"),
        ("n1", "default/lease/n1", "update"), ("n2", "ns/podpatch/mine", "patch"), ("n2", "ns/secret/sec", "query"),
        ("n1", "ns/secret/other", "query"), ("n1", "ns/secret/sec", "update"), ("n1", "ns/serviceaccounttoken/x", "query"),
        ("n1", "ns/persistentvolumeclaim/x", "query"),
    ]  # fmt: skip
    for node, res, op in refused:
        with pytest.raises(Refused):
            authorize(node, parse_wire(res), op, loc)
    with pytest.raises(Refused):
        authorize("n1", ResourceKey.object("ns", "pod", "new"), "insert", loc, {"spec": {"nodeName": "n2"}})
    authorize("n1", ResourceKey.object("ns", "pod", "new"), "insert", loc, {"spec": {"nodeName": "n1"}})


def test_registration_holds_back_kubernetes_io_labels() -> None:
    kept, held = strip_kube_labels({"node-role.kubernetes.io/edge": "", "kubernetes.io/hostname": "h",
                                    "site": "x", "example.com/a": "b"})  # fmt: skip
    assert kept == {"site": "x", "example.com/a": "b"}
    assert held == {"node-role.kubernetes.io/edge": "", "kubernetes.io/hostname": "h"}


def test_relist_diff_turns_a_list_into_the_missing_events() -> None:
    def obj(name: str, rv: int, uid: str = "") -> dict[str, Any]:
        return {"metadata": {"namespace": "ns", "name": name, "uid": uid or name, "resourceVersion": str(rv)}}

    cache = {"ns/same": obj("same", 3), "ns/changed": obj("changed", 3), "ns/gone": obj("gone", 2),
             "ns/replaced": obj("replaced", 2)}  # fmt: skip
    events = kubeapi.relist_diff(
        cache, [obj("same", 3), obj("changed", 9), obj("new", 10), obj("replaced", 11, "r2")]
    )
    got = [(t.value, o["metadata"]["name"], o["metadata"]["uid"]) for t, o, _ in events]
    assert got == [("MODIFIED", "changed", "changed"), ("ADDED", "new", "new"), ("DELETED", "replaced", "replaced"),
                   ("ADDED", "replaced", "r2"), ("DELETED", "gone", "gone")]  # fmt: skip


def test_token_bucket() -> None:
    bucket = kubeapi.TokenBucket(10, 2, now=0)
    assert bucket.delay(0) == 0
    assert bucket.delay(0) == 0
    assert bucket.delay(0) == pytest.approx(0.1)
    assert bucket.delay(1.0) == 0
    with pytest.raises(ValueError, match="qps"):
        kubeapi.TokenBucket(0, 1, now=0)


def test_in_flight_versions_are_left_to_cloudhub_until_patience_runs_out() -> None:
    index = SyncIndex()
    index.put(SyncRecord("n", "u", "ns", "v1", "Pod", "p", 0))
    index.note_sent("n", "u", 5, now=100.0)
    assert index.in_flight("n", "u", 5, 110.0, patience=30)
    assert not index.in_flight("n", "u", 6, 110.0, patience=30)  # a newer version goes out at once
    assert not index.in_flight("n", "u", 5, 131.0, patience=30)  # unacknowledged for too long: resend
    index.clear_sent("n")  # the session ended: CloudHub's queue is gone
    assert not index.in_flight("n", "u", 5, 110.0, patience=30)
    index.note_sent("n", "u", 5, now=100.0)
    index.put(SyncRecord("n", "u", "ns", "v1", "Pod", "p", 5))
    assert not index.in_flight("n", "u", 5, 101.0, patience=30)
