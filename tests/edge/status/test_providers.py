"""Collectors on real sources: a certificate issued by the KubeEdge CA, a running MetaManager on a real
edgecore.db, edgecore.yaml, and Kubernetes pod status JSON as edged emits it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import platform
from pathlib import Path
from typing import Any

import pytest
import trio

import kubeedge
from kubeedge.edge.metamanager import store as st
from kubeedge.edge.status import providers
from kubeedge.edge.status.board import StatusBoard
from kubeedge.edge.status.server import StatusModule
from kubeedge.kit import beehive, config, limits, pki
from kubeedge.kit import status as s
from tests.edge.metamanager.conftest import run_manager
from tests.edge.metamanager.test_manager import connect, edged_msg, until

from .conftest import DEADLINE, get, serving


def issue_edge_cert(path: Path, *, days: int) -> float:
    now = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    ca = pki.new_ca(now=now)
    key = pki.new_key()
    csr = pki.new_node_csr(key, "edge-rpi-07")
    cert = ca.sign_csr(csr, now=now, validity=dt.timedelta(days=days))
    path.write_bytes(pki.cert_to_pem(cert))
    return cert.not_valid_after_utc.timestamp()


async def test_certificate_expiry_is_read_from_the_file_and_reread_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "server.crt"
    first = issue_edge_cert(path, days=365)
    provider = providers.CertificateProvider(str(path))
    board = StatusBoard()
    await provider(board)
    assert board.certificate.not_after == first
    assert board.certificate.path == str(path)
    assert "edge-rpi-07" in board.certificate.subject
    assert board.certificate.error == ""
    renewed = issue_edge_cert(path, days=30)
    os.utime(path, ns=(1, 1))  # a different mtime, whatever the filesystem's resolution
    await provider(board)
    assert board.certificate.not_after == renewed != first


async def test_certificate_problems_are_reported_not_raised(tmp_path: Path) -> None:
    board = StatusBoard()
    await providers.CertificateProvider(str(tmp_path / "missing.crt"))(board)
    assert board.certificate.error == "No such file or directory"
    assert board.certificate.not_after is None
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    await providers.CertificateProvider(str(garbage))(board)
    assert board.certificate.error.startswith("not a PEM certificate")
    huge = tmp_path / "huge.crt"
    huge.write_bytes(b"A" * (limits.PKI_MAX_FILE_BYTES + 1))
    await providers.CertificateProvider(str(huge))(board)
    assert board.certificate.error == f"larger than {limits.PKI_MAX_FILE_BYTES} bytes"


async def test_metamanager_outbox_and_db_size_while_offline_then_drained(tmp_path: Path) -> None:
    db_path = tmp_path / "edgecore.db"
    store = st.MetaStore.open(db_path)
    board = StatusBoard()
    try:
        with trio.fail_after(DEADLINE):
            async with run_manager(store) as r:
                provider = providers.MetaProvider(r.manager, str(db_path), pending_acks=lambda: 0)
                for name in ("a", "b", "a"):  # "a" twice: the newer status supersedes the older
                    await r.inbox.send(edged_msg("patch", f"default/podpatch/{name}", '{"status":{}}'))
                for _ in range(3):
                    await r.edged.receive()
                await provider(board)
                offline = board.meta
                await connect(r)
                for _ in range(2):
                    await r.recv_cloud()
                await until(lambda: not r.manager.outbox_pending)
                await provider(board)
                online = board.meta
    finally:
        store.close()
    assert offline.outbox == 2
    assert offline.connected is False
    assert offline.db_bytes is not None
    assert offline.db_bytes >= os.path.getsize(db_path) > 0
    assert offline.db_path == str(db_path)
    assert offline.pending_acks == 0
    assert online.outbox == 0
    assert online.connected is True
    assert online.drained == 2
    assert online.error == ""


async def test_missing_database_is_reported(tmp_path: Path) -> None:
    class Idle:
        connected = False
        outbox_pending = False
        stats: dict[str, int] = {}  # noqa: RUF012 - a read-only stand-in for MetaManager.stats
        store: Any = None

    board = StatusBoard()
    await providers.MetaProvider(Idle(), str(tmp_path / "none.db"))(board)
    assert board.meta.db_bytes is None
    assert board.meta.pending_acks is None
    assert board.meta.error.endswith("none.db: no such file")


def test_node_identity_and_baselines_come_from_edgecore_yaml() -> None:
    cfg = config.load_edgecore(
        "apiVersion: edgecore.config.kubeedge.io/v1alpha2\nkind: EdgeCore\nedgecoreVersion: v1.20.0\n"
        "modules:\n  edged:\n    hostnameOverride: edge-rpi-07\n    nodeIP: 192.168.50.17\n"
        "  edgeHub:\n    websocket:\n      server: cloud.example.net:10000\n"
        "  eventBus:\n    mqttMode: 0\n"
    )
    node = providers.node_identity(cfg, started_at=123.0)
    assert node == s.NodeStatus(
        name="edge-rpi-07",
        node_ip="192.168.50.17",
        kubeedge_py_version=kubeedge.__version__,
        edgecore_version="v1.20.0",
        python_version=platform.python_version(),
        started_at=123.0,
    )
    assert providers.configured_link(cfg) == s.LinkStatus(s.LinkState.UNKNOWN, "cloud.example.net:10000")
    assert providers.configured_mqtt(cfg) == s.MqttStatus(True, "internal", "tcp://127.0.0.1:1884")
    hubless = config.load_edgecore("modules:\n  edgeHub:\n    enable: false\n")
    assert providers.configured_link(hubless).state is s.LinkState.DISABLED
    assert cfg.modules.status_server.socket_path == "/var/run/kubeedge/edgecore-status.sock"
    assert cfg.modules.status_server.group == "root"


def test_pod_status_from_kubernetes_json() -> None:
    status = {
        "phase": "Running",
        "podIP": "172.17.0.5",
        "startTime": "2026-11-18T06:46:40Z",
        "conditions": [{"type": "Ready", "status": "False"}],
        "initContainerStatuses": [
            {
                "name": "wait-broker",
                "image": "busybox",
                "ready": False,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
            }
        ],
        "containerStatuses": [
            {
                "name": "collector",
                "image": "registry.local/collector:2.1",
                "ready": False,
                "restartCount": 14,
                "containerID": "docker://9b2c",
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}},
                "lastState": {"terminated": {"exitCode": 2, "reason": "Error"}},
            }
        ],
    }
    probe = s.Probe(s.ProbeKind.LIVENESS, s.ProbeResult.FAILURE, "HTTP 500", 1.0)
    pod = providers.pod_from_kubernetes(
        "uid-2", "iot", "temp-collector", status, probes={"collector": (probe,)}
    )
    init, app = pod.containers
    assert (pod.phase, pod.ready, pod.pod_ip, pod.restarts, pod.ready_count) == (
        "Running",
        False,
        "172.17.0.5",
        14,
        (0, 1),
    )
    assert pod.started_at == dt.datetime(2026, 11, 18, 6, 46, 40, tzinfo=dt.UTC).timestamp()
    assert (init.init, init.state, init.reason) == (True, s.ContainerState.TERMINATED, "Completed")
    assert (app.state, app.reason, app.last_termination_reason, app.last_exit_code) == (
        s.ContainerState.WAITING,
        "CrashLoopBackOff",
        "Error",
        2,
    )
    assert app.probes == (probe,)
    assert init.probes == ()
    assert providers.pod_from_kubernetes("u", "ns", "n", {}) == s.PodStatus("u", "ns", "n")


async def test_wired_providers_feed_the_api(tmp_path: Path, sock_path: str) -> None:
    cert = tmp_path / "server.crt"
    not_after = issue_edge_cert(cert, days=90)
    board = StatusBoard(clock=lambda: 1_795_000_000.0)
    board.link = dataclasses.replace(s.LinkStatus(), server="cloud:10000", state=s.LinkState.CONNECTING)
    board.add_provider("certificate", providers.CertificateProvider(str(cert)))
    with trio.fail_after(DEADLINE):
        async with serving(board, sock_path):
            link = s.loads(s.LinkReport, (await get(sock_path, "/v1/link")).body).link
    assert link.state is s.LinkState.CONNECTING
    assert link.certificate.not_after == not_after


async def test_status_module_under_beehive_serves_a_board_built_from_config(
    tmp_path: Path, sock_path: str
) -> None:
    cert = tmp_path / "server.crt"
    not_after = issue_edge_cert(cert, days=90)
    cfg = config.load_edgecore(
        "modules:\n"
        "  edged:\n    hostnameOverride: edge-rpi-07\n"
        f"  edgeHub:\n    tlsCertFile: {cert}\n    websocket:\n      server: cloud.example.net:10000\n"
        f"  statusServer:\n    socketPath: {sock_path}\n    group: daemon\n"
    )
    board = providers.board_from_config(cfg, started_at=100.0)
    module = StatusModule.from_config(board, cfg.modules.status_server)
    hive = beehive.Beehive([module])
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            await nursery.start(hive.run)
            while hive.state("status") is not beehive.ModuleState.RUNNING:
                await trio.sleep(0.005)
            doc = s.loads(s.Snapshot, (await get(sock_path, "/v1/status")).body)
            mode = os.stat(sock_path)
            hive.shutdown()
    assert module.name == "status"
    assert doc.node.name == "edge-rpi-07"
    assert doc.node.started_at == 100.0
    assert doc.link.state is s.LinkState.UNKNOWN
    assert doc.link.server == "cloud.example.net:10000"
    assert doc.link.certificate.not_after == not_after
    assert doc.meta.db_path == "/var/lib/kubeedge/edgecore.db"
    assert doc.mqtt.broker == "tcp://127.0.0.1:1883"
    assert (oct(mode.st_mode & 0o777), mode.st_gid) == ("0o660", 1)
    assert not os.path.exists(sock_path)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("modules:\n  statusServer:\n    socketPath: relative.sock\n", "modules.statusServer.socketPath"),
        ("modules:\n  statusServer:\n    group: 'a b'\n", "modules.statusServer.group"),
        ("modules:\n  statusServer:\n    port: 80\n", "modules.statusServer.port"),
    ],
)
def test_status_server_config_is_validated(text: str, key: str) -> None:
    with pytest.raises(config.ConfigError) as info:
        config.load_edgecore(text)
    assert info.value.dotted_path == key


def test_publish_pod_adds_replaces_in_place_and_removes() -> None:
    board = StatusBoard()
    a, b = s.PodStatus("a", "ns", "a"), s.PodStatus("b", "ns", "b")
    providers.publish_pod(board, a, uid="a")
    providers.publish_pod(board, b, uid="b")
    running = dataclasses.replace(a, phase="Running")
    providers.publish_pod(board, running, uid="a")
    assert board.pods == (running, b)
    providers.publish_pod(board, None, uid="a")
    providers.publish_pod(board, None, uid="gone")
    assert board.pods == (b,)
