"""Fixtures for the cloud controllers: a real embedded API server, real cloudcore modules, scripted edges.

``cluster`` is a fresh embedded API server per test (its own data folder, a small watch window so 410 is easy
to reach); ``Cloud`` runs SyncController, EdgeController and the ``cloudhub`` stand-in in one Beehive.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from kubeedge.cloud import kubeapi
from kubeedge.cloud.edgecontroller.controller import EdgeController
from kubeedge.cloud.synccontroller.controller import SyncController, SyncStore
from kubeedge.kit.beehive import Beehive
from tests.apiserver.conftest import Cluster, start_cluster
from tests.cloud.edgesim import EdgePeer, HubStandIn

EDGE_LABELS = {"node-role.kubernetes.io/edge": "", "node-role.kubernetes.io/agent": ""}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A fresh API server for one test."""
    c = start_cluster(tmp_path, watch_window=100, bookmark_interval_s=0.5, scheduler=False)
    try:
        yield c
    finally:
        c.thread.stop()


def client_api(cluster: Cluster) -> kubeapi.KubeAPI:
    """A KubeAPI on the cluster's kubeconfig (test side)."""
    return kubeapi.KubeAPI.from_kubeconfig(str(cluster.kubeconfig), qps=1000, burst=1000)


@dataclass
class Cloud:
    """Running cloudcore modules plus the hub stand-in."""

    hive: Beehive
    edge: EdgeController
    sync: SyncController
    hub: HubStandIn
    api: kubeapi.KubeAPI


@contextlib.asynccontextmanager
async def run_cloud(cluster: Cluster, *, grace: float = 40.0, frequency: float = 10.0,
                    period: float = 0.3) -> AsyncIterator[Cloud]:  # fmt: skip
    """Start the modules (SyncController, EdgeController, cloudhub) and stop them on exit."""
    api = client_api(cluster)
    store = SyncStore(api)
    edge = EdgeController(api, store, node_update_frequency=frequency, node_grace=grace, cloudcore_id="test")
    sync = SyncController(store, edge, period=period)
    hub = HubStandIn()
    hive = Beehive([sync, edge, hub], shutdown_timeout=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(hive.run)
        try:
            yield Cloud(hive, edge, sync, hub, api)
        finally:
            hive.shutdown(hard=True)
            nursery.cancel_scope.cancel()
    api.close()


async def eventually(check: Callable[[], Any], *, timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``check`` (sync or async) until it returns a truthy value; fail after ``timeout`` seconds."""
    with trio.move_on_after(timeout):
        while True:
            result = check()
            if hasattr(result, "__await__"):
                result = await result
            if result:
                return result
            await trio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def node_object(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": dict(EDGE_LABELS)},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "EdgeReady"}]}}  # fmt: skip


def pod_object(name: str, node: str, *, ns: str = "default", configmaps: tuple[str, ...] = (),
               secrets: tuple[str, ...] = (), sa: str = "") -> dict[str, Any]:  # fmt: skip
    volumes = [{"name": f"cm-{c}", "configMap": {"name": c}} for c in configmaps]
    env = [
        {"name": f"S{i}", "valueFrom": {"secretKeyRef": {"name": s, "key": "k"}}}
        for i, s in enumerate(secrets)
    ]
    spec: dict[str, Any] = {"nodeName": node, "volumes": volumes,
                            "containers": [{"name": "c", "image": "busybox", "env": env}]}  # fmt: skip
    if sa:
        spec["serviceAccountName"] = sa
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns}, "spec": spec}


async def add_edge(cloud: Cloud, name: str, **kw: Any) -> EdgePeer:
    """Register node ``name`` in the API, connect a scripted edge for it and start its loop."""
    with contextlib.suppress(kubeapi.KubeError):
        await cloud.api.create(kubeapi.NODES, "", node_object(name))
    await eventually(lambda: cloud.edge.node_exists(name), what=f"edge node {name} in the cache")
    peer = EdgePeer(name, **kw)
    await cloud.hub.connect(peer)
    return peer
