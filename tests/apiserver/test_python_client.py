"""The ``kubernetes`` Python client against the embedded server: CRUD, watch, patches, CRDs."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from tests.apiserver.conftest import Cluster

NS = "pyclient"


@pytest.fixture(scope="module")
def api(cluster: Cluster) -> Any:
    c = cluster.api_client()
    core = client.CoreV1Api(c)
    core.create_namespace({"metadata": {"name": NS}})
    return c


def _pod(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}], **spec},
    }


def test_version_and_discovery(api: Any) -> None:
    info = client.VersionApi(api).get_code()
    assert info.major == "1"
    groups = {g.name for g in client.ApisApi(api).get_api_versions().groups}
    assert {
        "coordination.k8s.io",
        "apiextensions.k8s.io",
        "devices.kubeedge.io",
        "reliablesyncs.kubeedge.io",
    } <= groups
    names = {r.name for r in client.CoreV1Api(api).get_api_resources().resources}
    assert {"pods", "pods/status", "pods/binding", "nodes/status", "serviceaccounts/token"} <= names


def test_bootstrap_namespaces(api: Any) -> None:
    names = {n.metadata.name for n in client.CoreV1Api(api).list_namespace().items}
    assert {"default", "kube-system", "kube-node-lease", "kubeedge"} <= names


def test_crud_core_kinds(api: Any) -> None:
    core = client.CoreV1Api(api)
    bodies: list[tuple[str, dict[str, Any]]] = [
        ("config_map", {"metadata": {"name": "cm1"}, "data": {"k": "v"}}),
        ("secret", {"metadata": {"name": "s1"}, "stringData": {"password": "hunter2"}}),
        ("service", {"metadata": {"name": "svc1"}, "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}}),
        ("endpoints", {"metadata": {"name": "svc1"}, "subsets": [{"addresses": [{"ip": "10.1.0.1"}], "ports": [{"port": 80}]}]}),
        ("event", {"metadata": {"name": "ev1"}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": NS},
                   "reason": "Test", "message": "hello"}),
        ("service_account", {"metadata": {"name": "sa1"}}),
        ("pod", _pod("p1", nodeName="ghost-node")),
    ]  # fmt: skip
    for kind, body in bodies:
        created = getattr(core, f"create_namespaced_{kind}")(NS, body)
        name = body["metadata"]["name"]
        assert created.metadata.uid
        assert created.metadata.creation_timestamp is not None
        got = getattr(core, f"read_namespaced_{kind}")(name, NS)
        assert got.metadata.resource_version == created.metadata.resource_version
        listed = getattr(core, f"list_namespaced_{kind}")(NS)
        assert name in {i.metadata.name for i in listed.items}
        got.metadata.labels = {"touched": "yes"}
        updated = getattr(core, f"replace_namespaced_{kind}")(name, NS, got)
        assert int(updated.metadata.resource_version) > int(created.metadata.resource_version)
        assert updated.metadata.labels == {"touched": "yes"}
    secret = core.read_namespaced_secret("s1", NS)
    assert secret.data == {"password": "aHVudGVyMg=="}
    assert secret.type == "Opaque"
    svc = core.read_namespaced_service("svc1", NS)
    assert svc.spec.cluster_ip.startswith("10.")
    assert svc.spec.ports[0].target_port == 80
    pod = core.read_namespaced_pod("p1", NS)
    assert pod.spec.restart_policy == "Always"
    assert pod.spec.containers[0].image_pull_policy == "IfNotPresent"
    assert pod.status.phase == "Pending"
    for kind, body in bodies:
        getattr(core, f"delete_namespaced_{kind}")(body["metadata"]["name"], NS)
        with pytest.raises(ApiException) as err:
            getattr(core, f"read_namespaced_{kind}")(body["metadata"]["name"], NS)
        assert err.value.status == 404


def test_crud_cluster_kinds_and_leases(api: Any) -> None:
    core = client.CoreV1Api(api)
    node = core.create_node({"metadata": {"name": "crud-node", "labels": {"a": "b"}}})
    assert node.metadata.name == "crud-node"
    assert core.read_node("crud-node").metadata.labels == {"a": "b"}
    core.delete_node("crud-node")
    coord = client.CoordinationV1Api(api)
    lease = coord.create_namespaced_lease(
        "kube-node-lease",
        {"metadata": {"name": "edge-x"}, "spec": {"holderIdentity": "edge-x", "leaseDurationSeconds": 40}},
    )
    lease.spec.renew_time = "2026-01-01T00:00:00.000000Z"
    renewed = coord.replace_namespaced_lease("edge-x", "kube-node-lease", lease)
    assert renewed.spec.renew_time is not None
    coord.delete_namespaced_lease("edge-x", "kube-node-lease")


def test_generate_name_and_conflict(api: Any) -> None:
    core = client.CoreV1Api(api)
    a = core.create_namespaced_config_map(NS, {"metadata": {"generateName": "gen-"}, "data": {}})
    assert a.metadata.name.startswith("gen-")
    assert len(a.metadata.name) == 9
    stale = core.read_namespaced_config_map(a.metadata.name, NS)
    fresh = core.read_namespaced_config_map(a.metadata.name, NS)
    fresh.data = {"x": "1"}
    core.replace_namespaced_config_map(a.metadata.name, NS, fresh)
    stale.data = {"x": "2"}
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_config_map(a.metadata.name, NS, stale)
    assert err.value.status == 409
    assert "Conflict" in err.value.body
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map(NS, {"metadata": {"name": a.metadata.name}})
    assert err.value.status == 409
    assert "AlreadyExists" in err.value.body


def test_list_pagination_and_selectors(api: Any) -> None:
    core = client.CoreV1Api(api)
    for i in range(7):
        core.create_namespaced_config_map(
            NS, {"metadata": {"name": f"page-{i}", "labels": {"page": "yes", "idx": str(i)}}}
        )
    seen: list[str] = []
    token = None
    for _ in range(10):
        page = core.list_namespaced_config_map(NS, label_selector="page=yes", limit=3, _continue=token)
        seen += [i.metadata.name for i in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert seen == [f"page-{i}" for i in range(7)]

    def names(sel):
        return {i.metadata.name for i in core.list_namespaced_config_map(NS, label_selector=sel).items}

    assert names("idx in (1,2),page") == {"page-1", "page-2"}
    assert names("page=yes,idx notin (0,1,2,3,4,5)") == {"page-6"}
    assert names("idx!=0,page==yes") == {f"page-{i}" for i in range(1, 7)}
    assert "page-0" not in names("!idx")
    got = core.list_namespaced_config_map(NS, field_selector="metadata.name=page-3")
    assert [i.metadata.name for i in got.items] == ["page-3"]
    with pytest.raises(ApiException) as err:
        core.list_namespaced_config_map(NS, field_selector="data.k=1")
    assert err.value.status == 400


def test_pod_field_selectors_and_binding(api: Any) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(NS, _pod("bound", nodeName="ghost-node"))
    core.create_namespaced_pod(NS, _pod("unbound", schedulerName="other-scheduler"))
    on_node = core.list_pod_for_all_namespaces(field_selector="spec.nodeName=ghost-node")
    assert [p.metadata.name for p in on_node.items] == ["bound"]
    pending = core.list_namespaced_pod(NS, field_selector="status.phase=Pending,spec.nodeName=")
    assert "unbound" in {p.metadata.name for p in pending.items}
    core.create_namespaced_binding(
        NS,
        {"metadata": {"name": "unbound"}, "target": {"kind": "Node", "name": "ghost-node"}},
        _preload_content=False,
    )
    assert core.read_namespaced_pod("unbound", NS).spec.node_name == "ghost-node"
    for name in ("bound", "unbound"):
        core.delete_namespaced_pod(name, NS)


def test_status_patches_on_node_and_pod(api: Any) -> None:
    core = client.CoreV1Api(api)
    core.create_node({"metadata": {"name": "patch-node"}, "status": {"conditions": [
        {"type": "Ready", "status": "False", "reason": "Booting"},
        {"type": "MemoryPressure", "status": "False"},
    ]}})  # fmt: skip
    patched = core.patch_node_status(
        "patch-node",
        {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}},
    )
    by_type = {c.type: c for c in patched.status.conditions}
    assert by_type["Ready"].status == "True"
    assert by_type["MemoryPressure"].status == "False"
    merged = core.patch_node_status(
        "patch-node", {"status": {"capacity": {"cpu": "4"}}}, _content_type="application/merge-patch+json"
    )
    assert merged.status.capacity == {"cpu": "4"}
    assert len(merged.status.conditions) == 2
    # A status patch through the main resource does not change status.
    core.patch_node("patch-node", {"status": {"capacity": {"cpu": "99"}}, "metadata": {"labels": {"l": "1"}}})
    node = core.read_node("patch-node")
    assert node.status.capacity == {"cpu": "4"}
    assert node.metadata.labels == {"l": "1"}
    core.create_namespaced_pod(NS, _pod("status-pod", nodeName="nowhere"))
    pod = core.patch_namespaced_pod_status(
        "status-pod", NS,
        {"status": {"phase": "Running", "podIP": "10.2.0.7",
                    "conditions": [{"type": "Ready", "status": "True"}, {"type": "Initialized", "status": "True"}]}},
    )  # fmt: skip
    assert pod.status.phase == "Running"
    assert pod.status.pod_ip == "10.2.0.7"
    pod = core.patch_namespaced_pod_status(
        "status-pod",
        NS,
        {"status": {"conditions": [{"type": "Ready", "status": "False"}]}},
        _content_type="application/strategic-merge-patch+json",
    )
    assert {c.type: c.status for c in pod.status.conditions} == {"Ready": "False", "Initialized": "True"}
    pod = core.patch_namespaced_pod(
        "status-pod", NS, [{"op": "add", "path": "/metadata/annotations", "value": {"a": "b"}}]
    )
    assert pod.metadata.annotations == {"a": "b"}
    core.delete_namespaced_pod("status-pod", NS)
    core.delete_node("patch-node")


def test_watch_resume_and_gone(api: Any) -> None:
    core = client.CoreV1Api(api)
    start = core.list_namespaced_config_map(NS).metadata.resource_version
    core.create_namespaced_config_map(NS, {"metadata": {"name": "w1"}})
    core.patch_namespaced_config_map("w1", NS, {"data": {"a": "1"}})
    core.delete_namespaced_config_map("w1", NS)
    w = watch.Watch()
    events = []
    for ev in w.stream(core.list_namespaced_config_map, NS, resource_version=start, timeout_seconds=2):
        events.append((ev["type"], ev["object"].metadata.name))
        if len(events) == 3:
            w.stop()
    assert events == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]
    # Live events reach an open watch; starting it at a known version makes connect timing irrelevant.
    got: list[str] = []
    now_rv = core.list_namespaced_config_map(NS).metadata.resource_version

    def watcher() -> None:
        w2 = watch.Watch()
        stream = w2.stream(
            core.list_namespaced_config_map,
            NS,
            label_selector="live=1",
            resource_version=now_rv,
            timeout_seconds=10,
        )
        for ev in stream:
            got.append(ev["type"])
            if ev["type"] == "ADDED" and ev["object"].metadata.name == "live":
                w2.stop()

    t = threading.Thread(target=watcher)
    t.start()
    core.create_namespaced_config_map(NS, {"metadata": {"name": "live", "labels": {"live": "1"}}})
    t.join(10)
    assert not t.is_alive()
    assert got[-1] == "ADDED"
    # Push more than the window (50 events, trimmed at 100) so the start version expires.
    for i in range(110):
        core.create_namespaced_config_map(NS, {"metadata": {"name": f"flood-{i}"}})
    with pytest.raises(ApiException) as err:
        for _ in watch.Watch().stream(
            core.list_namespaced_config_map, NS, resource_version=start, timeout_seconds=2
        ):
            pass
    assert err.value.status == 410


def test_crd_then_custom_resources(api: Any) -> None:
    ext = client.ApiextensionsV1Api(api)
    ext.create_custom_resource_definition({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.io"},
        "spec": {"group": "example.io", "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                               "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                   "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                                   "status": {"type": "object", "properties": {"ok": {"type": "boolean"}}}}}}}]},
    })  # fmt: skip
    crd = ext.read_custom_resource_definition("widgets.example.io")
    assert {c.type for c in crd.status.conditions} >= {"Established"}
    co = client.CustomObjectsApi(api)
    body = {"apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}}
    created = co.create_namespaced_custom_object("example.io", "v1", NS, "widgets", body)
    assert created["metadata"]["uid"]
    assert created["metadata"]["generation"] == 1
    co.patch_namespaced_custom_object("example.io", "v1", NS, "widgets", "w", {"spec": {"size": 2}})
    st = co.patch_namespaced_custom_object_status(
        "example.io", "v1", NS, "widgets", "w", {"status": {"ok": True}}
    )
    assert st["status"] == {"ok": True}
    assert st["spec"] == {"size": 2}
    assert st["metadata"]["generation"] == 2
    listed = co.list_namespaced_custom_object("example.io", "v1", NS, "widgets")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["w"]
    co.delete_namespaced_custom_object("example.io", "v1", NS, "widgets", "w")
    with pytest.raises(ApiException) as err:
        co.get_namespaced_custom_object("example.io", "v1", NS, "widgets", "w")
    assert err.value.status == 404
    ext.delete_custom_resource_definition("widgets.example.io")
    with pytest.raises(ApiException) as err:
        co.list_namespaced_custom_object("example.io", "v1", NS, "widgets")
    assert err.value.status == 404


def test_kubeedge_crds_are_served(api: Any) -> None:
    co = client.CustomObjectsApi(api)
    co.create_namespaced_custom_object(
        "devices.kubeedge.io",
        "v1beta1",
        NS,
        "devicemodels",
        {
            "apiVersion": "devices.kubeedge.io/v1beta1",
            "kind": "DeviceModel",
            "metadata": {"name": "thermo"},
            "spec": {
                "protocol": "modbus",
                "properties": [{"name": "temp", "type": "INT", "accessMode": "ReadOnly"}],
            },
        },
    )
    co.create_cluster_custom_object("reliablesyncs.kubeedge.io", "v1alpha1", "clusterobjectsyncs", {
        "apiVersion": "reliablesyncs.kubeedge.io/v1alpha1", "kind": "ClusterObjectSync",
        "metadata": {"name": "edge-1.0000"}, "spec": {"objectKind": "Node", "objectName": "edge-1"}})  # fmt: skip
    got = co.get_cluster_custom_object(
        "reliablesyncs.kubeedge.io", "v1alpha1", "clusterobjectsyncs", "edge-1.0000"
    )
    assert got["spec"]["objectName"] == "edge-1"


def test_finalizers_and_namespace_deletion(api: Any) -> None:
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": "doomed"}})
    core.create_namespaced_config_map(
        "doomed", {"metadata": {"name": "held", "finalizers": ["example.io/hold"]}}
    )
    core.create_namespaced_config_map("doomed", {"metadata": {"name": "free"}})
    core.delete_namespace("doomed")
    ns = core.read_namespace("doomed")
    assert ns.status.phase == "Terminating"
    assert ns.metadata.deletion_timestamp is not None
    held = core.read_namespaced_config_map("held", "doomed")
    assert held.metadata.deletion_timestamp is not None
    with pytest.raises(ApiException) as err:
        core.read_namespaced_config_map("free", "doomed")
    assert err.value.status == 404
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("doomed", {"metadata": {"name": "late"}})
    assert err.value.status == 403
    core.patch_namespaced_config_map("held", "doomed", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as err:
        core.read_namespace("doomed")
    assert err.value.status == 404


def test_token_request_authenticates(api: Any, cluster: Cluster) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_service_account(NS, {"metadata": {"name": "robot"}})
    tr = core.create_namespaced_service_account_token("robot", NS, {"spec": {"expirationSeconds": 3600}})
    assert tr.status.token.count(".") == 2
    cfg = client.Configuration()
    cfg.host = cluster.running.url
    cfg.ssl_ca_cert = str(cluster.running.ca_cert)
    cfg.api_key = {"authorization": f"Bearer {tr.status.token}"}
    with client.ApiClient(cfg) as robot:
        assert client.CoreV1Api(robot).read_namespaced_service_account("robot", NS).metadata.name == "robot"
    cfg.api_key = {"authorization": "Bearer wrong"}
    with client.ApiClient(cfg) as stranger, pytest.raises(ApiException) as err:
        client.CoreV1Api(stranger).list_namespace()
    assert err.value.status == 401
