"""Edged benchmark: pod start latency next to bare ``docker run``, and the process's memory.

Runs on the real Docker engine with the local busybox image. Measures, in one run:
- ``docker run -d`` latency of the busybox image (one at a time), p50/p99;
- pod start latency through edged (desired pod given -> its container running), one pod at a time, p50/p99;
- the time until all pods are running when they are given at once (burst);
- RSS of this process with edged idle and with all pods running.
Prints one JSON line. Everything it creates carries labels and is removed at the end.

    python benchmarks/edged.py --pods 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import docker
import trio

from kubeedge.edge.edged import runtime as rt
from kubeedge.edge.edged.dockerruntime import DockerRuntime
from kubeedge.edge.edged.manager import Periods, PodManager
from kubeedge.kit import images
from kubeedge.kit.config.edgecore import Edged, TailoredKubeletConfig

BENCH_LABEL = "io.kubeedge-py.benchmark"


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def bare_docker_runs(client: Any, image: str, count: int) -> list[float]:
    latencies = []
    run = uuid.uuid4().hex[:8]
    try:
        for i in range(count):
            start = time.perf_counter()
            client.containers.run(
                image,
                ["sleep", "3600"],
                detach=True,
                name=f"kubeedge-py-bench-{run}-{i}",
                labels={BENCH_LABEL: run},
            )
            latencies.append(time.perf_counter() - start)
    finally:
        for container in client.containers.list(all=True, filters={"label": f"{BENCH_LABEL}={run}"}):
            container.remove(force=True)
    return latencies


def pod(image: str, name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "bench", "uid": str(uuid.uuid4())},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "app",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sleep", "3600"],
                }
            ],
        },
    }


def running(manager: PodManager, uid: str) -> bool:
    status = manager.status(uid) or {}
    entries = status.get("containerStatuses") or []
    return bool(entries) and all("running" in e["state"] for e in entries)


async def wait_running(manager: PodManager, uids: list[str], timeout: float) -> None:
    with trio.fail_after(timeout):
        while not all(running(manager, uid) for uid in uids):
            await trio.sleep(0.005)


async def edged_runs(client: Any, image: str, count: int, root: Path) -> dict[str, Any]:
    config = Edged(
        hostname_override="bench",
        node_ip="127.0.0.1",
        root_directory=str(root),
        tailored_kubelet_config=TailoredKubeletConfig(
            static_pod_path="", image_gc_high_threshold_percent=100
        ),
    )

    async def lookup(kind: str, namespace: str, name: str) -> None:
        return None

    manager = PodManager(DockerRuntime(client), config, lookup, periods=Periods(relist=1.0, gc=3600))
    uids: list[str] = []
    result: dict[str, Any] = {}
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(manager.run)
            await runtime_warmup(manager, image)
            result["rss_idle_mib"] = round(rss_mib(), 1)
            latencies = []
            for i in range(count):
                one = pod(image, f"seq-{i}")
                start = time.perf_counter()
                uids.append(manager.upsert_pod(one))
                await wait_running(manager, [uids[-1]], 60)
                latencies.append(time.perf_counter() - start)
            result["edged_pod_start_ms"] = latencies
            result["rss_pods_mib"] = round(rss_mib(), 1)
            for uid in uids:
                manager.delete_pod(uid)
            with trio.fail_after(120):
                while any(manager.status(uid) is not None for uid in uids):
                    await trio.sleep(0.05)
            burst = [pod(image, f"burst-{i}") for i in range(count)]
            start = time.perf_counter()
            burst_uids = [manager.upsert_pod(p) for p in burst]
            uids += burst_uids
            await wait_running(manager, burst_uids, 120)
            result["burst_all_running_s"] = round(time.perf_counter() - start, 3)
            nursery.cancel_scope.cancel()
    finally:
        for uid in uids:
            for container in client.containers.list(all=True, filters={"label": f"{rt.LABEL_POD_UID}={uid}"}):
                container.remove(force=True)
    return result


async def runtime_warmup(manager: PodManager, image: str) -> None:
    await manager.runtime.prepare_sandbox_image(manager.config.pod_sandbox_image)
    await manager.runtime.ensure_image(image, pull_always=False, pull_allowed=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=20)
    args = parser.parse_args()
    if not 1 <= args.pods <= 110:
        parser.error("--pods must be in 1..110 (maxPods)")
    client = docker.from_env(timeout=120)
    image = images.BUSYBOX_TAG
    images.ensure_busybox_image(client)
    images.ensure_pause_image(client)
    bare = bare_docker_runs(client, image, args.pods)
    with tempfile.TemporaryDirectory(prefix="edged-bench-") as root:
        measured = trio.run(edged_runs, client, image, args.pods, Path(root))
    edged = measured.pop("edged_pod_start_ms")
    out = {
        "benchmark": "edged",
        "pods": args.pods,
        "docker_run_p50_ms": round(statistics.median(bare) * 1000, 1),
        "docker_run_p99_ms": round(percentile(bare, 99) * 1000, 1),
        "edged_pod_start_p50_ms": round(statistics.median(edged) * 1000, 1),
        "edged_pod_start_p99_ms": round(percentile(edged, 99) * 1000, 1),
        **measured,
    }
    client.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
