"""Fixtures for edged: pod builders and a running PodManager on the real Docker engine.

Every pod a test makes gets a fresh UID; at teardown every container labelled with one of those UIDs is
removed, so a failing test leaves nothing behind and nothing else on the host is touched.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from kubeedge.edge.edged import runtime as rt
from kubeedge.edge.edged import service
from kubeedge.edge.edged.manager import Periods, PodManager, PodStatusReport
from kubeedge.kit.config.edgecore import Edged as EdgedConfig
from kubeedge.kit.config.edgecore import TailoredKubeletConfig


def make_pod(name: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    """A Pod object with a fresh UID."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": str(uuid.uuid4())},
        "spec": {"containers": containers, "terminationGracePeriodSeconds": 0, **spec},
    }


def busybox(name: str, image: str, *command: str, **extra: Any) -> dict[str, Any]:
    """A busybox container running ``command`` under ``sh -c``."""
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", " ".join(command) or "sleep 3600"],
        **extra,
    }


@dataclass
class Objects:
    """An in-memory configmap/secret store standing in for MetaManager's lookup."""

    items: dict[tuple[str, str, str], Mapping[str, Any]] = field(default_factory=dict)

    async def lookup(self, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.items.get((kind, namespace, name))


@dataclass
class Edged:
    """A running manager plus what the test needs around it."""

    manager: PodManager
    objects: Objects
    reports: list[PodStatusReport]
    config: EdgedConfig
    docker: Any
    uids: set[str]

    def add(self, pod: dict[str, Any]) -> str:
        uid = str(pod["metadata"]["uid"])
        self.uids.add(uid)
        self.manager.upsert_pod(pod)
        return uid

    async def wait(
        self, uid: str, predicate: Callable[[Mapping[str, Any]], bool], timeout: float = 20
    ) -> Mapping[str, Any]:
        """Poll the pod's status until ``predicate`` holds (fails after ``timeout``, showing the last status)."""
        status = None
        with trio.move_on_after(timeout):
            while True:
                status = self.manager.status(uid)
                if status is not None and predicate(status):
                    return status
                await trio.sleep(0.05)
        raise AssertionError(f"pod {uid} did not reach the wanted status in {timeout}s; last: {status}")

    def containers(self, uid: str) -> list[Seen]:
        """The pod's containers from one ``docker ps -a`` (no per-container inspect, so no race with removal)."""
        listed = self.docker.api.containers(all=True, filters={"label": f"{rt.LABEL_POD_UID}={uid}"})
        return [
            Seen(self.docker, str(c["Id"]), dict(c.get("Labels") or {}), str(c.get("State", "")))
            for c in listed
        ]


@dataclass(frozen=True)
class Seen:
    """A container as ``docker ps`` listed it."""

    docker: Any
    id: str
    labels: dict[str, str]
    status: str

    def inspect(self) -> dict[str, Any]:
        return dict(self.docker.api.inspect_container(self.id))

    def kill(self) -> None:
        self.docker.api.kill(self.id)

    def stop(self, timeout: int) -> None:
        self.docker.api.stop(self.id, timeout=timeout)

    def exec_run(self, command: list[str]) -> Any:
        return self.docker.containers.get(self.id).exec_run(command)


def ready(status: Mapping[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or [])


def waiting_reason(status: Mapping[str, Any], container: str) -> str:
    for entry in status.get("containerStatuses") or []:
        if entry["name"] == container:
            return str((entry["state"].get("waiting") or {}).get("reason", ""))
    return ""


@pytest.fixture
def edged_config(tmp_path: Path) -> EdgedConfig:
    (tmp_path / "manifests").mkdir()
    return EdgedConfig(
        # A node of its own per test: edged adopts, garbage-collects and tears down every container of its
        # node, so test runs sharing the engine (CI next to a focused run) must never share a node name.
        hostname_override=f"edge-test-{uuid.uuid4().hex[:12]}",
        node_ip="127.0.0.1",
        root_directory=str(tmp_path / "kubelet"),
        tailored_kubelet_config=TailoredKubeletConfig(
            static_pod_path=str(tmp_path / "manifests"),
            file_check_frequency=0.2,
            image_gc_high_threshold_percent=100,
        ),
    )


TEST_PERIODS = Periods(relist=0.2, gc=3600)
"""Fast relists so tests see outside changes quickly; GC only when a test asks for it."""


def with_kubelet(config: EdgedConfig, **changes: Any) -> EdgedConfig:
    """``config`` with ``tailoredKubeletConfig`` fields replaced."""
    return dataclasses.replace(
        config, tailored_kubelet_config=dataclasses.replace(config.tailored_kubelet_config, **changes)
    )


@pytest.fixture
def created_uids(docker_client: Any) -> Iterator[set[str]]:
    uids: set[str] = set()
    yield uids
    for uid in uids:
        for container in docker_client.containers.list(
            all=True, filters={"label": f"{rt.LABEL_POD_UID}={uid}"}
        ):
            container.remove(force=True)


async def start_edged(
    nursery: trio.Nursery, docker_client: Any, config: EdgedConfig, objects: Objects, uids: set[str]
) -> Edged:
    reports: list[PodStatusReport] = []
    send, receive = trio.open_memory_channel[PodStatusReport](0)

    async def collect() -> None:
        async for report in receive:
            reports.append(report)

    nursery.start_soon(collect)
    manager: PodManager = await nursery.start(
        partial(
            service.serve_docker,
            config,
            objects.lookup,
            send,
            docker_client=docker_client,
            periods=TEST_PERIODS,
        )
    )
    return Edged(manager, objects, reports, config, docker_client, uids)


@pytest.fixture
async def edged(
    nursery: trio.Nursery,
    docker_client: Any,
    busybox_image: str,
    edged_config: EdgedConfig,
    created_uids: set[str],
) -> Edged:
    return await start_edged(nursery, docker_client, edged_config, Objects(), created_uids)
