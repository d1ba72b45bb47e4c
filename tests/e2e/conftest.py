"""Real-process end-to-end fixture: cloudcore, ``keadm join`` and edgecore as subprocesses on one host.

Everything lives under the test's temporary folder: CA and certificates, the embedded API server's data
and kubeconfig, the edge node's config, database and pod folders, and both processes' logs (appended
across restarts, quoted in failure messages). Ports are free loopback ports. The node name is unique per
fixture so that containers can be told apart. Teardown deletes every pod through the API, stops both
processes, then removes any container labelled ``io.kubeedge-py.managed`` whose pod UID belongs to this
fixture, so a failing test leaves nothing behind and nothing else on the host is touched.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from kubeedge.edge.edged import runtime as rt
from kubeedge.edge.edgehub.pacing import RECONNECT_CAP
from tests.conftest import free_port

BIN = Path(sys.executable).parent
STOP_TIMEOUT = 30.0
"""Seconds a process gets to exit after SIGTERM before it is killed (its modules' grace periods fit)."""
LEASE_SECONDS = 8
"""``nodeLeaseDurationSeconds`` of the fixture's edge node."""
T = TypeVar("T")


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log, for failure messages."""
    if not path.exists():
        return f"(no {path.name})"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return f"--- tail of {path.name} ---\n" + "\n".join(text)


def wait_until(what: str, check: Callable[[], T | None], timeout: float, *logs: Path) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` s quoting the logs."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            pytest.fail(
                f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}\n"
                + "\n".join(tail(log) for log in logs)
            )
        time.sleep(0.25)  # polling real processes for a condition, under the deadline above


def docker(*args: str, check: bool = True, host: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI on the real engine scripts/test starts, or on the daemon at ``host``."""
    argv = ["docker", *(("-H", host) if host else ()), *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"docker {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def containers_of(uid: str, *, running_only: bool = True, host: str | None = None) -> dict[str, str]:
    """``{container name label: docker id}`` of the managed containers of pod ``uid`` (on ``host``)."""
    args = ["ps", "--no-trunc", "--filter", f"label={rt.LABEL_POD_UID}={uid}"]
    if not running_only:
        args.append("--all")
    fmt = '{{.ID}} {{.Label "' + rt.LABEL_CONTAINER_NAME + '"}}'
    out = docker(*args, "--format", fmt, host=host).stdout
    found: dict[str, str] = {}
    for line in out.splitlines():
        cid, _, name = line.partition(" ")
        found[name] = cid
    return found


@dataclass
class EdgeCluster:
    """One cloudcore and one joined edgecore, started and stopped as real processes."""

    work: Path
    node: str
    api_port: int = field(default_factory=free_port)
    ws_port: int = field(default_factory=free_port)
    https_port: int = field(default_factory=free_port)
    mqtt_port: int = field(default_factory=free_port)
    servicebus_port: int = field(default_factory=free_port)
    router_port: int = field(default_factory=free_port)
    mqtt_external: str = ""
    """``tcp://host:port`` of a broker for edgecore's EventBus (mqttMode 2); empty: the internal broker."""
    router: bool = False
    """Run cloudcore's Router (REST on :attr:`router_port`) and edgecore's ServiceBus."""
    router_rest_timeout: int = 60
    """``modules.router.restTimeout`` (upstream 60 s)."""
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    uids: set[str] = field(default_factory=set)

    @property
    def kubeconfig(self) -> Path:
        return self.work / "admin.kubeconfig"

    @property
    def cloud_log(self) -> Path:
        return self.work / "cloudcore.log"

    @property
    def edge_log(self) -> Path:
        return self.work / "edgecore.log"

    @property
    def edge_config(self) -> Path:
        return self.work / "edge/config/edgecore.yaml"

    # ------------------------------------------------------------------------------ processes
    def _start(self, name: str, argv: list[str]) -> None:
        log = self.work / f"{name}.log"
        env = {**os.environ, "KUBEEDGE_LOG_FORMAT": "text"}
        with log.open("ab") as out:
            out.write(f"===== start {name} =====\n".encode())
            out.flush()
            self.procs[name] = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env
            )

    def stop(self, name: str) -> int:
        """SIGTERM ``name`` and wait for it to exit; returns its exit code (killed after a deadline)."""
        proc = self.procs.pop(name)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
                pytest.fail(
                    f"{name} did not exit within {STOP_TIMEOUT:.0f} s of SIGTERM\n{tail(self.work / (name + '.log'))}"
                )
        return proc.returncode

    def kill(self, name: str) -> None:
        """SIGKILL ``name`` (a power cut as far as the process can tell) and reap it."""
        proc = self.procs.pop(name)
        proc.kill()
        proc.wait(timeout=10)

    def alive(self, name: str) -> bool:
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{name} exited with code {proc.returncode}\n{tail(self.work / (name + '.log'))}")
        return True

    def start_cloud(self) -> None:
        """Start cloudcore and wait until its API server answers and the join token exists."""
        self._start("cloudcore", [str(BIN / "cloudcore"), "--config", str(self.work / "cloudcore.yaml")])
        wait_until(
            "the API server",
            lambda: self.alive("cloudcore") and self.kubeconfig.exists() and self._readyz(),
            60,
            self.cloud_log,
        )

    def start_edge(self) -> None:
        """Start edgecore (the node is not awaited; see :meth:`wait_node_ready`)."""
        self._start("edgecore", [str(BIN / "edgecore"), "--config", str(self.edge_config)])

    def _readyz(self) -> bool:
        from kubernetes import client, config

        try:
            with config.new_client_from_config(str(self.kubeconfig)) as api:
                client.VersionApi(api).get_code(_request_timeout=5)
                return True
        except Exception:
            return False

    def core(self) -> Any:
        """A ``CoreV1Api`` on the written kubeconfig (a fresh client, so a restarted server is fine)."""
        from kubernetes import client, config

        return client.CoreV1Api(config.new_client_from_config(str(self.kubeconfig)))

    # ------------------------------------------------------------------------------ set-up
    def write_cloud_config(self) -> None:
        w = self.work
        cfg = {
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
                "router": {
                    "enable": self.router,
                    "address": "127.0.0.1",
                    "port": self.router_port,
                    "restTimeout": self.router_rest_timeout,
                },
            },
        }
        (w / "cloudcore.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))

    def join(self) -> None:
        """``keadm gettoken`` + ``keadm join``, then point the edge's folders and bus into the work folder."""
        token_file = self.work / "cloud/tokens/tokendata"
        wait_until(
            "the join token", lambda: self.alive("cloudcore") and token_file.exists(), 30, self.cloud_log
        )
        token = subprocess.run(
            [str(BIN / "keadm"), "gettoken", "--token-file", str(token_file)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
        edge = self.work / "edge"
        joined = subprocess.run(
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
                str(edge),
                "--db-path",
                str(edge / "edgecore.db"),
                "--force",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert joined.returncode == 0, f"keadm join failed: {joined.stderr}"
        cfg = yaml.safe_load(self.edge_config.read_text())
        edged = cfg.setdefault("modules", {}).setdefault("edged", {})
        edged["rootDirectory"] = str(edge / "kubelet")
        kubelet = edged.setdefault("tailoredKubeletConfig", {})
        # Configmap volumes are refreshed on the periodic pod sync; a short period keeps the test short.
        kubelet["syncFrequency"] = "2s"
        # The node Lease is renewed every quarter of its duration: 2 s instead of 10 s keeps the test short.
        kubelet["nodeLeaseDurationSeconds"] = LEASE_SECONDS
        cfg["modules"].setdefault("statusServer", {})["socketPath"] = str(edge / "edgecore-status.sock")
        bus = cfg["modules"].setdefault("eventBus", {})
        if self.mqtt_external:
            bus["mqttMode"] = 2
            bus["mqttServerExternal"] = self.mqtt_external
            # The test broker is shared by the session: client ids must not collide with other fixtures'.
            bus["mqttSubClientID"] = f"hub-client-sub-{self.node}"
            bus["mqttPubClientID"] = f"hub-client-pub-{self.node}"
        else:
            bus["mqttMode"] = 0
            bus["mqttServerInternal"] = f"tcp://127.0.0.1:{self.mqtt_port}"
        if self.router:
            sb = cfg["modules"].setdefault("serviceBus", {})
            sb.update({"enable": True, "server": "127.0.0.1", "port": self.servicebus_port})
        self.edge_config.write_text(yaml.safe_dump(cfg, sort_keys=False))

    # ------------------------------------------------------------------------------ API helpers
    def node_ready(self) -> bool:
        try:
            node = self.core().read_node(self.node)
        except Exception:
            return False
        return any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or []))

    def wait_node_ready(self, timeout: float = 60) -> None:
        def check() -> bool:
            self.alive("edgecore")
            return self.node_ready()

        wait_until(f"node {self.node} Ready", check, timeout, self.edge_log, self.cloud_log)

    def wait_reconnected(self) -> None:
        """Wait until the running edgecore has connected to the cloud since it last started.

        After an outage the Node still says Ready in the API, so that proves nothing; EdgeHub redials on
        its jittered back-off, at most ``RECONNECT_CAP`` seconds after its last attempt.
        """

        def connected() -> bool:
            self.alive("edgecore")
            return (
                "connected to cloud" in self.edge_log.read_text().rsplit("===== start edgecore =====", 1)[1]
            )

        wait_until(
            "edgecore connected to the cloud", connected, RECONNECT_CAP + 30, self.edge_log, self.cloud_log
        )

    def pod(self, name: str) -> Any:
        """The pod as the API has it, or None."""
        from kubernetes.client.exceptions import ApiException

        try:
            pod = self.core().read_namespaced_pod(name, "default")
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        self.uids.add(pod.metadata.uid)
        return pod

    def create(self, manifest: dict[str, Any]) -> Any:
        """Create a pod pinned to this fixture's node; records its UID for teardown."""
        manifest = json.loads(json.dumps(manifest))
        manifest["spec"]["nodeName"] = self.node
        manifest["spec"].setdefault("terminationGracePeriodSeconds", 1)
        pod = self.core().create_namespaced_pod("default", manifest)
        self.uids.add(pod.metadata.uid)
        return pod

    # ------------------------------------------------------------------------------ teardown
    def teardown(self) -> None:
        errors: list[str] = []
        if "cloudcore" in self.procs and self.procs["cloudcore"].poll() is None:
            try:
                core = self.core()
                for pod in core.list_namespaced_pod("default").items:
                    self.uids.add(pod.metadata.uid)
                    core.delete_namespaced_pod(pod.metadata.name, "default")
                if "edgecore" in self.procs and self.procs["edgecore"].poll() is None:
                    deadline = time.monotonic() + 30
                    while core.list_namespaced_pod("default").items and time.monotonic() < deadline:
                        time.sleep(0.25)  # waiting for edged to confirm the deletions, under a deadline
            except Exception as exc:
                errors.append(f"deleting pods: {exc}")
        for name in ("edgecore", "cloudcore"):
            if name in self.procs:
                proc = self.procs.pop(name)
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(timeout=STOP_TIMEOUT)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(timeout=10)
        for uid in self.uids:
            leftovers = containers_of(uid, running_only=False)
            if leftovers:
                docker("rm", "-f", *leftovers.values(), check=False)
        if errors:
            print("e2e teardown:", *errors, sep="\n  ", file=sys.stderr)


def start_edge_cluster(
    work: Path, *, mqtt_external: str = "", router: bool = False, router_rest_timeout: int = 60
) -> EdgeCluster:
    """Start cloudcore, join a uniquely named node and start edgecore; returns once the node is Ready.

    ``mqtt_external`` points edgecore's EventBus at that broker; ``router`` runs cloudcore's Router and
    edgecore's ServiceBus.
    """
    import docker as docker_sdk

    from kubeedge.kit import images

    client = docker_sdk.from_env()
    try:
        images.ensure_busybox_image(client)
    finally:
        client.close()
    (work / "edge").mkdir(parents=True)
    cluster = EdgeCluster(
        work,
        node=f"e2e-{uuid.uuid4().hex[:8]}",
        mqtt_external=mqtt_external,
        router=router,
        router_rest_timeout=router_rest_timeout,
    )
    cluster.write_cloud_config()
    try:
        cluster.start_cloud()
        cluster.join()
        cluster.start_edge()
        cluster.wait_node_ready()
    except BaseException:
        cluster.teardown()
        raise
    return cluster


@pytest.fixture(scope="module")
def edge_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeCluster]:
    """A running cloudcore + edgecore pair shared by a module's tests (which must leave it running)."""
    cluster = start_edge_cluster(tmp_path_factory.mktemp("e2e"))
    try:
        yield cluster
    finally:
        cluster.teardown()
