"""EdgeController at scale: M pods created through the API for N simulated edge nodes.

Three processes: the embedded API server (``--role apiserver``), a load process
(``--role load``) that creates the pods through the API and watches their
status, and this one, which runs the cloudcore modules (SyncController,
EdgeController, the ``cloudhub`` stand-in) with N scripted edges in-process.
Each edge acks every object and answers a pod insert with a ``podpatch``
status report (phase Running). Prints ONE JSON line:

* ``create_to_edge_p50_ms``/``p99``: from just before the pod's POST to the
  moment the edge decoded its insert message;
* ``status_roundtrip_p50_ms``/``p99``: from the edge sending ``podpatch`` to the
  load process seeing phase Running in its watch;
* ``cloudcore_cpu_s_per_1000_pods``: CPU of this process (cloudcore modules plus
  the in-process hub stand-in and simulated edges) per 1,000 pods.

Usage: ``python benchmarks/edgecontroller.py --nodes 1000 --pods 10000`` (the
defaults; the test suite runs it with a handful of each).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import trio  # noqa: E402

from kubeedge.cloud import kubeapi  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


# --- apiserver role --------------------------------------------------------------------------------------


async def run_apiserver(data_dir: Path) -> None:
    from kubeedge.apiserver import server

    settings = server.Settings(data_dir=data_dir, port=0, scheduler=False, bookmark_interval_s=1.0)
    async with trio.open_nursery() as nursery:
        running = await nursery.start(server.serve, settings)
        print(running.kubeconfig, flush=True)


# --- load role -------------------------------------------------------------------------------------------


async def run_load(kubeconfig: str, nodes: int, pods: int, timeout: float) -> None:
    """Create the pods (16 at a time), then report creation and status-seen times on stdout."""
    api = kubeapi.KubeAPI.from_kubeconfig(kubeconfig, qps=100_000, burst=100_000)
    created: dict[str, float] = {}
    running: dict[str, float] = {}
    done = trio.Event()

    async def on_pod(type_: kubeapi.EventType, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        name = obj["metadata"]["name"]
        if name not in running and (obj.get("status") or {}).get("phase") == "Running":
            running[name] = time.time()
            if len(running) >= pods:
                done.set()

    with trio.move_on_after(timeout):
        async with trio.open_nursery() as nursery:
            await nursery.start(kubeapi.Reflector(api, kubeapi.PODS).run, on_pod)
            send, receive = trio.open_memory_channel[int](0)

            async def worker() -> None:
                async for i in receive:
                    name = f"bench-{i}"
                    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
                           "spec": {"nodeName": f"edge-{i % nodes}",
                                    "containers": [{"name": "c", "image": "busybox"}]}}  # fmt: skip
                    created[name] = time.time()
                    await api.create(kubeapi.PODS, "default", pod)

            async with send:
                for _ in range(16):
                    nursery.start_soon(worker)
                for i in range(pods):
                    await send.send(i)
            await done.wait()
            nursery.cancel_scope.cancel()
    print(json.dumps({"created": created, "running": running}), flush=True)
    api.close()


# --- cloud role (this process) ---------------------------------------------------------------------------


async def run_cloud(kubeconfig: str, nodes: int, pods: int, timeout: float) -> dict[str, Any]:
    from tests.cloud.edgesim import EdgePeer, HubStandIn

    from kubeedge.cloud.edgecontroller.controller import EdgeController
    from kubeedge.cloud.synccontroller.controller import SyncController, SyncStore
    from kubeedge.kit.beehive import Beehive
    from kubeedge.proto.message import Message

    received: dict[str, float] = {}
    patched: dict[str, float] = {}

    class BenchEdge(EdgePeer):
        async def handle(self, msg: Message) -> None:
            await super().handle(msg)
            name = msg.route.resource.rsplit("/", 1)[-1]
            if msg.route.operation == "insert" and "/pod/" in msg.route.resource and name not in received:
                received[name] = time.time()
                patched[name] = time.time()
                await self.send(Message.new(
                    source="edged", group="meta", operation="patch",
                    resource=msg.route.resource.replace("/pod/", "/podpatch/"),
                    content=json.dumps({"status": {"phase": "Running"}}), now_ms=int(time.time() * 1000)))  # fmt: skip

    api = kubeapi.KubeAPI.from_kubeconfig(kubeconfig, qps=100_000, burst=100_000)
    for i in range(nodes):
        node = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": f"edge-{i}", "labels": {"node-role.kubernetes.io/edge": ""}}}  # fmt: skip
        await api.create(kubeapi.NODES, "", node)
    store = SyncStore(api)
    edge = EdgeController(api, store, cloudcore_id="bench")
    sync = SyncController(store, edge)
    hub = HubStandIn()
    hive = Beehive([sync, edge, hub])
    cpu_start = _cpu()
    async with trio.open_nursery() as nursery:
        await nursery.start(hive.run)
        while any(not edge.node_exists(f"edge-{i}") for i in range(nodes)):
            await trio.sleep(0.05)
        for i in range(nodes):
            peer = BenchEdge(f"edge-{i}")
            peer.replies = _Discard()
            await hub.connect(peer)
        load = await trio.run_process(
            [sys.executable, __file__, "--role", "load", "--kubeconfig", kubeconfig, "--nodes", str(nodes),
             "--pods", str(pods), "--timeout", str(timeout)],
            capture_stdout=True, check=True,
        )  # fmt: skip
        hive.shutdown(hard=True)
        nursery.cancel_scope.cancel()
    cpu = _cpu() - cpu_start
    api.close()
    seen = json.loads(load.stdout.decode().strip().splitlines()[-1])
    delivery = [(received[n] - t) * 1000 for n, t in seen["created"].items() if n in received]
    status = [(t - patched[n]) * 1000 for n, t in seen["running"].items() if n in patched]
    return {
        "nodes": nodes,
        "pods": pods,
        "pods_delivered": len(received),
        "statuses_seen": len(seen["running"]),
        "create_to_edge_p50_ms": round(percentile(delivery, 50), 1),
        "create_to_edge_p99_ms": round(percentile(delivery, 99), 1),
        "status_roundtrip_p50_ms": round(percentile(status, 50), 1),
        "status_roundtrip_p99_ms": round(percentile(status, 99), 1),
        "cloudcore_cpu_s_per_1000_pods": round(cpu / max(pods, 1) * 1000, 2),
        "objectsyncs": len(store.index),
    }


class _Discard(dict[str, Any]):
    """Replies the benchmark edges never read."""

    def __setitem__(self, key: str, value: Any) -> None:
        return None


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000, help="simulated edge nodes (N)")
    parser.add_argument("--pods", type=int, default=10_000, help="pods created (M)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds the load may take")
    parser.add_argument("--role", choices=("bench", "apiserver", "load"), default="bench")
    parser.add_argument("--kubeconfig", default="")
    parser.add_argument("--data-dir", default="")
    args = parser.parse_args()
    if args.role == "apiserver":
        trio.run(run_apiserver, Path(args.data_dir))
        return
    if args.role == "load":
        trio.run(run_load, args.kubeconfig, args.nodes, args.pods, args.timeout)
        return
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(
            [sys.executable, __file__, "--role", "apiserver", "--data-dir", tmp],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        try:
            assert server.stdout is not None
            kubeconfig = server.stdout.readline().strip()
            if not kubeconfig:
                raise SystemExit("apiserver did not start")
            result = trio.run(run_cloud, kubeconfig, args.nodes, args.pods, args.timeout)
        finally:
            server.terminate()
            server.wait(30)
            if server.stdout is not None:
                server.stdout.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
