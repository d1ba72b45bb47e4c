"""Recovery paths: watch expiry (410), reconnects, orphan and stale ObjectSyncs, node liveness."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import trio

from kubeedge.cloud import kubeapi
from kubeedge.cloud.edgecontroller import lifecycle
from kubeedge.cloud.synccontroller import controller as syncmod
from kubeedge.cloud.synccontroller.index import SyncRecord, sync_object
from kubeedge.proto.vocab import Operation
from tests.apiserver.conftest import Cluster
from tests.cloud.conftest import add_edge, client_api, eventually, pod_object, run_cloud


async def test_reflector_relists_on_410_without_missing_or_repeating(cluster: Cluster) -> None:
    api = client_api(cluster)
    seen: list[tuple[str, str, int]] = []

    async def handler(type_: kubeapi.EventType, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        seen.append((type_.value, obj["metadata"]["name"], kubeapi.rv_of(obj)))

    with trio.fail_after(40):
        for i in range(5):
            await api.create(
                kubeapi.CONFIGMAPS, "default", {"metadata": {"name": f"keep-{i}"}, "data": {"v": "0"}}
            )
        reflector = kubeapi.Reflector(api, kubeapi.CONFIGMAPS)
        async with trio.open_nursery() as nursery:
            await nursery.start(reflector.run, handler)
            await api.patch(kubeapi.CONFIGMAPS, "default", "keep-0", {"data": {"v": "1"}},
                            content_type=kubeapi.MERGE_PATCH)  # fmt: skip
            await eventually(lambda: any(t == "MODIFIED" and n == "keep-0" for t, n, _ in seen),
                             what="live watch event")  # fmt: skip
            nursery.cancel_scope.cancel()
        assert reflector.relists == 1
        stopped_at = reflector.resource_version
        seen.clear()
        # While nobody watches, more changes than twice the server's watch window (100) happen.
        for i in range(210):
            await api.create(kubeapi.SECRETS, "default", {"metadata": {"name": f"noise-{i}"}})
        await api.patch(
            kubeapi.CONFIGMAPS, "default", "keep-1", {"data": {"v": "2"}}, content_type=kubeapi.MERGE_PATCH
        )
        await api.delete(kubeapi.CONFIGMAPS, "default", "keep-2")
        await api.create(kubeapi.CONFIGMAPS, "default", {"metadata": {"name": "new-0"}})
        async with trio.open_nursery() as nursery:
            await nursery.start(reflector.run, handler)
            await eventually(lambda: reflector.relists == 2, what="relist after 410")
            await eventually(lambda: len(seen) >= 3, what="relist events")
            # Changes after the relist still arrive once.
            await api.patch(kubeapi.CONFIGMAPS, "default", "keep-3", {"data": {"v": "3"}},
                            content_type=kubeapi.MERGE_PATCH)  # fmt: skip
            await eventually(lambda: any(n == "keep-3" for _, n, _ in seen), what="event after relist")
            nursery.cancel_scope.cancel()
    assert reflector.resource_version != stopped_at
    names = sorted((t, n) for t, n, _ in seen)
    assert names == [
        ("ADDED", "new-0"),
        ("DELETED", "keep-2"),
        ("MODIFIED", "keep-1"),
        ("MODIFIED", "keep-3"),
    ]
    assert sorted(reflector.cache) == ["default/keep-0", "default/keep-1", "default/keep-3", "default/keep-4",
                                       "default/new-0"]  # fmt: skip
    api.close()


async def test_reconnect_delivers_what_changed_while_away(cluster: Cluster) -> None:
    with trio.fail_after(40):
        async with run_cloud(cluster) as cloud:
            api = cloud.api
            edge = await add_edge(cloud, "edge-a")
            await api.create(
                kubeapi.CONFIGMAPS, "default", {"metadata": {"name": "conf"}, "data": {"v": "1"}}
            )
            await api.create(kubeapi.PODS, "default", pod_object("old", "edge-a", configmaps=("conf",)))
            await api.create(kubeapi.PODS, "default", pod_object("keep", "edge-a"))
            await eventually(lambda: edge.has("default/pod/old") and edge.has("default/configmap/conf")
                             and edge.has("default/pod/keep"), what="initial delivery")  # fmt: skip
            uid = edge.store["default/pod/old"]["metadata"]["uid"]
            await eventually(
                lambda: (cloud.sync.store.index.acked("edge-a", uid) or 0) > 0, what="ack recorded"
            )

            await cloud.hub.disconnect("edge-a")
            await api.create(kubeapi.PODS, "default", pod_object("new", "edge-a", configmaps=("conf",)))
            await api.delete(kubeapi.PODS, "default", "old", {"gracePeriodSeconds": 0})
            await api.patch(kubeapi.CONFIGMAPS, "default", "conf", {"data": {"v": "2"}},
                            content_type=kubeapi.MERGE_PATCH)  # fmt: skip
            await eventually(lambda: cloud.edge.pods.get("default", "new") is not None, what="pod in cache")
            await trio.sleep(0)
            assert not edge.has("default/pod/new")

            before = len(edge.log)
            await cloud.hub.connect(edge)
            await eventually(lambda: edge.has("default/pod/new"), what="pod created while away")
            await eventually(lambda: not edge.has("default/pod/old"), what="pod deleted while away")
            await eventually(
                lambda: edge.store["default/configmap/conf"]["data"] == {"v": "2"}, what="cm update"
            )
            # What the edge already held at the acked version is not sent again.
            assert not any(res == "default/pod/keep" for _, res, _ in edge.log[before:])
            assert edge.stale == []


async def test_orphan_and_dead_node_syncs_are_cleaned_up(cluster: Cluster) -> None:
    with trio.fail_after(40):
        async with run_cloud(cluster, period=0.1) as cloud:
            api = cloud.api
            edge = await add_edge(cloud, "edge-a", auto_ack=False)
            # A record for a pod that no longer exists; the edge never acknowledges deletes.
            orphan = SyncRecord("edge-a", "0000-gone", "default", "v1", "Pod", "vanished", 7)
            await api.create(kubeapi.OBJECTSYNCS, "default", sync_object(orphan))
            # A record of a node that is not an edge node any more.
            dead = SyncRecord("edge-dead", "1111-x", "default", "v1", "Pod", "whatever", 3)
            await api.create(kubeapi.OBJECTSYNCS, "default", sync_object(dead))

            async def absent(name: str) -> bool:
                try:
                    await api.get(kubeapi.OBJECTSYNCS, "default", name)
                except kubeapi.KubeError as exc:
                    return exc.not_found
                return False

            await eventually(lambda: absent(dead.sync_name), what="dead node's sync dropped")
            await eventually(lambda: absent(orphan.sync_name), timeout=15, what="orphan removed")
            deletes = [res for op, res, _ in edge.log if op == "delete" and res == "default/pod/vanished"]
            assert 1 <= len(deletes) <= syncmod.ORPHAN_ATTEMPTS + 1
            assert cloud.sync.orphans_removed == 1
            assert cloud.sync.store.index.get("edge-a", "0000-gone") is None


async def test_node_goes_unknown_when_away_and_ready_after_reconnect(cluster: Cluster) -> None:
    with trio.fail_after(40):
        async with run_cloud(cluster, grace=1.0, frequency=0.3) as cloud:
            api = cloud.api
            edge = await add_edge(cloud, "edge-l")
            await api.create(kubeapi.PODS, "default", pod_object("app", "edge-l"))
            await eventually(lambda: edge.has("default/pod/app"), what="pod at the edge")
            ready = {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "EdgeReady",
                                                "lastHeartbeatTime": lifecycle.rfc3339(dt.datetime.now(dt.UTC))}]}}  # fmt: skip
            assert (await edge.request(Operation.PATCH, "null/nodepatch/edge-l", json.dumps(ready))).content[
                "Err"
            ] is None

            async def ready_status() -> str:
                node = await api.get(kubeapi.NODES, "", "edge-l")
                for cond in node["status"].get("conditions") or []:
                    if cond["type"] == "Ready":
                        return f"{cond['status']}/{cond.get('reason')}"
                return ""

            # Live and connected: Ready stays True while heartbeats arrive.
            for _ in range(3):
                await edge.request(Operation.PATCH, "null/nodepatch/edge-l", json.dumps(ready))
                await trio.sleep(0.3)
            assert await ready_status() == "True/EdgeReady"

            await cloud.hub.disconnect("edge-l")
            await eventually(lambda: _is(ready_status, f"Unknown/{lifecycle.UNKNOWN_REASON}"), what="Unknown")
            node = await api.get(kubeapi.NODES, "", "edge-l")
            cond = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
            assert cond["message"] == lifecycle.UNKNOWN_MESSAGE
            assert not (node.get("spec") or {}).get("taints")
            pod = await api.get(kubeapi.PODS, "default", "app")
            assert not pod["metadata"].get("deletionTimestamp")

            await cloud.hub.connect(edge)
            await edge.request(Operation.PATCH, "null/nodepatch/edge-l", json.dumps(ready))
            assert await ready_status() == "True/EdgeReady"
            # Connected but silent past the grace period: Unknown again.
            await eventually(lambda: _is(ready_status, f"Unknown/{lifecycle.UNKNOWN_REASON}"), what="silent")
            assert (await api.get(kubeapi.PODS, "default", "app"))["metadata"].get(
                "deletionTimestamp"
            ) is None


async def _is(get: Any, want: str) -> bool:
    return bool(await get() == want)
