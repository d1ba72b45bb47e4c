"""Edged benchmark: pod start latency next to bare ``docker run``, edgecore's memory, MetaManager durability.

Runs on the real Docker engine with the local busybox image. Measures, in one run:
- ``docker run -d`` latency of the busybox image (one at a time), p50/p99;
- pod start latency through edged (desired pod given -> its container running), one pod at a time, p50/p99;
- the time until all pods are running when they are given at once (burst);
- RSS of this process with edged idle and with all pods running (``rss_idle_mib``/``rss_pods_mib``);
- RSS of a whole ``edgecore`` process (a real subprocess with every default module, its cloud unreachable),
  idle and in steady state with the same number of static pods running (``edgecore_rss_*_mib``);
- cloud messages made durable per second through the real ``metamanager`` module in a beehive (store with
  synchronous=FULL, then ack), next to raw one-row SQLite commits per second with the same pragmas on the
  same file system (``metamodule_durable_msgs_per_s`` / ``raw_sqlite_commits_per_s``). The cloud link is a
  counter here: the figure is MetaManager, beehive and SQLite, not the websocket.
Prints one JSON line. Everything it creates carries labels and is removed at the end.

    python benchmarks/edged.py --pods 20
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import docker
import trio
import yaml

from kubeedge.edge import app
from kubeedge.edge.edged import runtime as rt
from kubeedge.edge.edged.dockerruntime import DockerRuntime
from kubeedge.edge.edged.manager import Periods, PodManager
from kubeedge.edge.status import providers
from kubeedge.kit import beehive, images, pki
from kubeedge.kit import config as kconfig
from kubeedge.kit.config.edgecore import Edged, TailoredKubeletConfig
from kubeedge.proto.message import Message

BENCH_LABEL = "io.kubeedge-py.benchmark"
SETTLE_S = 3.0
"""Seconds edgecore runs untouched before its RSS is read: several relists, status and heartbeat rounds."""


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


# --- a whole edgecore process ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def write_edge_files(work: Path, node: str) -> Path:
    """Certificates from a throw-away CA and an edgecore.yaml whose cloud address refuses connections."""
    now = dt.datetime.now(dt.UTC)
    ca = pki.new_ca(now=now)
    key = pki.new_key()
    cert = ca.sign_csr(pki.new_node_csr(key, node), now=now)
    (work / "certs").mkdir(parents=True)
    (work / "certs/ca.crt").write_bytes(pki.cert_to_pem(ca.cert))
    (work / "certs/edge.crt").write_bytes(pki.cert_to_pem(cert))
    (work / "certs/edge.key").write_bytes(pki.key_to_pem(key))
    (work / "manifests").mkdir()
    cfg = {
        "apiVersion": kconfig.edgecore.API_VERSION,
        "kind": kconfig.edgecore.KIND,
        "database": {"dataSource": str(work / "edgecore.db")},
        "modules": {
            "edged": {
                "hostnameOverride": node,
                "rootDirectory": str(work / "kubelet"),
                "tailoredKubeletConfig": {
                    "staticPodPath": str(work / "manifests"),
                    "fileCheckFrequency": "1s",
                },
            },
            "edgeHub": {
                "httpServer": f"https://127.0.0.1:{free_port()}",
                "tlsCaFile": str(work / "certs/ca.crt"),
                "tlsCertFile": str(work / "certs/edge.crt"),
                "tlsPrivateKeyFile": str(work / "certs/edge.key"),
                "websocket": {"server": f"127.0.0.1:{free_port()}"},
            },
            "eventBus": {"mqttMode": 0, "mqttServerInternal": f"tcp://127.0.0.1:{free_port()}"},
            "serviceBus": {"port": free_port()},
            "statusServer": {"socketPath": str(work / "status.sock")},
        },
    }
    path = work / "edgecore.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def running_app_containers(client: Any, node: str) -> int:
    found = client.containers.list(
        filters={"label": [f"{rt.LABEL_NODE}={node}", f"{rt.LABEL_CONTAINER_NAME}=app"]}
    )
    return len(found)


def edgecore_rss(client: Any, image: str, count: int, work: Path) -> dict[str, float]:
    """RSS of an edgecore subprocess idle, then with ``count`` static pods running."""
    node = f"bench-{uuid.uuid4().hex[:8]}"
    config = write_edge_files(work, node)
    edgecore = Path(sys.executable).parent / "edgecore"
    log = (work / "edgecore.log").open("wb")
    proc = subprocess.Popen([str(edgecore), "--config", str(config)], stdout=log, stderr=subprocess.STDOUT)
    result: dict[str, float] = {}
    try:
        deadline = time.monotonic() + 60
        while not (work / "status.sock").exists():  # the last module to start
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"edgecore did not start: {(work / 'edgecore.log').read_text()[-2000:]}")
            time.sleep(0.1)
        time.sleep(SETTLE_S)
        result["edgecore_rss_idle_mib"] = round(process_rss_mib(proc.pid), 1)
        for i in range(count):
            manifest = pod(image, f"static-{i}")
            del manifest["metadata"]["uid"]
            manifest["metadata"]["namespace"] = "default"
            (work / "manifests" / f"static-{i}.json").write_text(json.dumps(manifest))
        deadline = time.monotonic() + 60 + 3 * count
        while running_app_containers(client, node) < count:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"static pods did not start: {(work / 'edgecore.log').read_text()[-2000:]}"
                )
            time.sleep(0.2)
        time.sleep(SETTLE_S)
        result["edgecore_rss_pods_mib"] = round(process_rss_mib(proc.pid), 1)
        for manifest_file in (work / "manifests").iterdir():
            manifest_file.unlink()
        deadline = time.monotonic() + 60
        while running_app_containers(client, node) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
        for container in client.containers.list(all=True, filters={"label": f"{rt.LABEL_NODE}={node}"}):
            container.remove(force=True)
    return result


# --- MetaManager durability -----------------------------------------------------------------------------------


def configmap(i: int) -> dict[str, Any]:
    return {
        "kind": "ConfigMap",
        "metadata": {"name": f"c{i}", "resourceVersion": str(i + 1)},
        "data": {"v": "x" * 512},
    }


def raw_sqlite_commits(path: Path, n: int) -> float:
    """One-row ``INSERT OR REPLACE`` commits per second into upstream's meta table (WAL, synchronous=FULL)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(
            "CREATE TABLE meta(key VARCHAR(256) PRIMARY KEY, type VARCHAR(32) NOT NULL, value TEXT NOT NULL)"
        )
        values = [json.dumps(configmap(i)) for i in range(n)]
        start = time.perf_counter()
        for i, value in enumerate(values):
            conn.execute(
                "INSERT OR REPLACE INTO meta VALUES (?, ?, ?)",
                (f"default/configmap/c{i}", "configmap", value),
            )
        return n / (time.perf_counter() - start)
    finally:
        conn.close()


class CountingLink:
    """The cloud side of the link as MetaModule sees it: always connected, counts the acks sent up."""

    def __init__(self, expected: int) -> None:
        self.connected = True
        self.acks = 0
        self.expected = expected
        self.done = trio.Event()

    async def send(self, msg: Message) -> None:
        if msg.route.operation == "response":
            self.acks += 1
            if self.acks == self.expected:
                self.done.set()


async def metamodule_durable(path: Path, n: int) -> float:
    """Cloud insert messages per second through the ``metamanager`` module until every one is acked."""
    cfg = kconfig.default_edgecore()
    cfg = dataclasses.replace(cfg, database=dataclasses.replace(cfg.database, data_source=str(path)))
    store = app.open_store(cfg)
    link = CountingLink(n)
    board = providers.board_from_config(cfg, started_at=time.time())
    module = app.MetaModule(cfg, store, link, [app.METAMANAGER], board)  # type: ignore[arg-type]
    hive = beehive.Beehive([module])
    msgs = [
        Message.new(
            source="edgecontroller",
            group="resource",
            operation="insert",
            resource=f"default/configmap/c{i}",
            content=configmap(i),
            now_ms=i,
            resource_version=str(i + 1),
        )
        for i in range(n)
    ]
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(hive.run)
            start = time.perf_counter()
            for msg in msgs:
                await hive.bus.send(app.METAMANAGER, msg)
            with trio.fail_after(120):
                await link.done.wait()
            elapsed = time.perf_counter() - start
            hive.shutdown()
    finally:
        store.close()
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=20)
    parser.add_argument(
        "--messages", type=int, default=2000, help="messages (rows) per durability measurement"
    )
    args = parser.parse_args()
    if not 1 <= args.pods <= 110:
        parser.error("--pods must be in 1..110 (maxPods)")
    if not 1 <= args.messages <= 100_000:
        parser.error("--messages must be in 1..100000")
    client = docker.from_env(timeout=120)
    image = images.BUSYBOX_TAG
    images.ensure_busybox_image(client)
    images.ensure_pause_image(client)
    bare = bare_docker_runs(client, image, args.pods)
    with tempfile.TemporaryDirectory(prefix="edged-bench-") as root:
        measured = trio.run(edged_runs, client, image, args.pods, Path(root))
    with tempfile.TemporaryDirectory(prefix="edged-bench-") as root:
        measured |= edgecore_rss(client, image, args.pods, Path(root))
    with tempfile.TemporaryDirectory(prefix="edged-bench-") as root:
        measured["raw_sqlite_commits_per_s"] = round(
            raw_sqlite_commits(Path(root) / "raw.db", args.messages), 1
        )
        measured["metamodule_durable_msgs_per_s"] = round(
            trio.run(metamodule_durable, Path(root) / "mm.db", args.messages), 1
        )
    edged = measured.pop("edged_pod_start_ms")
    out = {
        "benchmark": "edged",
        "pods": args.pods,
        "messages": args.messages,
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
