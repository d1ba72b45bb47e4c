"""cloudcore killed with SIGKILL in the middle of a fan-out, then restarted: edges converge, nothing goes back."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from kubeedge.cloud import kubeapi
from tests.apiserver.conftest import Cluster
from tests.cloud.conftest import client_api, eventually, node_object, pod_object

REPO = Path(__file__).resolve().parents[2]
NODES = ("edge-0", "edge-1", "edge-2")
PODS_PER_NODE = 40


def start(cluster: Cluster, db_dir: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.cloud.cloudcore_proc", str(cluster.kubeconfig), str(db_dir), *NODES],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", f"cloudcore did not start: {line!r}"
    return proc


def edge_rows(db: Path) -> dict[str, int]:
    if not db.exists():
        return {}
    conn = sqlite3.connect(db, timeout=5)
    try:
        return {k: rv for k, rv, body in conn.execute("SELECT key, rv, body FROM obj") if body is not None}
    except sqlite3.OperationalError:
        return {}
    finally:
        conn.close()


def applied(db: Path) -> list[tuple[str, str, int]]:
    conn = sqlite3.connect(db, timeout=5)
    try:
        return list(conn.execute("SELECT key, op, rv FROM applied ORDER BY rowid"))
    finally:
        conn.close()


@pytest.mark.slow
async def test_sigkill_mid_fanout_then_restart(cluster: Cluster, tmp_path: Path) -> None:
    api = client_api(cluster)
    procs: list[subprocess.Popen[str]] = []
    try:
        with trio.fail_after(120):
            for node in NODES:
                await api.create(kubeapi.NODES, "", node_object(node))
            await api.create(
                kubeapi.CONFIGMAPS, "default", {"metadata": {"name": "shared"}, "data": {"v": "1"}}
            )
            procs.append(await trio.to_thread.run_sync(start, cluster, tmp_path))
            for i in range(PODS_PER_NODE):
                for node in NODES:
                    await api.create(
                        kubeapi.PODS, "default", pod_object(f"{node}-p{i}", node, configmaps=("shared",))
                    )
            # Kill while the edges hold some, but not all, of what they should.
            total = len(NODES) * (PODS_PER_NODE + 1)
            await eventually(lambda: sum(len(edge_rows(tmp_path / f"{n}.db")) for n in NODES) > 0,
                             timeout=30, what="first deliveries")  # fmt: skip
            procs[0].send_signal(signal.SIGKILL)
            await trio.to_thread.run_sync(procs[0].wait)
            assert cluster.thread.error is None, repr(cluster.thread.error)
            held = sum(len(edge_rows(tmp_path / f"{n}.db")) for n in NODES)
            assert held < total, "the fan-out finished before the kill; the test needs more objects"

            # While cloudcore is down: deletes, a configmap change, new pods.
            await trio.sleep(0.5)
            assert cluster.thread.error is None, repr(cluster.thread.error)
            for node in NODES:
                await api.delete(kubeapi.PODS, "default", f"{node}-p0", {"gracePeriodSeconds": 0})
                await api.create(
                    kubeapi.PODS, "default", pod_object(f"{node}-late", node, configmaps=("shared",))
                )
            await api.patch(kubeapi.CONFIGMAPS, "default", "shared", {"data": {"v": "2"}},
                            content_type=kubeapi.MERGE_PATCH)  # fmt: skip

            procs.append(await trio.to_thread.run_sync(start, cluster, tmp_path))
            pods, _ = await api.list_objects(kubeapi.PODS)
            cm = await api.get(kubeapi.CONFIGMAPS, "default", "shared")

            def expected(node: str) -> dict[str, int]:
                want = {f"default/pod/{p['metadata']['name']}": kubeapi.rv_of(p) for p in pods
                        if p["spec"]["nodeName"] == node}  # fmt: skip
                want["default/configmap/shared"] = kubeapi.rv_of(cm)
                return want

            for node in NODES:
                await eventually(lambda node=node: edge_rows(tmp_path / f"{node}.db") == expected(node),
                                 timeout=60, what=f"{node} converged")  # fmt: skip
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()
        api.close()
    for node in NODES:
        last: dict[str, int] = {}
        for key, op, rv in applied(tmp_path / f"{node}.db"):
            if op != "delete":
                assert rv >= last.get(key, 0), f"{node}: {key} went back from {last[key]} to {rv}"
            last[key] = max(rv, last.get(key, 0))
        assert f"default/pod/{node}-p0" not in edge_rows(tmp_path / f"{node}.db")
