"""Pods end to end on real processes: cloudcore, edgecore and dockerd, driven with the kubernetes client.

The tests share one cloudcore + edgecore pair (see ``conftest.py``) and run in file order: the pod
lifecycle (configmap volume, env from a secret, probes, restart after a kill, deletion), bad pod specs that
get a clear reason without harming a good pod.
"""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
from typing import Any

import pytest

from kubeedge.edge.edged import nodestatus
from tests.e2e.conftest import LEASE_SECONDS, EdgeCluster, containers_of, docker, wait_until

IMAGE = "kubeedge-py/busybox:latest"
pytestmark = [pytest.mark.slow, pytest.mark.docker]


def running_ready(pod: Any) -> bool:
    if pod is None or pod.status is None or pod.status.phase != "Running":
        return False
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def app_pod(name: str, configmap: str, secret: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", "touch /tmp/alive; exec httpd -f -p 8080 -h /www"],
                    "env": [
                        {
                            "name": "GREETING",
                            "valueFrom": {"secretKeyRef": {"name": secret, "key": "greeting"}},
                        }
                    ],
                    "envFrom": [{"secretRef": {"name": secret}, "prefix": "S_"}],
                    "readinessProbe": {"httpGet": {"path": "/index.html", "port": 8080}, "periodSeconds": 1},
                    "livenessProbe": {"exec": {"command": ["cat", "/tmp/alive"]}, "periodSeconds": 1},
                    "volumeMounts": [{"name": "page", "mountPath": "/www"}],
                }
            ],
            "volumes": [{"name": "page", "configMap": {"name": configmap}}],
        },
    }


def exec_in(cid: str, *cmd: str) -> str:
    result = docker("exec", cid, *cmd, check=False)
    return result.stdout if result.returncode == 0 else ""


def test_pod_lifecycle_configmap_secret_probes_restart_delete(edge_cluster: EdgeCluster) -> None:
    c = edge_cluster
    core = c.core()
    core.create_namespaced_config_map(
        "default", {"metadata": {"name": "web-page"}, "data": {"index.html": "version one\n"}}
    )
    core.create_namespaced_secret(
        "default", {"metadata": {"name": "web-secret"}, "stringData": {"greeting": "hello-from-secret"}}
    )
    pod = c.create(app_pod("web", "web-page", "web-secret"))
    uid = pod.metadata.uid
    logs = (c.edge_log, c.cloud_log)

    wait_until("pod web Running and Ready in the API", lambda: running_ready(c.pod("web")), 60, *logs)
    app = containers_of(uid)["app"]
    assert exec_in(app, "cat", "/www/index.html") == "version one\n"
    env = exec_in(app, "env").splitlines()
    assert "GREETING=hello-from-secret" in env, (env, c.pod("web").spec.containers[0])
    assert "S_greeting=hello-from-secret" in env, (env, c.pod("web").spec.containers[0])

    # A configmap change reaches the mounted file inside the running container.
    page = core.read_namespaced_config_map("web-page", "default")
    page.data = {"index.html": "version two\n"}
    core.replace_namespaced_config_map("web-page", "default", page)
    wait_until(
        "the new configmap content inside the container",
        lambda: exec_in(app, "cat", "/www/index.html") == "version two\n",
        30,
        *logs,
    )

    # Killing the app container: edged restarts it and the API shows the restart.
    docker("kill", app)

    def restarted() -> bool:
        p = c.pod("web")
        statuses = (p.status.container_statuses or []) if p is not None and p.status else []
        return running_ready(p) and any(s.name == "app" and s.restart_count >= 1 for s in statuses)

    wait_until("restartCount >= 1 and Ready again after docker kill", restarted, 60, *logs)
    new_app = containers_of(uid)["app"]
    assert new_app != app

    # Deleting the pod: its containers go, and so does the pod object.
    core.delete_namespaced_pod("web", "default")
    wait_until("pod web's containers gone", lambda: not containers_of(uid, running_only=False), 60, *logs)
    wait_until("pod web gone from the API", lambda: c.pod("web") is None, 30, *logs)


def sleeper(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", "touch /tmp/ready; exec sleep 3600"],
                    "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1},
                }
            ]
        },
    }


def waiting_reason(pod: Any) -> str:
    """The first container's waiting reason and message, or ''."""
    if pod is None or pod.status is None:
        return ""
    for status in pod.status.container_statuses or []:
        if status.state is not None and status.state.waiting is not None:
            return f"{status.state.waiting.reason}: {status.state.waiting.message}"
    return ""


def test_bad_pod_specs_get_a_clear_reason_and_harm_no_other_pod(edge_cluster: EdgeCluster) -> None:
    c = edge_cluster
    logs = (c.edge_log, c.cloud_log)
    good = c.create(sleeper("good"))
    wait_until("pod good Running and Ready", lambda: running_ready(c.pod("good")), 60, *logs)
    good_container = containers_of(good.metadata.uid)["main"]

    never = sleeper("never-pull")
    never["spec"]["containers"][0].update(image="kubeedge-py/does-not-exist:1.0", imagePullPolicy="Never")
    c.create(never)
    reason = wait_until(
        "ErrImageNeverPull on pod never-pull",
        lambda: (r := waiting_reason(c.pod("never-pull"))).startswith("ErrImageNeverPull") and r,
        60,
        *logs,
    )
    assert "kubeedge-py/does-not-exist:1.0" in reason
    assert c.pod("never-pull").status.phase == "Pending"

    # The good pod is untouched: same container, still ready, never restarted.
    good_now = c.pod("good")
    assert running_ready(good_now)
    assert [s.restart_count for s in good_now.status.container_statuses] == [0]
    assert containers_of(good.metadata.uid)["main"] == good_container

    c.core().delete_namespaced_pod("never-pull", "default")
    wait_until("pod never-pull gone from the API", lambda: c.pod("never-pull") is None, 30, *logs)


def test_node_lease_is_renewed_and_node_has_its_address(edge_cluster: EdgeCluster) -> None:
    from kubernetes import client, config

    c = edge_cluster
    logs = (c.edge_log, c.cloud_log)
    coordination = client.CoordinationV1Api(config.new_client_from_config(str(c.kubeconfig)))

    def lease() -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return coordination.read_namespaced_lease(c.node, "kube-node-lease")
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    first = wait_until("the node Lease", lease, 30, *logs)
    assert first.spec.holder_identity == c.node
    assert first.spec.lease_duration_seconds == LEASE_SECONDS
    node_uid = c.core().read_node(c.node).metadata.uid
    [owner] = wait_until(
        "the Lease owned by its Node", lambda: lease().metadata.owner_references, 3 * LEASE_SECONDS, *logs
    )
    assert (owner.api_version, owner.kind, owner.name, owner.uid) == ("v1", "Node", c.node, node_uid)
    renewed = wait_until(
        "a renewal of the node Lease",
        lambda: (now := lease()) is not None and now.spec.renew_time > first.spec.renew_time and now,
        3 * LEASE_SECONDS,
        *logs,
    )
    assert renewed.spec.renew_time - first.spec.renew_time < datetime.timedelta(seconds=LEASE_SECONDS)
    age = datetime.datetime.now(datetime.UTC) - renewed.spec.renew_time
    assert datetime.timedelta(seconds=-5) < age < datetime.timedelta(seconds=LEASE_SECONDS)
    kubectl = subprocess.run(
        ["kubectl", "--kubeconfig", str(c.kubeconfig), "get", "lease", "-n", "kube-node-lease", c.node,
         "-o", "jsonpath={.spec.holderIdentity}"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert kubectl.stdout == c.node

    # Node addresses: with edged.nodeIP unset, the InternalIP is the default-route interface's address.
    node = c.core().read_node(c.node)
    internal = [a.address for a in node.status.addresses if a.type == "InternalIP"]
    assert internal == [nodestatus.host_ip()]
    assert internal[0]
    assert not ipaddress.ip_address(internal[0]).is_loopback
    wide = subprocess.run(
        ["kubectl", "--kubeconfig", str(c.kubeconfig), "get", "node", c.node, "-o", "wide", "--no-headers"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert internal[0] in wide.stdout.split()
