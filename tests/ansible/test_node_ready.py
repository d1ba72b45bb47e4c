"""kubeedge.edge.node_ready against the real embedded API server (``cloudcore apiserver``) in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from tests.ansible.conftest import COLLECTIONS, MODULES, VENV_BIN

START_DEADLINE = 30.0
HEARTBEAT = "2026-11-27T07:00:00Z"
HEARTBEAT_UNIX = 1795762800.0


@pytest.fixture(scope="module")
def kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("apiserver")
    path = root / "admin.kubeconfig"
    proc = subprocess.Popen(
        [
            str(VENV_BIN / "cloudcore"),
            "apiserver",
            "--data-dir",
            str(root / "data"),
            "--port",
            "0",
            "--kubeconfig",
            str(path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + START_DEADLINE
        while not (path.exists() and path.stat().st_size > 0):
            assert proc.poll() is None, f"apiserver exited: {proc.stderr.read() if proc.stderr else ''}"
            assert time.monotonic() < deadline, "apiserver wrote no kubeconfig within 30 s"
            time.sleep(0.05)
        yield path
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        if proc.stderr is not None:
            proc.stderr.close()


@pytest.fixture(scope="module")
def core(kubeconfig: Path) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))


def _node(name: str, ready: str | None, version: str = "v1.31.0-kubeedge-py") -> dict[str, Any]:
    info = dict.fromkeys(
        (
            "architecture",
            "bootID",
            "containerRuntimeVersion",
            "kernelVersion",
            "kubeProxyVersion",
            "machineID",
        ),
        "x",
    ) | dict.fromkeys(("operatingSystem", "osImage", "systemUUID"), "x")
    status: dict[str, Any] = {"nodeInfo": info | {"kubeletVersion": version}}
    if ready is not None:
        status["conditions"] = [
            {
                "type": "Ready",
                "status": ready,
                "reason": "EdgeReady",
                "message": "edged",
                "lastHeartbeatTime": HEARTBEAT,
            }
        ]
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "status": status}


def _set_ready(core: client.CoreV1Api, name: str, ready: str) -> None:
    body = _node(name, ready)
    node = core.read_node(name)
    body["metadata"]["resourceVersion"] = node.metadata.resource_version
    core.replace_node_status(name, body)


def test_ready_node_passes_and_reports_its_condition_and_version(module, kubeconfig, core) -> None:
    core.create_node(_node("edge-ready", "True"))
    run = module("node_ready", {"name": "edge-ready", "kubeconfig": str(kubeconfig), "timeout": 10})
    assert run.rc == 0, run.result
    assert not run.failed, run.result
    assert run.result["ready"] is True
    assert run.result["changed"] is False
    assert run.result["condition"]["status"] == "True"
    assert run.result["node_info"]["kubeletVersion"] == "v1.31.0-kubeedge-py"


def test_not_ready_node_fails_after_the_timeout_with_the_reason(module, kubeconfig, core) -> None:
    core.create_node(_node("edge-down", "False"))
    run = module(
        "node_ready", {"name": "edge-down", "kubeconfig": str(kubeconfig), "timeout": 1, "interval": 0.2}
    )
    assert run.failed
    assert run.result["ready"] is False
    assert "Ready=False (EdgeReady: edged)" in run.result["msg"]
    assert run.result["elapsed"] >= 0.8


def test_missing_node_fails_naming_it(module, kubeconfig) -> None:
    run = module("node_ready", {"name": "edge-nowhere", "kubeconfig": str(kubeconfig), "timeout": 0})
    assert run.failed
    assert "node edge-nowhere not ready" in run.result["msg"]
    assert "not found" in run.result["msg"]


def test_version_gate_rejects_a_node_still_on_the_old_release(module, kubeconfig, core) -> None:
    core.create_node(_node("edge-old", "True"))
    args = {"name": "edge-old", "kubeconfig": str(kubeconfig), "timeout": 0}
    passed = module("node_ready", args | {"version": "kubeedge-py"})
    assert not passed.failed, passed.result
    rejected = module("node_ready", args | {"version": "v1.32.0"})
    assert rejected.failed
    assert "reports version 'v1.31.0-kubeedge-py', not 'v1.32.0'" in rejected.result["msg"]


def test_waits_until_the_node_turns_ready(kubeconfig, core, tmp_path) -> None:
    core.create_node(_node("edge-later", "False"))
    args = tmp_path / "args.json"
    args.write_text(
        json.dumps(
            {
                "ANSIBLE_MODULE_ARGS": {
                    "name": "edge-later",
                    "kubeconfig": str(kubeconfig),
                    "timeout": 30,
                    "interval": 0.2,
                }
            }
        )
    )
    proc = subprocess.Popen(
        [sys.executable, str(MODULES / "node_ready.py"), str(args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PYTHONPATH": str(COLLECTIONS), "PATH": str(VENV_BIN)},
    )
    try:
        _set_ready(core, "edge-later", "True")
        out, err = proc.communicate(timeout=40)
    finally:
        proc.kill()
    result = json.loads(out.strip().splitlines()[-1])
    assert proc.returncode == 0, (result, err)
    assert result["ready"] is True


def test_missing_kubeconfig_fails_but_check_mode_reports_not_ready(module, tmp_path) -> None:
    args = {"name": "edge-1", "kubeconfig": str(tmp_path / "admin.kubeconfig")}
    run = module("node_ready", args)
    assert run.failed
    assert "does not exist" in run.result["msg"]
    checked = module("node_ready", args, check_mode=True)
    assert not checked.failed
    assert checked.result["ready"] is False


def test_unreachable_api_fails_after_the_timeout(module, tmp_path, kubeconfig) -> None:
    # The same credentials, but a port nothing listens on (the server's port + 0 is taken; use port 1).
    text = kubeconfig.read_text()
    dead = tmp_path / "dead.kubeconfig"
    server = next(line for line in text.splitlines() if "server:" in line).split("server:")[1].strip()
    dead.write_text(text.replace(server, "https://127.0.0.1:1"))
    run = module("node_ready", {"name": "edge-1", "kubeconfig": str(dead), "timeout": 1, "interval": 0.5})
    assert run.failed
    assert "API unreachable" in run.result["msg"]


def test_heartbeat_from_before_a_restart_does_not_count(module, kubeconfig, core) -> None:
    core.create_node(_node("edge-restarted", "True"))
    args = {"name": "edge-restarted", "kubeconfig": str(kubeconfig), "timeout": 0}
    stale = module("node_ready", args | {"since": HEARTBEAT_UNIX + 1})
    assert stale.failed
    assert "no heartbeat since the restart (last: 2026-11-27T07:00:00" in stale.result["msg"]
    fresh = module("node_ready", args | {"since": HEARTBEAT_UNIX})
    assert not fresh.failed, fresh.result
