"""Edged on the real Docker engine: pods reach Running/Ready, restart, update volumes, get deleted, are adopted.

Probe periods are 1 s and grace periods 0 so the whole file stays quick.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import trio

from kubeedge.edge.edged import backoff
from kubeedge.edge.edged import runtime as rt
from tests.conftest import free_port
from tests.edge.edged.conftest import (
    Edged,
    Objects,
    busybox,
    make_pod,
    ready,
    start_edged,
    waiting_reason,
    with_kubelet,
)

pytestmark = pytest.mark.docker


def _exec(edged: Edged, uid: str, container: str, *command: str) -> str:
    [target] = [
        c
        for c in edged.containers(uid)
        if c.labels.get(rt.LABEL_CONTAINER_NAME) == container and c.status == "running"
    ]
    result = target.exec_run(list(command))
    return str(result.output.decode())


async def test_pod_with_configmap_secret_and_probes_becomes_ready_and_follows_configmap_changes(
    edged: Edged, busybox_image: str
) -> None:
    host_port = free_port()
    edged.objects.items[("configmap", "default", "web-content")] = {
        "data": {"index.html": "v1", "other": "x"}
    }
    edged.objects.items[("secret", "default", "creds")] = {
        "data": {"password": base64.b64encode(b"s3cret").decode()}
    }
    container = busybox(
        "web",
        busybox_image,
        "touch /tmp/healthy; exec httpd -f -p 8080 -h /www",
        env=[
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "GREETING", "value": "hello $(POD_NAME)"},
        ],
        workingDir="/tmp",
        volumeMounts=[{"name": "content", "mountPath": "/www"}],
        readinessProbe={"httpGet": {"path": "/index.html", "port": 8080}, "periodSeconds": 1},
        startupProbe={"exec": {"command": ["test", "-f", "/tmp/healthy"]}, "periodSeconds": 1},
        livenessProbe={
            "exec": {"command": ["test", "-f", "/tmp/healthy"]},
            "periodSeconds": 1,
            "failureThreshold": 1,
        },
        resources={"limits": {"memory": "64Mi", "cpu": "250m"}},
        ports=[{"containerPort": 8080, "hostPort": host_port, "hostIP": "127.0.0.1", "name": "http"}],
    )
    pod = make_pod(
        "web",
        [container],
        volumes=[
            {
                "name": "content",
                "configMap": {
                    "name": "web-content",
                    "items": [{"key": "index.html", "path": "index.html", "mode": 0o600}],
                },
            }
        ],
    )
    uid = edged.add(pod)
    status = await edged.wait(uid, ready)
    assert status["phase"] == "Running"
    assert status["podIP"]
    entry = status["containerStatuses"][0]
    assert entry["ready"]
    assert entry["started"]
    assert entry["restartCount"] == 0
    assert entry["containerID"].startswith("docker://")
    assert entry["imageID"].startswith("docker://sha256:")
    assert (
        _exec(edged, uid, "web", "sh", "-c", 'echo "$PASSWORD|$GREETING|$(pwd)"').strip()
        == "s3cret|hello web|/tmp"
    )
    assert _exec(edged, uid, "web", "cat", "/www/index.html") == "v1"
    assert _exec(edged, uid, "web", "stat", "-L", "-c", "%a", "/www/index.html").strip() == "600"
    assert "other" not in _exec(edged, uid, "web", "ls", "/www")
    [app] = [c for c in edged.containers(uid) if c.labels[rt.LABEL_CONTAINER_KIND] == "app"]
    assert app.inspect()["HostConfig"]["Memory"] == 64 * 1024 * 1024
    assert app.inspect()["HostConfig"]["NanoCpus"] == 250_000_000
    assert app.labels[rt.LABEL_MANAGED] == "true"
    # hostPort is published on the sandbox, bound to the requested loopback address.
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", host_port)
        async with stream:
            await stream.send_all(b"GET /index.html HTTP/1.0\r\n\r\n")
            reply = b""
            while chunk := await stream.receive_some(4096):
                reply += chunk
    assert reply.startswith(b"HTTP/1.")
    assert reply.endswith(b"v1")

    # A configmap update reaches the running container's file through the ..data swap.
    edged.objects.items[("configmap", "default", "web-content")] = {"data": {"index.html": "v2"}}
    edged.manager.object_changed("configmap", "default", "web-content")
    with trio.fail_after(10):
        while _exec(edged, uid, "web", "cat", "/www/index.html") != "v2":
            await trio.sleep(0.05)

    # A failing liveness probe restarts the container.
    _exec(edged, uid, "web", "rm", "/tmp/healthy")
    status = await edged.wait(uid, lambda s: s["containerStatuses"][0]["restartCount"] == 1 and ready(s))
    assert status["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] != 0


async def test_killed_container_is_restarted_and_counted(edged: Edged, busybox_image: str) -> None:
    uid = edged.add(make_pod("killme", [busybox("app", busybox_image, "sleep 3600")]))
    status = await edged.wait(uid, ready)
    first = status["containerStatuses"][0]["containerID"]
    [app] = [c for c in edged.containers(uid) if c.labels[rt.LABEL_CONTAINER_KIND] == "app"]
    await trio.to_thread.run_sync(app.kill)
    status = await edged.wait(uid, lambda s: s["containerStatuses"][0]["restartCount"] == 1 and ready(s))
    entry = status["containerStatuses"][0]
    assert entry["containerID"] != first
    assert entry["lastState"]["terminated"]["exitCode"] == 137
    assert entry["lastState"]["terminated"]["containerID"] == first
    # The status is computed before it is emitted (and a busy manager sends only the newest): wait for it.
    with trio.fail_after(10):
        while not any(r.uid == uid and r.status == status for r in edged.reports):
            await trio.sleep(0.05)
    mine = [r.status for r in edged.reports if r.uid == uid]
    assert len(mine) >= 2
    assert all(a != b for a, b in itertools.pairwise(mine))  # emitted only when changed


async def test_delete_removes_every_container_and_the_pod_dir(edged: Edged, busybox_image: str) -> None:
    pod = make_pod(
        "gone",
        [
            busybox(
                "app",
                busybox_image,
                "sleep 3600",
                volumeMounts=[{"name": "scratch", "mountPath": "/scratch"}],
            )
        ],
        initContainers=[
            busybox(
                "init",
                busybox_image,
                "echo done > /scratch/init",
                volumeMounts=[{"name": "scratch", "mountPath": "/scratch"}],
            )
        ],
        volumes=[{"name": "scratch", "emptyDir": {}}],
    )
    uid = edged.add(pod)
    status = await edged.wait(uid, ready)
    assert status["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    assert _exec(edged, uid, "app", "cat", "/scratch/init").strip() == "done"
    assert len(edged.containers(uid)) == 3  # sandbox, init, app
    edged.manager.delete_pod(uid)
    with trio.fail_after(15):
        while not any(r.uid == uid and r.status is None for r in edged.reports):
            await trio.sleep(0.05)
    assert edged.containers(uid) == []
    assert not edged.manager.pod_dir(uid).exists()


async def test_bad_image_reports_pull_error_while_other_pod_runs(edged: Edged, busybox_image: str) -> None:
    # 127.0.0.1:1 refuses at once: no traffic leaves the machine.
    bad = edged.add(make_pod("bad", [busybox("app", "127.0.0.1:1/missing:1", "true")]))
    good = edged.add(make_pod("good", [busybox("app", busybox_image, "sleep 3600")]))
    await edged.wait(good, ready)
    status = await edged.wait(bad, lambda s: waiting_reason(s, "app") in ("ErrImagePull", "ImagePullBackOff"))
    message = status["containerStatuses"][0]["state"]["waiting"]["message"]
    assert "127.0.0.1:1" in message
    assert "connection refused" in message
    assert status["phase"] == "Pending"
    await edged.wait(bad, lambda s: waiting_reason(s, "app") == "ImagePullBackOff")
    assert ready(edged.manager.status(good) or {})


async def test_bad_specs_get_clear_reasons_and_harm_no_other_pod(edged: Edged, busybox_image: str) -> None:
    no_image = edged.add(make_pod("noimage", [{"name": "app"}]))
    bad_probe = edged.add(
        make_pod("badprobe", [busybox("app", busybox_image, livenessProbe={"periodSeconds": 1})])
    )
    bad_volume = edged.add(
        make_pod("badvol", [busybox("app", busybox_image)], volumes=[{"name": "v", "nfs": {"server": "x"}}])
    )
    missing_cm = edged.add(
        make_pod("nocm", [busybox("app", busybox_image, envFrom=[{"configMapRef": {"name": "absent"}}])])
    )
    good = edged.add(make_pod("fine", [busybox("app", busybox_image)]))
    await edged.wait(good, ready)
    for uid, text in (
        (no_image, "image: required"),
        (bad_probe, "livenessProbe"),
        (bad_volume, "'nfs' is not supported"),
    ):
        status = await edged.wait(uid, lambda s: s.get("reason") == "InvalidPodSpec")
        assert text in status["message"]
        assert edged.containers(uid) == []
    status = await edged.wait(missing_cm, lambda s: waiting_reason(s, "app") == "CreateContainerConfigError")
    assert status["containerStatuses"][0]["state"]["waiting"]["message"] == 'configmap "absent" not found'


async def test_static_pod_runs_without_cloud(
    edged: Edged, busybox_image: str, created_uids: set[str]
) -> None:
    manifest = make_pod("static-web", [busybox("app", busybox_image, "sleep 3600")], hostNetwork=True)
    del manifest["metadata"]["uid"]
    assert edged.manager.static_dir is not None
    (edged.manager.static_dir / "web.json").write_text(json.dumps(manifest))
    with trio.fail_after(10):
        while not (
            found := [
                r for r in edged.reports if r.name == f"static-web-{edged.manager.node_name}" and r.status
            ]
        ):
            await trio.sleep(0.05)
    uid = found[0].uid
    created_uids.add(uid)
    assert found[0].static
    status = await edged.wait(uid, ready)
    assert status["phase"] == "Running"
    assert status["podIP"] == edged.manager.node_ip  # hostNetwork: the node's address
    [sandbox] = [c for c in edged.containers(uid) if c.labels[rt.LABEL_CONTAINER_KIND] == "sandbox"]
    assert sandbox.inspect()["HostConfig"]["NetworkMode"] == "host"
    (edged.manager.static_dir / "web.json").unlink()
    with trio.fail_after(15):
        while edged.containers(uid):
            await trio.sleep(0.05)


async def test_restarted_manager_adopts_containers_and_stopped_pods_come_back(
    docker_client: Any, busybox_image: str, edged_config: Any, created_uids: set[str]
) -> None:
    objects = Objects()
    pod = make_pod("adopt", [busybox("app", busybox_image, "sleep 3600")])
    uid = str(pod["metadata"]["uid"])
    created_uids.add(uid)
    async with trio.open_nursery() as nursery:
        first = await start_edged(nursery, docker_client, edged_config, objects, created_uids)
        first.manager.set_pods([pod])
        status = await first.wait(uid, ready)
        ids = sorted(c.id for c in first.containers(uid))
        nursery.cancel_scope.cancel()
    async with trio.open_nursery() as nursery:
        keep_no_dead = dataclasses.replace(edged_config, max_per_pod_container_count=0)
        second = await start_edged(nursery, docker_client, keep_no_dead, objects, created_uids)
        second.manager.set_pods([pod])
        adopted = await second.wait(uid, ready)
        assert adopted["containerStatuses"][0]["containerID"] == status["containerStatuses"][0]["containerID"]
        assert sorted(c.id for c in second.containers(uid)) == ids

        # What a dockerd restart leaves behind: every container of the pod stopped. The pod comes back.
        # Sandbox first, so the pod is restarted exactly once.
        for container in sorted(
            second.containers(uid), key=lambda c: c.labels[rt.LABEL_CONTAINER_KIND] != "sandbox"
        ):
            await trio.to_thread.run_sync(lambda c=container: c.stop(timeout=0))
        back = await second.wait(
            uid,
            lambda s: (
                ready(s)
                and s["containerStatuses"][0]["containerID"] != status["containerStatuses"][0]["containerID"]
            ),
        )
        assert back["containerStatuses"][0]["restartCount"] == 1
        sandboxes = [c for c in second.containers(uid) if c.labels[rt.LABEL_CONTAINER_KIND] == "sandbox"]
        assert len([c for c in sandboxes if c.status == "running"]) == 1

        # Garbage collection removes the dead sandbox and app container, nothing else.
        assert len(second.containers(uid)) == 4
        removed = await second.manager.collect_garbage()
        assert sorted(removed) == ids
        assert sorted(c.status for c in second.containers(uid)) == ["running", "running"]
        nursery.cancel_scope.cancel()


async def test_orphans_of_unknown_pods_are_removed_after_the_pod_list_is_known(
    edged: Edged, busybox_image: str, tmp_path: Path
) -> None:
    uid = edged.add(make_pod("orphan", [busybox("app", busybox_image)]))
    await edged.wait(uid, ready)
    node = await edged.manager.node_status()
    assert node["nodeInfo"]["containerRuntimeVersion"].startswith("docker://")
    assert {c["type"]: c["status"] for c in node["conditions"]}["Ready"] == "True"
    edged.manager.set_pods([])  # the cloud no longer lists it
    with trio.fail_after(15):
        while edged.containers(uid):
            await trio.sleep(0.05)


async def test_pods_beyond_max_pods_are_rejected(
    nursery: trio.Nursery, docker_client: Any, busybox_image: str, edged_config: Any, created_uids: set[str]
) -> None:
    edged = await start_edged(
        nursery, docker_client, with_kubelet(edged_config, max_pods=1), Objects(), created_uids
    )
    first = edged.add(make_pod("first", [busybox("app", busybox_image)]))
    await edged.wait(first, ready)
    second = edged.add(make_pod("second", [busybox("app", busybox_image)]))
    status = await edged.wait(second, lambda s: s.get("reason") == "OutOfpods")
    assert status["phase"] == "Failed"
    assert "capacity: 1" in status["message"]
    assert edged.containers(second) == []


async def test_pod_restored_with_a_deletion_timestamp_is_torn_down_and_reported_gone(
    docker_client: Any, busybox_image: str, edged_config: Any, created_uids: set[str]
) -> None:
    # A graceful delete is stored by MetaManager as an update carrying deletionTimestamp; an edgecore that
    # restarts during the grace period gets the pod back in that state from its local store. Its containers
    # must still be stopped and removed, and the final delete (status None) must go up.
    objects = Objects()
    pod = make_pod("restored-deleting", [busybox("app", busybox_image, "sleep 3600")])
    uid = str(pod["metadata"]["uid"])
    created_uids.add(uid)
    async with trio.open_nursery() as nursery:
        first = await start_edged(nursery, docker_client, edged_config, objects, created_uids)
        first.manager.set_pods([pod])
        await first.wait(uid, ready)
        nursery.cancel_scope.cancel()
    assert len(first.containers(uid)) == 2
    deleting = {
        **pod,
        "metadata": {
            **pod["metadata"],
            "deletionTimestamp": "2026-01-01T00:00:00Z",
            "deletionGracePeriodSeconds": 0,
        },
    }
    async with trio.open_nursery() as nursery:
        second = await start_edged(nursery, docker_client, edged_config, objects, created_uids)
        second.manager.set_pods([deleting])
        with trio.fail_after(15):
            while not any(r.uid == uid and r.status is None for r in second.reports):
                await trio.sleep(0.05)
        assert second.containers(uid) == []
        assert not second.manager.pod_dir(uid).exists()
        # Forgotten once gone: no worker comes back for it, so no second final delete goes up.
        with trio.move_on_after(1):
            while len([r for r in second.reports if r.uid == uid]) < 2:
                await trio.sleep(0.05)
        assert [r.status for r in second.reports if r.uid == uid] == [None]
        assert second.manager.status(uid) is None
        nursery.cancel_scope.cancel()


async def test_a_sandbox_lost_under_its_containers_is_recreated_at_once_then_backed_off(
    nursery: trio.Nursery, docker_client: Any, busybox_image: str, edged_config: Any, created_uids: set[str]
) -> None:
    # The busybox image as sandbox: its shell has no stdin and exits at once, so every app container is
    # refused with Docker's "cannot join network of a non running container".
    config = dataclasses.replace(edged_config, pod_sandbox_image=busybox_image)
    edged = await start_edged(nursery, docker_client, config, Objects(), created_uids)
    uid = edged.add(make_pod("lost-sandbox", [busybox("app", busybox_image)]))

    def sandboxes() -> int:
        return len([c for c in edged.containers(uid) if c.labels[rt.LABEL_CONTAINER_KIND] == "sandbox"])

    status = await edged.wait(uid, lambda s: waiting_reason(s, "app") == "RunContainerError")
    refused_at = trio.current_time()
    assert not ready(status)
    assert "non running container" in status["containerStatuses"][0]["state"]["waiting"]["message"]
    # Recreated without waiting out the start back-off: the containers were not at fault.
    with trio.fail_after(backoff.INITIAL - 1):
        while sandboxes() < 2:
            await trio.sleep(0.05)
    assert trio.current_time() - refused_at < backoff.INITIAL
    # A second loss right after takes the back-off: no third sandbox meanwhile, and the pod says why.
    status = await edged.wait(uid, lambda s: waiting_reason(s, "app") == "RunContainerError")
    with trio.move_on_after(3):
        while sandboxes() < 3:
            await trio.sleep(0.05)
    assert sandboxes() == 2
    assert edged.manager.status(uid) is not None


async def test_graceful_delete_uses_its_grace_period_and_a_pod_never_run_is_reported_gone(
    edged: Edged, busybox_image: str
) -> None:
    def deleting(pod: dict[str, Any], grace: int) -> dict[str, Any]:
        marks = {"deletionTimestamp": "2026-01-01T00:00:00Z", "deletionGracePeriodSeconds": grace}
        return {**pod, "metadata": {**pod["metadata"], **marks}}

    def gone(uid: str) -> list[Any]:
        return [r for r in edged.reports if r.uid == uid and r.status is None]

    # terminationGracePeriodSeconds 60 and SIGTERM ignored, but `kubectl delete --grace-period=0`.
    stubborn = make_pod(
        "stubborn",
        [busybox("app", busybox_image, "trap '' TERM; sleep 3600")],
        terminationGracePeriodSeconds=60,
    )
    uid = edged.add(stubborn)
    await edged.wait(uid, ready)
    edged.manager.upsert_pod(deleting(stubborn, 0))
    # Created and deleted in the API before this node ever ran it: only the final delete is owed.
    never = deleting(make_pod("never-ran", [busybox("app", busybox_image)]), 30)
    never_uid = edged.add(never)
    with trio.fail_after(15):
        while not (gone(uid) and gone(never_uid)):
            await trio.sleep(0.05)
    assert edged.containers(uid) == []
    assert edged.containers(never_uid) == []
    assert (gone(never_uid)[0].namespace, gone(never_uid)[0].name) == ("default", "never-ran")
    assert (gone(uid)[0].namespace, gone(uid)[0].name) == ("default", "stubborn")
    # The cloud echoes the pod until the final delete lands: no second final delete.
    edged.manager.upsert_pod(deleting(stubborn, 0))
    with trio.move_on_after(1):
        while len(gone(uid)) < 2:
            await trio.sleep(0.05)
    assert len(gone(uid)) == 1
