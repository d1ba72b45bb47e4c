"""Benchmark of the embedded API server through the real ``kubernetes`` client; prints one JSON line.

Starts ``cloudcore apiserver`` as a subprocess (scheduler off, fresh data
folder), then measures: pod creates/s and gets/s, watch event delivery
latency p50/p99 with 10 concurrent watchers, the latency of listing all pods,
the server's RSS with all pods stored, and the raw SQLite insert rate of the
same JSON rows (WAL, synchronous=NORMAL, one commit per row, as the server
writes) as the baseline the create rate is compared with.

    python benchmarks/apiserver.py --pods 10000
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

WATCHERS = 10


def _start(data: Path) -> tuple[subprocess.Popen[bytes], Path]:
    kubeconfig = data / "kubeconfig.yaml"
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from kubeedge.cli.cloudcore import main; sys.exit(main())",
         "--log-level", "warning", "apiserver",
         "--data-dir", str(data / "state"), "--port", "0", "--kubeconfig", str(kubeconfig), "--no-scheduler"],
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not kubeconfig.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("apiserver did not start")
        time.sleep(0.05)
    return proc, kubeconfig


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _pod(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"pod-{i:06d}", "labels": {"app": "bench", "shard": str(i % 10)}},
        "spec": {
            "nodeName": f"edge-{i % 100}",
            "containers": [{"name": "app", "image": "registry.local/app:1.0", "ports": [{"containerPort": 8080}],
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}],
        },
    }  # fmt: skip


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(pods: int, watch_events: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        proc, kubeconfig = _start(data)
        try:
            api = config.new_client_from_config(config_file=str(kubeconfig))
            core = client.CoreV1Api(api)
            core.create_namespace({"metadata": {"name": "bench"}})
            t0 = time.perf_counter()
            for i in range(pods):
                core.create_namespaced_pod("bench", _pod(i))
            creates = pods / (time.perf_counter() - t0)
            gets_n = min(pods, 2000)
            t0 = time.perf_counter()
            for i in range(gets_n):
                core.read_namespaced_pod(f"pod-{i:06d}", "bench")
            gets = gets_n / (time.perf_counter() - t0)

            list_times = []
            body = b""
            for _ in range(3):
                t0 = time.perf_counter()
                resp = core.list_namespaced_pod("bench", _preload_content=False)
                body = resp.data
                list_times.append(time.perf_counter() - t0)
            items = json.loads(body)["items"]
            assert len(items) == pods, f"listed {len(items)} of {pods} pods"
            rss = _rss_mib(proc.pid)

            sent: dict[str, float] = {}
            latencies: list[float] = []
            lock = threading.Lock()
            start_rv = core.list_namespaced_config_map("default").metadata.resource_version

            def watcher() -> None:
                w = watch.Watch()
                wcore = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
                for seen, ev in enumerate(w.stream(wcore.list_namespaced_config_map, "default", resource_version=start_rv,
                                   label_selector="bench=watch", timeout_seconds=120), start=1):  # fmt: skip
                    now = time.perf_counter()
                    name = ev["object"].metadata.name
                    with lock:
                        latencies.append(now - sent[name])
                    if seen == watch_events:
                        w.stop()

            threads = [threading.Thread(target=watcher, daemon=True) for _ in range(WATCHERS)]
            for t in threads:
                t.start()
            time.sleep(1.0)  # let watchers connect so latency measures delivery, not connection setup
            for i in range(watch_events):
                name = f"w-{i}"
                with lock:
                    sent[name] = time.perf_counter()
                core.create_namespaced_config_map(
                    "default", {"metadata": {"name": name, "labels": {"bench": "watch"}}}
                )
                time.sleep(0.005)  # a steady trickle: latency, not queueing behind a burst
            for t in threads:
                t.join(120)
        finally:
            proc.terminate()
            proc.wait(30)

        rows = [json.dumps(item, separators=(",", ":")) for item in items]
        db = sqlite3.connect(data / "baseline.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE objects (resource TEXT, namespace TEXT, name TEXT, rv INTEGER, data TEXT,"
                   " PRIMARY KEY (resource, namespace, name))")  # fmt: skip
        t0 = time.perf_counter()
        for i, row in enumerate(rows):
            db.execute("BEGIN")
            db.execute("INSERT INTO objects VALUES ('pods', 'bench', ?, ?, ?)", (f"pod-{i:06d}", i, row))
            db.execute("COMMIT")
        sqlite_rate = len(rows) / (time.perf_counter() - t0)
        db.close()

    return {
        "benchmark": "apiserver",
        "pods": pods,
        "creates_per_s": round(creates, 1),
        "gets_per_s": round(gets, 1),
        "watchers": WATCHERS,
        "watch_events": watch_events,
        "watch_delivered": len(latencies),
        "watch_p50_ms": round(statistics.median(latencies) * 1000, 2) if latencies else None,
        "watch_p99_ms": round(_percentile(latencies, 0.99) * 1000, 2) if latencies else None,
        "list_ms": round(statistics.median(list_times) * 1000, 1),
        "list_bytes": len(body),
        "rss_mib": round(rss, 1),
        "sqlite_inserts_per_s": round(sqlite_rate, 1),
        "creates_vs_sqlite_ratio": round(creates / sqlite_rate, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pods", type=int, default=10_000, help="pods to create and list (default 10000)")
    parser.add_argument(
        "--watch-events", type=int, default=200, help="events each watcher must see (default 200)"
    )
    args = parser.parse_args()
    if not 1 <= args.pods <= 100_000 or not 1 <= args.watch_events <= 10_000:
        parser.error("--pods must be 1..100000 and --watch-events 1..10000")
    print(json.dumps(run(args.pods, args.watch_events)))


if __name__ == "__main__":
    main()
