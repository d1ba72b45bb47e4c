"""Garbage collection choices, the Node object, static pod manifests and probe handlers on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from kubeedge.edge.edged import gc, nodestatus, probes, static
from kubeedge.edge.edged.podspec import Probe, ProbeKind, parse_pod
from kubeedge.edge.edged.runtime import ContainerState, ExecResult, ImageRecord
from kubeedge.kit import limits
from tests.edge.edged.test_decide import NOW, make, rec, sandbox


def test_dead_containers_beyond_the_per_container_maximum() -> None:
    pod = make(["a", "b"])
    records = [
        sandbox(pod, 2, id="s2"),
        sandbox(pod, 1, running=False, id="s1"),
        sandbox(pod, 0, running=False, id="s0"),
        rec(pod, "a", attempt=3),
        *[rec(pod, "a", attempt=i, state=ContainerState.EXITED, finished_at=NOW - 50) for i in range(3)],
        rec(pod, "b", state=ContainerState.EXITED, finished_at=NOW - 1),
    ]
    chosen = gc.dead_containers(records, {"u"}, max_per_pod_container=1, min_age=0, now=NOW)
    assert sorted(chosen) == ["a-0", "a-1", "s0"]
    assert gc.dead_containers(records, {"u"}, max_per_pod_container=2, min_age=0, now=NOW) == ["a-0"]
    # 0 keeps no dead copies, except a container's newest record when that one is dead (b).
    assert sorted(gc.dead_containers(records, {"u"}, 0, 0, NOW)) == ["a-0", "a-1", "a-2", "s0", "s1"]
    assert gc.dead_containers(records, set(), 1, 0, NOW) == []  # unknown pods are the orphan path's job


def test_min_age_keeps_young_dead_containers() -> None:
    pod = make(["a"])
    records = [
        rec(pod, "a", attempt=i, state=ContainerState.EXITED, finished_at=NOW - 10 * (3 - i))
        for i in range(3)
    ]
    assert gc.dead_containers(records, {"u"}, 1, min_age=25, now=NOW) == ["a-0"]


def test_orphans_are_only_unknown_pods() -> None:
    pod = make(["a"])
    records = [sandbox(pod), rec(pod, "a")]
    assert gc.orphans(records, {"u"}) == []
    assert [r.id for r in gc.orphans(records, {"other"})] == ["sb0", "a-0"]


def images() -> list[ImageRecord]:
    return [
        ImageRecord("sha256:old", ("old:1",), 100, created_at=1),
        ImageRecord("sha256:mid", ("mid:1",), 100, created_at=2),
        ImageRecord("sha256:new", ("new:1",), 100, created_at=3),
        ImageRecord("sha256:used", ("used:1",), 100, created_at=0),
        ImageRecord("sha256:pause", ("kubeedge/pause:3.6",), 100, created_at=0),
    ]


def test_image_gc_frees_oldest_unused_down_to_low_threshold() -> None:
    seen = {i.id: NOW - 1000 + i.created_at for i in images()}
    usage = gc.ImageUse(used_bytes=900, capacity_bytes=1000)  # 90 % > 85 %: free 100 bytes to reach 80 %
    chosen = gc.images_to_remove(
        images(), {"sha256:used"}, {"kubeedge/pause:3.6"}, usage, 85, 80, 120, seen, NOW
    )
    assert chosen == ["sha256:old"]
    usage = gc.ImageUse(used_bytes=990, capacity_bytes=1000)  # needs 190 bytes: two images
    chosen = gc.images_to_remove(
        images(), {"sha256:used"}, {"kubeedge/pause:3.6"}, usage, 85, 80, 120, seen, NOW
    )
    assert chosen == ["sha256:old", "sha256:mid"]


def test_image_gc_is_conservative() -> None:
    seen = {i.id: NOW - 1000 for i in images()}
    full = gc.ImageUse(990, 1000)
    assert gc.images_to_remove(images(), set(), set(), gc.ImageUse(800, 1000), 85, 80, 0, seen, NOW) == []
    assert gc.images_to_remove(images(), set(), set(), full, 100, 80, 0, seen, NOW) == []  # 100 disables
    young = {i.id: NOW - 10 for i in images()}
    assert gc.images_to_remove(images(), set(), set(), full, 85, 80, 120, young, NOW) == []
    everything_used = {i.id for i in images()}
    assert gc.images_to_remove(images(), everything_used, set(), full, 85, 80, 0, seen, NOW) == []
    protected = gc.images_to_remove(images(), set(), {"old:1", "sha256:mid"}, full, 85, 80, 0, seen, NOW)
    assert "sha256:old" not in protected
    assert "sha256:mid" not in protected


FACTS = nodestatus.NodeFacts(
    hostname="h",
    node_ip="10.0.0.5",
    cpu_count=4,
    memory_bytes=8 * 2**30,
    memory_available_bytes=4 * 2**30,
    disk_capacity_bytes=100 * 2**30,
    disk_available_bytes=50 * 2**30,
    pid_max=4096,
    pid_used=100,
    kernel_version="6.1.0",
    os_image="Debian GNU/Linux 12 (bookworm)",
    architecture="amd64",
    runtime_version="docker://20.10.24",
)


def test_node_object() -> None:
    config = nodestatus.NodeConfig("edge-1", max_pods=50, labels={"site": "a"})
    node = nodestatus.build_node(config, FACTS, NOW)
    labels = node["metadata"]["labels"]
    assert labels["node-role.kubernetes.io/edge"] == ""
    assert labels["node-role.kubernetes.io/agent"] == ""
    assert (labels["kubernetes.io/hostname"], labels["kubernetes.io/arch"], labels["site"]) == (
        "edge-1",
        "amd64",
        "a",
    )
    status = node["status"]
    assert status["capacity"] == {
        "cpu": "4",
        "memory": f"{8 * 2**20}Ki",
        "pods": "50",
        "ephemeral-storage": f"{100 * 2**20}Ki",
    }
    assert status["allocatable"]["memory"] == f"{8 * 2**20 - 100 * 1024}Ki"
    assert status["nodeInfo"]["containerRuntimeVersion"] == "docker://20.10.24"
    assert status["nodeInfo"]["kernelVersion"] == "6.1.0"
    assert status["addresses"] == [
        {"type": "InternalIP", "address": "10.0.0.5"},
        {"type": "Hostname", "address": "edge-1"},
    ]
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions == {
        "Ready": "True",
        "MemoryPressure": "False",
        "DiskPressure": "False",
        "PIDPressure": "False",
    }


def test_node_pressure_and_runtime_down() -> None:
    config = nodestatus.NodeConfig("edge-1")
    first = nodestatus.build_status(config, FACTS, NOW)
    bad = nodestatus.NodeFacts(
        **{
            **{f: getattr(FACTS, f) for f in FACTS.__slots__},
            "memory_available_bytes": 2**20,
            "disk_available_bytes": 2**30,
            "runtime_ready": False,
            "runtime_message": "connection refused",
        }
    )
    second = nodestatus.build_status(config, bad, NOW + 10, previous=first)
    conditions = {c["type"]: c for c in second["conditions"]}
    assert conditions["MemoryPressure"]["status"] == "True"
    assert conditions["DiskPressure"]["status"] == "True"
    assert conditions["Ready"]["status"] == "False"
    assert "connection refused" in conditions["Ready"]["message"]
    assert conditions["PIDPressure"]["lastTransitionTime"] == first["conditions"][2]["lastTransitionTime"]
    assert (
        conditions["Ready"]["lastTransitionTime"] == conditions["Ready"]["lastHeartbeatTime"]
    )  # it just changed


def test_gather_facts_reads_this_host(tmp_path: Path) -> None:
    facts = nodestatus.gather_facts("127.0.0.1", tmp_path, "docker://x")
    assert facts.cpu_count >= 1
    assert facts.memory_bytes > 0
    assert facts.disk_capacity_bytes > 0
    assert facts.kernel_version


def test_static_manifests() -> None:
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "c", "image": "i:1"}]},
    }
    files = {
        "web.yaml": json.dumps(manifest).encode(),
        "broken.yaml": b"{not yaml: [",
        "deploy.yaml": b"kind: Deployment\nmetadata: {name: x}\n",
    }
    pods, errors = static.pods_from_manifests(files, "edge-1")
    assert sorted(errors) == ["broken.yaml", "deploy.yaml"]
    assert "only Pod manifests" in errors["deploy.yaml"]
    [pod] = pods
    assert pod["metadata"]["name"] == "web-edge-1"
    assert pod["metadata"]["annotations"][static.SOURCE_ANNOTATION] == "file"
    assert pod["spec"]["nodeName"] == "edge-1"
    parse_pod(pod)
    again, _ = static.pods_from_manifests(files, "edge-1")
    assert again[0]["metadata"]["uid"] == pod["metadata"]["uid"]  # stable across restarts
    manifest["spec"]["containers"][0]["image"] = "i:2"
    changed, _ = static.pods_from_manifests({"web.yaml": json.dumps(manifest).encode()}, "edge-1")
    assert changed[0]["metadata"]["uid"] != pod["metadata"]["uid"]


def test_static_dir_reading_is_bounded(tmp_path: Path) -> None:
    (tmp_path / "ok.yaml").write_text("kind: Pod\n")
    (tmp_path / "big.yaml").write_bytes(b"#" * (limits.EDGED_MAX_MANIFEST_BYTES + 1))
    (tmp_path / "notes.txt").write_text("ignored")
    contents, errors = static.read_dir(tmp_path)
    assert list(contents) == ["ok.yaml"]
    assert "larger than" in errors["big.yaml"]
    assert static.read_dir(tmp_path / "absent") == ({}, {})


class _ExecRuntime:
    def __init__(self, code: int) -> None:
        self.code = code

    async def exec(self, container_id: str, command: tuple[str, ...]) -> ExecResult:
        return ExecResult(self.code, b"said " + " ".join(command).encode())


async def _http_server(status: int, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.receive_some(4096)
            await stream.send_all(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode())

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handle, listeners)


async def test_probe_handlers_on_loopback(nursery: trio.Nursery) -> None:
    pod = make(["a"])
    container = pod.containers[0]
    with trio.fail_after(10):
        ok_port = await nursery.start(_http_server, 200)
        bad_port = await nursery.start(_http_server, 503)
        http_ok = Probe(ProbeKind.HTTP, port=ok_port, path="/healthz")
        assert await probes.run_probe(_ExecRuntime(0), "id", container, http_ok, "127.0.0.1") == (True, "")  # type: ignore[arg-type]
        http_bad = Probe(ProbeKind.HTTP, port=bad_port)
        ok, message = await probes.run_probe(_ExecRuntime(0), "id", container, http_bad, "127.0.0.1")  # type: ignore[arg-type]
        assert not ok
        assert "statuscode: 503" in message
        tcp = Probe(ProbeKind.TCP, port=ok_port)
        assert (await probes.run_probe(_ExecRuntime(0), "id", container, tcp, "127.0.0.1"))[0]  # type: ignore[arg-type]
        closed = Probe(ProbeKind.TCP, port=_closed_port())
        ok, message = await probes.run_probe(_ExecRuntime(0), "id", container, closed, "127.0.0.1")  # type: ignore[arg-type]
        assert not ok
        assert "tcpSocket probe failed" in message
        exec_probe = Probe(ProbeKind.EXEC, command=("cat", "x"))
        assert await probes.run_probe(_ExecRuntime(1), "id", container, exec_probe, "") == (
            False,
            "said cat x",
        )  # type: ignore[arg-type]
        named = Probe(ProbeKind.TCP, port="nope")
        ok, message = await probes.run_probe(_ExecRuntime(0), "id", container, named, "127.0.0.1")  # type: ignore[arg-type]
        assert not ok
        assert "port name 'nope' not found" in message


def _closed_port() -> int:
    from tests.conftest import free_port

    return free_port()


def test_probe_port_names_resolve() -> None:
    pod = parse_pod(
        {
            "metadata": {"name": "p", "uid": "u"},
            "spec": {
                "containers": [
                    {"name": "a", "image": "i:1", "ports": [{"containerPort": 8080, "name": "http"}]}
                ]
            },
        }
    )
    assert probes.resolve_port(pod.containers[0], "http") == 8080
    assert probes.resolve_port(pod.containers[0], 81) == 81
    with pytest.raises(ValueError, match="port name 'x' not found"):
        probes.resolve_port(pod.containers[0], "x")
