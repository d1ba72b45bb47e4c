"""EdgeController and SyncController end to end: embedded API server, real modules, scripted edges."""

from __future__ import annotations

import json

import pytest
import trio
from kubernetes import client as k8s

from kubeedge.cloud import kubeapi
from kubeedge.proto.vocab import Operation
from tests.apiserver.conftest import Cluster
from tests.cloud.conftest import add_edge, eventually, pod_object, run_cloud


async def kube(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    """Call the typed kubernetes client in a worker thread."""
    return await trio.to_thread.run_sync(lambda: fn(*args, **kwargs))


async def test_pod_reaches_edge_and_ack_is_recorded(cluster: Cluster) -> None:
    core = k8s.CoreV1Api(cluster.api_client())
    with trio.fail_after(30):
        async with run_cloud(cluster) as cloud:
            edge = await add_edge(cloud, "edge-a")
            await kube(core.create_namespaced_pod, "default", pod_object("web", "edge-a"))
            key = "default/pod/web"
            await eventually(lambda: edge.has(key), what="pod at the edge")
            sent = edge.store[key]
            assert sent["kind"] == "Pod"
            assert sent["apiVersion"] == "v1"
            uid = sent["metadata"]["uid"]

            # The ack is persisted as ObjectSync <node>.<uid> with the acked resourceVersion.
            async def synced() -> bool:
                try:
                    obj = await cloud.api.get(kubeapi.OBJECTSYNCS, "default", f"edge-a.{uid}")
                except kubeapi.KubeError:
                    return False
                return obj["status"].get("objectResourceVersion") == sent["metadata"]["resourceVersion"]

            await eventually(synced, what="ObjectSync with the acked version")
            msgs = [m for m in cloud.hub.received if m.route.resource == "node/edge-a/default/pod/web"]
            assert msgs[0].route.operation == Operation.INSERT
            assert msgs[0].route.source == "edgecontroller"
            assert msgs[0].route.group == "resource"
            assert msgs[0].header.resource_version == sent["metadata"]["resourceVersion"]

            # A status-only change is not pushed; a spec/label change is, as update.
            before = len(edge.log)
            status = {"status": {"phase": "Running"}}
            await kube(core.patch_namespaced_pod_status, "web", "default", status)
            await kube(core.patch_namespaced_pod, "web", "default", {"metadata": {"labels": {"v": "2"}}})
            await eventually(
                lambda: edge.store[key]["metadata"].get("labels") == {"v": "2"}, what="label update"
            )
            ops = [op for op, res, _ in edge.log[before:] if res == key]
            assert ops == ["update"]

            # Deleting the pod deletes it at the edge; the delete ack removes the ObjectSync.
            await kube(core.delete_namespaced_pod, "web", "default")
            await eventually(lambda: not edge.has(key), what="pod deleted at the edge")

            async def sync_gone() -> bool:
                try:
                    await cloud.api.get(kubeapi.OBJECTSYNCS, "default", f"edge-a.{uid}")
                except kubeapi.KubeError as exc:
                    return exc.not_found
                return False

            await eventually(sync_gone, what="ObjectSync removed")
            assert edge.stale == []


async def test_configmap_reaches_exactly_the_nodes_using_it(cluster: Cluster) -> None:
    core = k8s.CoreV1Api(cluster.api_client())
    with trio.fail_after(30):
        async with run_cloud(cluster) as cloud:
            a, b, c = [await add_edge(cloud, n) for n in ("edge-a", "edge-b", "edge-c")]
            await kube(core.create_namespaced_config_map, "default",
                       {"metadata": {"name": "conf"}, "data": {"k": "1"}})  # fmt: skip
            await kube(
                core.create_namespaced_pod, "default", pod_object("p1", "edge-a", configmaps=("conf",))
            )
            await kube(
                core.create_namespaced_pod, "default", pod_object("p2", "edge-b", configmaps=("conf",))
            )
            await kube(core.create_namespaced_pod, "default", pod_object("p3", "edge-c"))
            key = "default/configmap/conf"
            await eventually(lambda: a.has(key) and b.has(key) and c.has("default/pod/p3"), what="fan-out")
            assert not c.has(key)
            await kube(core.patch_namespaced_config_map, "conf", "default", {"data": {"k": "2"}})
            await eventually(lambda: a.store[key]["data"] == {"k": "2"} and b.store[key]["data"] == {"k": "2"},
                             what="configmap update on both users")  # fmt: skip
            assert not c.has(key)
            assert not any(res == key for _, res, _ in c.log)
            # Once p2 is gone, edge-b no longer uses conf: later changes skip it.
            await kube(core.delete_namespaced_pod, "p2", "default")
            await eventually(lambda: not b.has("default/pod/p2"), what="p2 deleted")
            await kube(core.patch_namespaced_config_map, "conf", "default", {"data": {"k": "3"}})
            await eventually(lambda: a.store[key]["data"] == {"k": "3"}, what="update to edge-a")
            assert b.store.get(key, {}).get("data") != {"k": "3"}


async def test_node_may_only_touch_what_belongs_to_it(cluster: Cluster) -> None:
    core = k8s.CoreV1Api(cluster.api_client())
    with trio.fail_after(30):
        async with run_cloud(cluster) as cloud:
            a = await add_edge(cloud, "edge-a")
            b = await add_edge(cloud, "edge-b")
            await kube(
                core.create_namespaced_secret, "default", {"metadata": {"name": "s-a"}, "data": {"k": "eA=="}}
            )
            await kube(core.create_namespaced_pod, "default", pod_object("pa", "edge-a", secrets=("s-a",)))
            await eventually(lambda: a.has("default/secret/s-a"), what="secret at its node")
            # Secrets are sent as update (adds included).
            assert next(op for op, res, _ in a.log if res == "default/secret/s-a") == "update"

            mine = await a.request(Operation.QUERY, "default/secret/s-a", None)
            assert mine.route.operation == "response"
            assert mine.content["metadata"]["name"] == "s-a"

            theirs = await b.request(Operation.QUERY, "default/secret/s-a", None)
            assert theirs.route.operation == "error"
            assert "edge-b" in theirs.content
            other_pod = await b.request(Operation.PATCH, "default/podpatch/pa", json.dumps({"status": {}}))
            assert other_pod.route.operation == "error"
            other_node = await b.request(Operation.PATCH, "null/nodepatch/edge-a", json.dumps({"status": {}}))
            assert other_node.route.operation == "error"
            other_lease = await b.request(Operation.QUERY, "kube-node-lease/lease/edge-a", None)
            assert other_lease.route.operation == "error"
            assert not b.has("default/secret/s-a")

            missing = await a.request(Operation.QUERY, "default/configmap/nope", None)
            assert missing.route.operation == "error"  # not referenced by any pod of edge-a: refused

            await kube(core.create_namespaced_config_map, "default", {"metadata": {"name": "later"}})
            await kube(core.delete_namespaced_config_map, "later", "default")
            await kube(
                core.create_namespaced_pod, "default", pod_object("pb", "edge-a", configmaps=("later",))
            )
            await eventually(lambda: a.has("default/pod/pb"), what="pb at the edge")
            gone = await a.request(Operation.QUERY, "default/configmap/later", None)
            assert gone.route.operation == "response"
            assert gone.content["ErrStatus"]["reason"] == "NotFound"


async def test_upstream_status_register_lease_token_ca(cluster: Cluster) -> None:
    core = k8s.CoreV1Api(cluster.api_client())
    with trio.fail_after(30):
        async with run_cloud(cluster) as cloud:
            edge = await add_edge(cloud, "edge-r")
            # Registration of a new node: kubernetes.io labels survive via the merge patch, annotation added.
            reg = await edge.request(Operation.INSERT, "null/node/edge-r", {
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "edge-r", "labels": {"node-role.kubernetes.io/edge": "", "site": "x"}}})  # fmt: skip
            assert reg.content["Err"] is None
            node = await cloud.api.get(kubeapi.NODES, "", "edge-r")
            assert node["metadata"]["labels"]["node-role.kubernetes.io/edge"] == ""
            assert node["metadata"]["labels"]["site"] == "x"
            assert node["metadata"]["annotations"]["cloudcore"] == "test"

            patch = {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "EdgeReady",
                                                "lastHeartbeatTime": "2026-01-01T00:00:00Z"}]}}  # fmt: skip
            resp = await edge.request(Operation.PATCH, "null/nodepatch/edge-r", json.dumps(patch))
            assert resp.content["Err"] is None
            assert resp.content["Object"]["kind"] == "Node"
            legacy = await edge.request(Operation.UPDATE, "default/nodestatus/edge-r", {
                "UID": node["metadata"]["uid"], "Status": {"nodeInfo": {"kubeletVersion": "v1.29.5-kubeedge"}}})  # fmt: skip
            assert legacy.content == "OK"
            assert legacy.route.resource == "default/node/edge-r"
            node = await cloud.api.get(kubeapi.NODES, "", "edge-r")
            assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.29.5-kubeedge"

            await kube(core.create_namespaced_pod, "default", pod_object("app", "edge-r", sa="default"))
            await eventually(lambda: edge.has("default/pod/app"), what="pod at the edge")
            resp = await edge.request(
                Operation.PATCH,
                "default/podpatch/app",
                json.dumps({"status": {"phase": "Running", "podIP": "10.0.0.7"}}),
            )
            assert resp.content["Err"] is None
            pod = await kube(core.read_namespaced_pod, "app", "default")
            assert pod.status.phase == "Running"
            assert pod.status.pod_ip == "10.0.0.7"
            legacy_pod = await edge.request(Operation.UPDATE, "default/podstatus/app", {
                "UID": pod.metadata.uid, "Name": "app", "Status": {"phase": "Succeeded"}})  # fmt: skip
            assert legacy_pod.content == "OK"
            assert (await kube(core.read_namespaced_pod, "app", "default")).status.phase == "Succeeded"
            unknown = await edge.request(Operation.UPDATE, "default/podstatus/ghost", {
                "UID": "u-1", "Name": "ghost", "Status": {"phase": "Running"}})  # fmt: skip
            assert unknown.content == "OK"
            await eventually(lambda: any(op == "delete" and res == "default/pod/ghost" for op, res, _ in edge.log),
                             what="delete of the unknown pod")  # fmt: skip

            lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                     "metadata": {"name": "edge-r", "namespace": "kube-node-lease"},
                     "spec": {"holderIdentity": "edge-r", "leaseDurationSeconds": 40}}  # fmt: skip
            created = await edge.request(Operation.INSERT, "kube-node-lease/lease/edge-r", lease)
            assert created.content["Err"] is None
            queried = await edge.request(Operation.QUERY, "kube-node-lease/lease/edge-r", None)
            assert queried.content["Object"]["spec"]["holderIdentity"] == "edge-r"

            token = await edge.request(Operation.QUERY, "default/serviceaccounttoken/default",
                                       {"spec": {"audiences": ["api"], "expirationSeconds": 3600}})  # fmt: skip
            assert token.route.operation == "response"
            assert token.content.get("status", {}).get("token") or token.content.get("ErrStatus")
            denied = await edge.request(Operation.QUERY, "kube-system/serviceaccounttoken/admin", None)
            assert denied.route.operation == "error"

            ca = await edge.request(Operation.QUERY, "k8s/ca.crt", None)
            assert ca.content.startswith("-----BEGIN CERTIFICATE-----")

            event = {"metadata": {"name": "app.1"}, "involvedObject": {"kind": "Pod", "name": "app",
                     "namespace": "default"}, "reason": "Started", "message": "started", "type": "Normal"}  # fmt: skip
            ev = await edge.request(Operation.INSERT, "default/event/app.1", event)
            assert ev.content["Err"] is None
            bad_event = {**event, "involvedObject": {"kind": "Node", "name": "someone-else"}}
            assert (
                await edge.request(Operation.INSERT, "default/event/x", bad_event)
            ).route.operation == "error"

            # The edge confirms the pod is gone: the cloud deletes it.
            done = await edge.request(
                Operation.DELETE,
                "default/pod/app",
                {"gracePeriodSeconds": 0, "preconditions": {"uid": pod.metadata.uid}},
            )
            assert done.content == "OK"
            await eventually(
                lambda: cloud.edge.pods.get("default", "app") is None, what="pod deleted in the API"
            )


async def test_modules_built_from_cloudcore_yaml(cluster: Cluster) -> None:
    import dataclasses

    from kubeedge.cloud import controllers
    from kubeedge.kit import config

    cfg = config.default_cloudcore()
    cfg = dataclasses.replace(cfg, kube_api_config=dataclasses.replace(cfg.kube_api_config,
                                                                       kube_config=str(cluster.kubeconfig)))  # fmt: skip
    built = controllers.build(cfg, cloudcore_id="from-config")
    try:
        assert [m.name for m in built.modules] == ["synccontroller", "edgecontroller"]
        nodes, _ = await built.api.list_objects(kubeapi.NODES)
        assert nodes == []
    finally:
        built.api.close()
    off = dataclasses.replace(cfg, kube_api_config=dataclasses.replace(cfg.kube_api_config, kube_config=""),
                              embedded_api_server=dataclasses.replace(cfg.embedded_api_server, enable=False))  # fmt: skip
    with pytest.raises(ValueError, match=r"kubeAPIConfig\.kubeConfig"):
        controllers.kubeconfig_path(off)


async def test_bad_requests_get_errors_and_hurt_nobody(cluster: Cluster) -> None:
    from kubeedge.proto.message import Message

    with trio.fail_after(30):
        async with run_cloud(cluster) as cloud:
            edge = await add_edge(cloud, "edge-a")
            other = await add_edge(cloud, "edge-b")
            bad = await edge.request(Operation.PATCH, "null/nodepatch/edge-a", 123)
            assert bad.route.operation == "error"
            assert "patch string" in bad.content
            not_json = await edge.request(Operation.PATCH, "null/nodepatch/edge-a", "{not json")
            assert not_json.route.operation == "error"
            unknown = await edge.request("frobnicate", "null/node/edge-a", None)
            assert unknown.route.operation == "error"
            # Two requests with the same id: both served, the module keeps running.
            twin = Message.new(source="edged", group="meta", operation=Operation.QUERY, msg_id="same-id",
                               resource="kube-node-lease/lease/edge-a", content=None, now_ms=0)  # fmt: skip
            await edge.send(twin)
            await edge.send(twin)
            await eventually(lambda: "same-id" in edge.replies, what="reply to a repeated id")
            ok = await other.request(Operation.QUERY, "null/node/edge-b", None)
            assert ok.content["Object"]["metadata"]["name"] == "edge-b"
            assert cloud.hive.restarts("edgecontroller") == 0
