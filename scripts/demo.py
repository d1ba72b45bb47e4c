"""The demo: cloudcore + edgecore on one machine, a pod applied with kubectl and Running on Docker.

Everything lives under one work folder (default ``run/demo``): CA and certificates, the embedded API server's
data and kubeconfig, the edge node's config, database and pod folders, and both processes' logs. Each step
prints a progress line and waits with a deadline; on failure the tail of the relevant log is shown. By default
the demo cleans up after showing the result (the pod is deleted through the API, then both processes stop);
``--keep`` leaves everything running until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
EXAMPLE = REPO / "examples" / "demo-pod.yaml"


class DemoError(RuntimeError):
    """A step did not complete; the message says which and why."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(what: str, check: Callable[[], Any], timeout: float, log: Path | None = None) -> Any:
    """Poll ``check`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            tail = ""
            if log is not None and log.exists():
                tail = "\n--- tail of " + str(log) + " ---\n" + "\n".join(log.read_text().splitlines()[-25:])
            raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}{tail}")
        time.sleep(0.25)


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.work = Path(args.workdir).resolve()
        self.node = args.node_name
        self.timeout = args.timeout
        self.keep = args.keep
        if args.free_ports:
            self.api_port, self.ws_port, self.https_port = free_port(), free_port(), free_port()
            self.mqtt_port = free_port()
        else:
            self.api_port, self.ws_port, self.https_port = 6443, 10000, 10002
            self.mqtt_port = 1884
        self.kubeconfig = self.work / "admin.kubeconfig"
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.step_no = 0

    def step(self, text: str) -> None:
        self.step_no += 1
        print(f"[{self.step_no}/8] {text}", flush=True)

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(BIN / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and result.returncode != 0:
            raise DemoError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def start(self, name: str, argv: list[str]) -> Path:
        log = self.work / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append((name, proc))
        return log

    def alive(self, name: str) -> bool:
        for proc_name, proc in self.procs:
            if proc_name == name and proc.poll() is not None:
                raise DemoError(
                    f"{name} exited with code {proc.returncode}; see {self.work / (name + '.log')}"
                )
        return True

    def write_cloud_config(self) -> Path:
        w = self.work
        config = {
            "apiVersion": "cloudcore.config.kubeedge.io/v1alpha1",
            "kind": "CloudCore",
            "embeddedAPIServer": {
                "enable": True,
                "address": "127.0.0.1",
                "port": self.api_port,
                "dataDir": str(w / "apiserver"),
                "kubeConfigOutput": str(self.kubeconfig),
            },
            "modules": {
                "cloudHub": {
                    "advertiseAddress": ["127.0.0.1"],
                    "dnsNames": ["localhost"],
                    "tlsCAFile": str(w / "cloud/ca/rootCA.crt"),
                    "tlsCAKeyFile": str(w / "cloud/ca/rootCA.key"),
                    "tlsCertFile": str(w / "cloud/certs/server.crt"),
                    "tlsPrivateKeyFile": str(w / "cloud/certs/server.key"),
                    "websocket": {"address": "127.0.0.1", "port": self.ws_port},
                    "https": {"address": "127.0.0.1", "port": self.https_port},
                    "unixsocket": {"enable": False},
                },
            },
        }
        path = w / "cloudcore.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def adjust_edge_config(self, path: Path) -> None:
        config = yaml.safe_load(path.read_text())
        edged = config.setdefault("modules", {}).setdefault("edged", {})
        edged["rootDirectory"] = str(self.work / "edge/kubelet")
        kubelet = edged.setdefault("tailoredKubeletConfig", {})
        kubelet["staticPodPath"] = str(self.work / "edge/manifests")
        status = config["modules"].setdefault("statusServer", {})
        status["socketPath"] = str(self.work / "edge/edgecore-status.sock")
        # The demo brings no MQTT broker: EventBus runs its internal one (mqttMode 0).
        bus = config["modules"].setdefault("eventBus", {})
        bus["mqttMode"] = 0
        bus["mqttServerInternal"] = f"tcp://127.0.0.1:{self.mqtt_port}"
        path.write_text(yaml.safe_dump(config, sort_keys=False))

    def pod(self) -> dict[str, Any] | None:
        result = self.kubectl("get", "pod", "demo-web", "-o", "json", check=False)
        return json.loads(result.stdout) if result.returncode == 0 else None

    def run(self) -> None:
        if self.work.exists():
            shutil.rmtree(self.work)
        (self.work / "edge").mkdir(parents=True)
        (self.work / "edge/manifests").mkdir()

        self.step("building the local busybox image (no registry needed)")
        import docker

        from kubeedge.kit import images

        images.ensure_busybox_image(docker.from_env())

        self.step(
            f"starting cloudcore (embedded API server on 127.0.0.1:{self.api_port}, "
            f"CloudHub on :{self.ws_port}, certificates on :{self.https_port})"
        )
        cloud_config = self.write_cloud_config()
        cloud_log = self.start("cloudcore", [str(BIN / "cloudcore"), "--config", str(cloud_config)])
        wait_until(
            "the API server and its kubeconfig",
            lambda: (
                self.alive("cloudcore")
                and self.kubeconfig.exists()
                and self.kubectl("get", "--raw", "/readyz", check=False).returncode == 0
            ),
            self.timeout,
            cloud_log,
        )
        token_file = self.work / "cloud/tokens/tokendata"
        wait_until(
            "the join token", lambda: self.alive("cloudcore") and token_file.exists(), self.timeout, cloud_log
        )

        self.step("reading the join token with keadm gettoken")
        token = subprocess.run(
            [str(BIN / "keadm"), "gettoken", "--token-file", str(token_file)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()

        self.step(f"joining edge node {self.node!r} with keadm join")
        edge_dir = self.work / "edge"
        join = subprocess.run(
            [
                str(BIN / "keadm"),
                "join",
                "--cloudcore-ipport",
                f"127.0.0.1:{self.ws_port}",
                "--certport",
                str(self.https_port),
                "--token",
                token,
                "--edgenode-name",
                self.node,
                "--config-dir",
                str(edge_dir),
                "--db-path",
                str(edge_dir / "edgecore.db"),
                "--force",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if join.returncode != 0:
            raise DemoError(f"keadm join failed: {join.stderr.strip()}")
        edge_config = edge_dir / "config/edgecore.yaml"
        self.adjust_edge_config(edge_config)

        self.step("starting edgecore and waiting for the node to be Ready")
        edge_log = self.start("edgecore", [str(BIN / "edgecore"), "--config", str(edge_config)])

        def node_ready() -> bool:
            self.alive("edgecore")
            self.alive("cloudcore")
            result = self.kubectl("get", "node", self.node, "-o", "json", check=False)
            if result.returncode != 0:
                return False
            conditions = json.loads(result.stdout).get("status", {}).get("conditions", [])
            return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

        wait_until(f"node {self.node} Ready", node_ready, self.timeout, edge_log)

        self.step(f"applying {EXAMPLE.relative_to(REPO)} with kubectl")
        print(self.kubectl("apply", "-f", str(EXAMPLE)).stdout.rstrip(), flush=True)

        self.step("waiting for the pod to be Running and Ready on the edge node")

        def pod_ready() -> bool:
            self.alive("edgecore")
            pod = self.pod()
            if not pod or pod.get("status", {}).get("phase") != "Running":
                return False
            return any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in pod["status"].get("conditions", [])
            )

        wait_until("pod demo-web Running and Ready", pod_ready, self.timeout, edge_log)
        self.step("the result")
        print(self.kubectl("get", "nodes", "-o", "wide").stdout.rstrip())
        print(self.kubectl("get", "pods", "-o", "wide").stdout.rstrip())
        containers = subprocess.run(
            [
                "docker",
                "ps",
                "--filter",
                "label=io.kubeedge-py.pod.name=demo-web",
                "--format",
                "table {{.Names}}\t{{.Image}}\t{{.Status}}",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        print(containers.stdout.rstrip(), flush=True)
        if self.keep:
            print(
                f"\nRunning. Try: {BIN / 'kubectl'} --kubeconfig {self.kubeconfig} get pods -o wide\n"
                "Ctrl-C stops the demo.",
                flush=True,
            )
            try:
                while all(proc.poll() is None for _, proc in self.procs):
                    time.sleep(1)
            except KeyboardInterrupt:
                pass

    def cleanup(self) -> None:
        if any(name == "edgecore" for name, _ in self.procs) and self.kubeconfig.exists():
            try:
                self.kubectl("delete", "-f", str(EXAMPLE), "--ignore-not-found", "--wait=false", check=False)
                wait_until("the pod's deletion", lambda: self.pod() is None, 60)
            except (DemoError, subprocess.SubprocessError) as exc:
                print(f"warning: {exc}", file=sys.stderr)
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=str(REPO / "run" / "demo"))
    parser.add_argument("--node-name", default="demo-edge-1")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds allowed for each waiting step")
    parser.add_argument("--keep", action="store_true", help="keep everything running until Ctrl-C")
    parser.add_argument(
        "--free-ports", action="store_true", help="use free ports instead of 6443/10000/10002"
    )
    args = parser.parse_args()
    os.environ.setdefault("KUBEEDGE_LOG_FORMAT", "text")
    demo = Demo(args)
    try:
        demo.run()
    except DemoError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        demo.cleanup()
    print("demo: done", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
