"""Pods end to end on real processes: cloudcore, edgecore and dockerd, driven with the kubernetes client.

The tests share one cloudcore + edgecore pair (see ``conftest.py``) and run in file order: the pod
lifecycle (configmap volume, env from a secret, probes, restart after a kill, deletion), bad pod specs that
get a clear reason without harming a good pod, and last, offline autonomy (cloudcore stopped, edgecore
restarted, cloudcore back), which restarts the processes.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import EdgeCluster, containers_of, docker, wait_until

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
