"""A simulated host reboot with no cloud: every pod comes back from edgecore's local store.

Real processes throughout: cloudcore, ``keadm join``, edgecore, and a private dockerd (its own bridge and
folders, see :mod:`tests.e2e.privatedocker`) that edgecore reaches through
``tailoredKubeletConfig.containerRuntimeEndpoint``. Once the pods run, cloudcore stops; then the power cut:
edgecore, every container, containerd and dockerd get SIGKILL and the engine's ``/run`` folder is wiped.
The engine boots again and edgecore starts with the cloud still away: it restarts every pod (a configmap
volume included) from its SQLite store. Then cloudcore returns and the pods' new status reaches the API.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from kubeedge.kit import images
from tests.e2e.conftest import EdgeCluster, containers_of, wait_until
from tests.e2e.privatedocker import PrivateDockerd
from tests.e2e.test_pods import IMAGE, running_ready, sleeper

pytestmark = [pytest.mark.slow, pytest.mark.docker]


def configmap_pod(name: str, configmap: str) -> dict[str, Any]:
    """A pod that is ready only once its configmap volume holds the expected file."""
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
                    "command": ["sh", "-c", "exec sleep 3600"],
                    "readinessProbe": {
                        "exec": {"command": ["grep", "-q", "hello", "/cfg/greeting"]},
                        "periodSeconds": 1,
                    },
                    "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}],
                }
            ],
            "volumes": [{"name": "cfg", "configMap": {"name": configmap}}],
        },
    }


@pytest.fixture
def private_dockerd(docker_client: Any) -> Iterator[PrivateDockerd]:
    images.ensure_busybox_image(docker_client)
    images.ensure_pause_image(docker_client)
    daemon = PrivateDockerd()
    try:
        daemon.make_bridge()
        daemon.start()
        daemon.load_images(images.BUSYBOX_TAG, images.PAUSE_TAG)
        yield daemon
    finally:
        daemon.destroy()


def test_host_reboot_without_cloud_brings_every_pod_back(
    tmp_path: Path, private_dockerd: PrivateDockerd
) -> None:
    engine = private_dockerd
    (tmp_path / "edge").mkdir()
    c = EdgeCluster(tmp_path, node=f"reboot-{uuid.uuid4().hex[:8]}")
    logs = (c.edge_log, c.cloud_log, engine.log)
    c.write_cloud_config()
    try:
        c.start_cloud()
        c.join()
        cfg = yaml.safe_load(c.edge_config.read_text())
        kubelet = cfg["modules"]["edged"].setdefault("tailoredKubeletConfig", {})
        kubelet["containerRuntimeEndpoint"] = engine.host
        c.edge_config.write_text(yaml.safe_dump(cfg, sort_keys=False))
        c.start_edge()
        c.wait_node_ready()

        c.core().create_namespaced_config_map(
            "default", {"metadata": {"name": "boot-cm"}, "data": {"greeting": "hello"}}
        )
        uids = {
            "boot-a": c.create(sleeper("boot-a")).metadata.uid,
            "boot-b": c.create(configmap_pod("boot-b", "boot-cm")).metadata.uid,
        }
        for name in uids:
            wait_until(f"pod {name} Running and Ready", lambda n=name: running_ready(c.pod(n)), 60, *logs)
        before = {name: containers_of(uid, host=engine.host) for name, uid in uids.items()}
        assert all(set(found) == {"POD", "main"} for found in before.values()), before

        node_uid = c.core().read_node(c.node).metadata.uid
        coordination = client.CoordinationV1Api(config.new_client_from_config(str(c.kubeconfig)))

        def renewed_lease(since: datetime.datetime) -> Any:
            try:
                got = coordination.read_namespaced_lease(c.node, "kube-node-lease")
            except ApiException as exc:
                if exc.status == 404:  # not created yet
                    return None
                raise
            return got if got.spec.renew_time > since else None

        epoch = datetime.datetime.fromtimestamp(0, datetime.UTC)
        owned = wait_until(
            "the node Lease",
            lambda: (got := renewed_lease(epoch)) and got.metadata.owner_references,
            30,
            *logs,
        )
        assert [(o.kind, o.name, o.uid) for o in owned] == [("Node", c.node, node_uid)]

        assert c.stop("cloudcore") == 0
        c.kill("edgecore")
        engine.power_cut()
        engine.start()
        # The reboot killed every container: none of the pods' containers runs on the fresh engine.
        assert all(containers_of(uid, host=engine.host) == {} for uid in uids.values())
        stopped = {
            name: containers_of(uid, running_only=False, host=engine.host) for name, uid in uids.items()
        }
        assert stopped == before  # the engine kept the dead containers on disk, as after a real reboot

        c.start_edge()

        def all_back() -> dict[str, dict[str, str]] | None:
            c.alive("edgecore")
            now = {name: containers_of(uid, host=engine.host) for name, uid in uids.items()}
            return now if all(set(found) == {"POD", "main"} for found in now.values()) else None

        after = wait_until("every pod's containers running again with no cloud", all_back, 60, *logs)
        for name in uids:
            assert after[name]["main"] != before[name]["main"], f"{name}: the old container cannot run again"
        # The configmap volume was rebuilt from the local store: the cloud is still away.
        assert engine.docker("exec", after["boot-b"]["main"], "cat", "/cfg/greeting").stdout == "hello"
        boot_log = c.edge_log.read_text().rsplit("===== start edgecore =====", 1)[1]
        assert "connected to cloud" not in boot_log
        assert "pods restored from the local store" in boot_log

        cloud_back = datetime.datetime.now(datetime.UTC)
        c.start_cloud()
        c.wait_reconnected()
        c.wait_node_ready()
        # The rebooted edgecore read the stored Lease before renewing it: its Node still owns it.
        fresh = wait_until("the Lease renewed after the reboot", lambda: renewed_lease(cloud_back), 30, *logs)
        assert [(o.kind, o.name, o.uid) for o in fresh.metadata.owner_references] == [
            ("Node", c.node, node_uid)
        ]
        for name in uids:
            wait_until(
                f"pod {name} Running and Ready in the API after the cloud is back",
                lambda n=name: (
                    running_ready(c.pod(n))
                    and {s.container_id.removeprefix("docker://") for s in c.pod(n).status.container_statuses}
                    == {after[n]["main"]}
                ),
                60,
                *logs,
            )
    finally:
        c.teardown()
