"""The real kubectl against the embedded server with the kubeconfig it wrote, no extra flags."""

from __future__ import annotations

import os
import re
import subprocess
import threading
from pathlib import Path

import pytest

from tests.apiserver.conftest import KUBECTL, Cluster

MANIFEST = """\
apiVersion: v1
kind: Namespace
metadata:
  name: kctl
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: kctl
data:
  mode: "{mode}"
---
apiVersion: v1
kind: Node
metadata:
  name: edge-a
  labels:
    node-role.kubernetes.io/edge: ""
status:
  conditions:
  - type: Ready
    status: "True"
  addresses:
  - type: InternalIP
    address: 192.0.2.10
  nodeInfo:
    kubeletVersion: v1.31.0-kubeedge
    osImage: Debian GNU/Linux 12
    kernelVersion: 6.1.0
    containerRuntimeVersion: containerd://1.7.0
  allocatable:
    cpu: "2"
    memory: 2Gi
    pods: "110"
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: kctl
  labels:
    app: web
spec:
  nodeName: edge-gone
  containers:
  - name: nginx
    image: nginx:{tag}
    ports:
    - containerPort: 80
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata:
  name: thermometer
  namespace: kctl
spec:
  nodeName: edge-a
  deviceModelRef:
    name: thermo-model
"""


@pytest.fixture(scope="module")
def applied(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("manifests") / "app.yaml"
    path.write_text(MANIFEST.format(mode="one", tag="1.25"))
    out = cluster.kubectl("apply", "-f", str(path))
    assert "namespace/kctl created" in out
    assert "pod/web created" in out
    assert "device.devices.kubeedge.io/thermometer created" in out
    return path


def test_apply_change_and_reapply(cluster: Cluster, applied: Path) -> None:
    applied.write_text(MANIFEST.format(mode="two", tag="1.26"))
    out = cluster.kubectl("apply", "-f", str(applied))
    assert "configmap/settings configured" in out
    assert "pod/web configured" in out
    assert "node/edge-a unchanged" in out
    assert cluster.kubectl("get", "cm", "settings", "-n", "kctl", "-o", "jsonpath={.data.mode}") == "two"
    image = cluster.kubectl("get", "pod", "web", "-n", "kctl", "-o", "jsonpath={.spec.containers[0].image}")
    assert image == "nginx:1.26"
    again = cluster.kubectl("apply", "-f", str(applied))
    assert all(line.endswith("unchanged") for line in again.strip().splitlines()), again


def test_get_wide(cluster: Cluster, applied: Path) -> None:
    pods = cluster.kubectl("get", "pods", "-n", "kctl", "-o", "wide").splitlines()
    assert pods[0].split()[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert "NODE" in pods[0]
    assert pods[1].split()[:3] == ["web", "0/1", "Pending"]
    assert "edge-gone" in pods[1]
    nodes = cluster.kubectl("get", "nodes", "-o", "wide").splitlines()
    assert "INTERNAL-IP" in nodes[0]
    assert "CONTAINER-RUNTIME" in nodes[0]
    row = next(line for line in nodes if line.startswith("edge-a"))
    assert row.split()[1:3] == ["Ready", "edge"]
    assert "192.0.2.10" in row
    assert "containerd://1.7.0" in row


def test_describe_node_and_pod(cluster: Cluster, applied: Path) -> None:
    node = cluster.kubectl("describe", "node", "edge-a")
    for pattern in (r"Name:\s+edge-a\n", r"InternalIP:\s+192\.0\.2\.10", r"Kubelet Version:\s+v1\.31\.0-kubeedge",
                    r"Ready\s+True", r"Roles:\s+edge"):  # fmt: skip
        assert re.search(pattern, node), (pattern, node)
    pod = cluster.kubectl("describe", "pod", "web", "-n", "kctl")
    for pattern in (r"Name:\s+web\n", r"Image:\s+nginx:1\.2[67]", r"Node:\s+edge-gone", r"Status:\s+Pending"):
        assert re.search(pattern, pod), (pattern, pod)


def test_label_and_patch_kinds(cluster: Cluster, applied: Path) -> None:
    assert "pod/web labeled" in cluster.kubectl("label", "pod", "web", "-n", "kctl", "tier=front")
    cluster.kubectl(
        "patch", "pod", "web", "-n", "kctl", "--type=merge", "-p", '{"metadata":{"labels":{"m":"1"}}}'
    )
    cluster.kubectl(
        "patch",
        "pod",
        "web",
        "-n",
        "kctl",
        "--type=json",
        "-p",
        '[{"op":"add","path":"/metadata/labels/j","value":"2"}]',
    )
    cluster.kubectl(
        "patch", "pod", "web", "-n", "kctl", "--type=strategic",
        "-p", '{"spec":{"containers":[{"name":"nginx","image":"nginx:1.27"}]}}',
    )  # fmt: skip
    labels = cluster.kubectl("get", "pod", "web", "-n", "kctl", "--show-labels").splitlines()[1]
    assert "app=web,j=2,m=1,tier=front" in labels
    assert cluster.kubectl(
        "get", "pod", "web", "-n", "kctl", "-o", "jsonpath={.spec.containers[0].image}"
    ) == ("nginx:1.27")
    assert "pod/web unlabeled" in cluster.kubectl("label", "pod", "web", "-n", "kctl", "tier-")


def test_get_devices_and_api_resources(cluster: Cluster, applied: Path) -> None:
    devices = cluster.kubectl("get", "devices.devices.kubeedge.io", "-n", "kctl").splitlines()
    assert devices[0].split() == ["NAME", "NODE", "MODEL", "AGE"]
    assert devices[1].split()[:3] == ["thermometer", "edge-a", "thermo-model"]
    resources = cluster.kubectl("api-resources")
    for expected in ("pods", "nodes", "leases", "customresourcedefinitions", "devices", "devicemodels", "objectsyncs",
                     "clusterobjectsyncs"):  # fmt: skip
        assert f"\n{expected} " in resources


def test_get_watch_streams_changes(cluster: Cluster, applied: Path) -> None:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "HOME": str(cluster.home)}
    proc = subprocess.Popen(
        [KUBECTL, "get", "configmaps", "-n", "kctl", "-w", "--output-watch-events"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    lines: list[str] = []
    seen_initial = threading.Event()
    seen_change = threading.Event()

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "settings" in line:
                seen_initial.set()
            if "streamed" in line and "ADDED" in line:
                seen_change.set()
                return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        assert seen_initial.wait(30), lines
        cluster.kubectl(
            "apply",
            "-f",
            "-",
            input="apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: streamed\n  namespace: kctl\n",
        )
        assert seen_change.wait(30), lines
    finally:
        proc.kill()
        proc.wait(10)
        assert proc.stdout is not None
        assert proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()
    assert any(line.split()[:2] == ["ADDED", "streamed"] for line in lines)


def test_delete(cluster: Cluster, applied: Path) -> None:
    out = cluster.kubectl("delete", "pod", "web", "-n", "kctl")
    assert 'pod "web" deleted' in out
    missing = cluster.kubectl("get", "pod", "web", "-n", "kctl", check=False)
    assert 'pods "web" not found' in missing
    out = cluster.kubectl("delete", "namespace", "kctl")
    assert 'namespace "kctl" deleted' in out
    assert "No resources found" in cluster.kubectl("get", "cm", "-n", "kctl", check=False)


def test_apply_rejects_unknown_fields_and_bad_names(cluster: Cluster, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\n  namespace: default\nbogus: 1\n")
    out = cluster.kubectl("apply", "-f", str(bad), check=False)
    assert 'unknown field "bogus"' in out
    bad.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Not_Valid\n  namespace: default\n")
    out = cluster.kubectl("apply", "-f", str(bad), check=False)
    assert "RFC 1123 subdomain" in out
    assert "metadata.name" in out
