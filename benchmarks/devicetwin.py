"""Device twin throughput and latency: K mappers -> mosquitto -> twin -> SQLite -> DeviceController -> API status.

Runs, in this process, a private mosquitto (subprocess), the embedded API server (thread), and one beehive
with the twin module, the real EventBus on the broker, DeviceController and the in-process link
(``tests/devicekit.py``). K paho mappers each own one Device and publish ``--updates`` twin updates of
property ``temp`` (values 1..N) as fast as the broker takes them.

Reports (one JSON line):

- ``edge_updates_per_s``: updates answered on ``twin/update/result`` (validated, merged, committed to
  SQLite with the report queued) per second;
- ``cloud_updates_per_s``: updates per second until every Device's status in the API shows its last value
  (DeviceController coalesces queued reports per device into one status write);
- ``mapper_to_api_ms_p50``/``_p99``: publish-to-visible-in-the-API latency of the values that appeared in
  a watched status (coalesced intermediate values never appear and are not counted: ``observed``).

``--mappers`` and ``--updates`` bound every loop.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.apiserver.conftest import Cluster, start_cluster  # noqa: E402
from tests.conftest import free_port, wait_for_port  # noqa: E402
from tests.devicekit import CloudLink, EdgeLink, LinkState, Mapper, eventbus, wait_subscribed  # noqa: E402

from kubeedge.cloud.devicecontroller.controller import DEVICES, GROUP, MODELS, VERSION, DeviceController  # noqa: E402
from kubeedge.edge.devicetwin.module import DeviceTwin  # noqa: E402
from kubeedge.kit import beehive  # noqa: E402

NODE = "bench-node"
PROP = "temp"


def start_mosquitto(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\nset_tcp_nodelay true\n"
    )
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port("127.0.0.1", port, timeout=15)
    return proc, port


def api(cluster: Cluster, fn: str, *args: Any) -> Any:
    from kubernetes import client

    with cluster.api_client() as c:
        return getattr(client.CustomObjectsApi(c), fn)(*args)


class StatusWatch:
    """Records when each (device, reported value) first shows in a Device status."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.seen: dict[tuple[str, str], float] = {}
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from kubernetes import client, watch

        with self.cluster.api_client() as c:
            custom = client.CustomObjectsApi(c)
            rv = custom.list_cluster_custom_object(GROUP, VERSION, DEVICES)["metadata"]["resourceVersion"]
            while not self.stop.is_set():
                w = watch.Watch()
                for ev in w.stream(
                    custom.list_cluster_custom_object,
                    GROUP,
                    VERSION,
                    DEVICES,
                    resource_version=rv,
                    timeout_seconds=2,
                ):
                    obj = ev["object"]
                    rv = obj["metadata"].get("resourceVersion", rv)
                    now = time.monotonic()
                    for t in (obj.get("status") or {}).get("twins") or []:
                        value = (t.get("reported") or {}).get("value")
                        if t.get("propertyName") == PROP and value is not None:
                            with self.lock:
                                self.seen.setdefault((obj["metadata"]["name"], value), now)
                    if self.stop.is_set():
                        break


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _bench(cluster: Cluster, port: int, db: Path, k: int, n: int) -> dict[str, Any]:
    state = LinkState(NODE)
    twin = DeviceTwin(data_source=db, node_name=NODE)
    hive = beehive.Beehive(
        [
            DeviceController(cluster.api_client, watch_timeout_s=5),
            CloudLink(state),
            twin,
            bus := eventbus("127.0.0.1", port, "bench"),
            EdgeLink(state),
        ],
        shutdown_timeout=2,
    )
    names = [f"dev-{i}" for i in range(k)]
    async with trio.open_nursery() as nursery:
        await nursery.start(hive.run)
        await wait_subscribed(bus)
        with trio.fail_after(60):
            while twin.store is None or len(await trio.to_thread.run_sync(twin.store.devices)) < k:
                await trio.sleep(0.05)  # waiting for membership to reach the node, under the deadline
        watcher = StatusWatch(cluster)
        mappers = [
            Mapper(
                "127.0.0.1",
                port,
                f"mapper-{name}",
                subscribe=f"$hw/events/device/default/{name}/twin/update/result",
            )
            for name in names
        ]
        published: dict[tuple[str, str], float] = {}
        t0 = time.monotonic()
        for i in range(1, n + 1):
            for name, m in zip(names, mappers, strict=True):
                published[(name, str(i))] = time.monotonic()
                m.publish_nowait(
                    f"$hw/events/device/default/{name}/twin/update",
                    {
                        "event_id": f"{name}-{i}",
                        "twin": {PROP: {"actual": {"value": str(i)}, "metadata": {"type": "int"}}},
                    },
                )
        result_topic = "$hw/events/device/default/{}/twin/update/result"
        with trio.fail_after(60 + k * n * 0.05):
            while (
                sum(m.count(result_topic.format(name)) for name, m in zip(names, mappers, strict=True))
                < k * n
            ):
                await trio.sleep(0.01)  # polling counters kept by the mapper threads
            t_edge = time.monotonic()
            while not all((name, str(n)) in watcher.seen for name in names):
                await trio.sleep(0.01)
            t_cloud = time.monotonic()
        watcher.stop.set()
        await trio.to_thread.run_sync(watcher.thread.join, 10)
        for m in mappers:
            m.close()
        hive.shutdown()
    with watcher.lock:
        latencies = [(at - published[key]) * 1000 for key, at in watcher.seen.items() if key in published]
    return {
        "mappers": k,
        "updates": n,
        "total_updates": k * n,
        "edge_updates_per_s": round(k * n / (t_edge - t0), 1),
        "cloud_updates_per_s": round(k * n / (t_cloud - t0), 1),
        "mapper_to_api_ms_p50": round(percentile(latencies, 0.50), 1),
        "mapper_to_api_ms_p99": round(percentile(latencies, 0.99), 1),
        "observed": len(latencies),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mappers", type=int, default=10, help="simulated mappers, one Device each (default 10)"
    )
    parser.add_argument("--updates", type=int, default=100, help="twin updates per mapper (default 100)")
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args(argv)
    if not (1 <= args.mappers <= 1000 and 1 <= args.updates <= 100_000):
        parser.error("--mappers must be 1..1000 and --updates 1..100000")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        broker, port = start_mosquitto(folder)
        cluster = start_cluster(folder / "api")
        try:
            api(cluster, "create_namespaced_custom_object", GROUP, VERSION, "default", MODELS,
                {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DeviceModel", "metadata": {"name": "m", "namespace": "default"},
                 "spec": {"properties": [{"name": PROP, "type": "INT"}]}})  # fmt: skip
            for i in range(args.mappers):
                api(cluster, "create_namespaced_custom_object", GROUP, VERSION, "default", DEVICES,
                    {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Device", "metadata": {"name": f"dev-{i}", "namespace": "default"},
                     "spec": {"deviceModelRef": {"name": "m"}, "nodeName": NODE, "properties": [{"name": PROP}]}})  # fmt: skip
            result = trio.run(_bench, cluster, port, folder / "edgecore.db", args.mappers, args.updates)
        finally:
            cluster.thread.stop()
            broker.terminate()
            broker.wait(timeout=10)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
