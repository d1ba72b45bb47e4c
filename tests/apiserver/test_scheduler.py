"""Scheduler: the pure fit function, and the embedded scheduler binding pods through a real server."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from kubeedge.apiserver import scheduler
from tests.apiserver.conftest import Cluster


def _node(name: str, *, ready: bool = True, labels: dict[str, str] | None = None, taints: list[Any] | None = None,
          cpu: str = "2", memory: str = "1Gi") -> dict[str, Any]:  # fmt: skip
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"taints": taints or []},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                   "allocatable": {"cpu": cpu, "memory": memory, "pods": "10"}},
    }  # fmt: skip


def _pod(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "d"}, "spec": {"containers": [{"name": "c"}], **spec}}


def test_quantities() -> None:
    assert scheduler.quantity("100m") == pytest.approx(0.1)
    assert scheduler.quantity("1.5") == 1.5
    assert scheduler.quantity("128Mi") == 128 * 1024**2
    assert scheduler.quantity("1G") == 1e9
    with pytest.raises(ValueError, match="quantity"):
        scheduler.quantity("lots")


def test_fit_rules() -> None:
    nodes = [
        _node("a", labels={"zone": "x"}),
        _node("b", ready=False),
        _node("c", taints=[{"key": "t", "effect": "NoSchedule"}]),
    ]
    assert scheduler.fit(_pod(), nodes, {})[0] == "a"
    assert scheduler.fit(_pod(nodeSelector={"zone": "y"}), nodes, {})[0] is None
    tolerating = _pod(tolerations=[{"key": "t", "operator": "Exists"}], nodeSelector={})
    assert scheduler.fit(tolerating, nodes[2:], {})[0] == "c"
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["x"]}]},
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["c"]}]}]}}}  # fmt: skip
    assert scheduler.fit(_pod(affinity=affinity, tolerations=[{"operator": "Exists"}]), nodes, {})[0] == "c"
    big = _pod(containers=[{"name": "c", "resources": {"requests": {"cpu": "1500m", "memory": "100Mi"}}}])
    used = {"a": (scheduler.Request(cpu=1.0), 1)}
    node, message = scheduler.fit(big, nodes, used)
    assert node is None
    assert message.startswith("0/3 nodes are available:")
    assert "1 Insufficient cpu" in message
    assert "1 node(s) were not ready" in message
    assert "untolerated taint {t}" in message


def test_embedded_scheduler_binds_and_reports(cluster: Cluster) -> None:
    core = client.CoreV1Api(cluster.api_client())
    core.create_node(_node("cloud-sched", labels={"role": "cloud"}))
    core.create_namespaced_pod("default", {"metadata": {"name": "waiting"},
                                           "spec": {"containers": [{"name": "c", "image": "x:1"}],
                                                    "nodeSelector": {"role": "edge"}}})  # fmt: skip
    deadline = time.monotonic() + 10
    while True:
        pod = core.read_namespaced_pod("waiting", "default")
        conds = {c.type: c for c in pod.status.conditions or []}
        if "PodScheduled" in conds or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert conds["PodScheduled"].status == "False"
    assert conds["PodScheduled"].reason == "Unschedulable"
    assert pod.status.phase == "Pending"
    events = core.list_namespaced_event(
        "default", field_selector="involvedObject.name=waiting,reason=FailedScheduling"
    )
    assert (
        events.items[0].message
        == "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
    )
    core.create_node(_node("edge-sched", labels={"role": "edge"}))
    deadline = time.monotonic() + 10
    while (
        core.read_namespaced_pod("waiting", "default").spec.node_name is None and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    pod = core.read_namespaced_pod("waiting", "default")
    assert pod.spec.node_name == "edge-sched"
    assert {c.type: c.status for c in pod.status.conditions}["PodScheduled"] == "True"
    scheduled = core.list_namespaced_event(
        "default", field_selector="involvedObject.name=waiting,reason=Scheduled"
    )
    assert scheduled.items[0].message == "Successfully assigned default/waiting to edge-sched"
