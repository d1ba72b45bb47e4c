"""Shared by the status-API and TUI tests: a realistic status board at a fixed time, and a real status server
running in its own thread (its own trio loop), as edgecore runs it next to a TUI in another process."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import trio

from kubeedge.edge.status.board import StatusBoard
from kubeedge.edge.status.server import StatusServer
from kubeedge.kit import status as s

NOW = 1_795_000_000.0
"""The fixed wall clock of the deterministic board (2026-11-18T11:06:40Z)."""


def short_socket_dir() -> str:
    """A fresh directory with a short path: unix socket paths are limited to 107 bytes."""
    return tempfile.mkdtemp(prefix="ke-st-", dir="/tmp")


def realistic_board(now: float = NOW) -> StatusBoard:
    """A node running three pods (one crash-looping, one static) and two devices, recently reconnected."""
    board = StatusBoard(clock=lambda: now)
    board.node = s.NodeStatus(
        name="edge-rpi-07",
        node_ip="192.168.50.17",
        kubeedge_py_version="0.1.0",
        edgecore_version="v1.20.0",
        python_version="3.11.7",
        started_at=now - 3 * 86400 - 4 * 3600,
    )
    board.conditions = (
        s.NodeCondition(
            "Ready", s.ConditionStatus.TRUE, "EdgeReady", "edge is posting ready status", now - 7200
        ),
        s.NodeCondition("MemoryPressure", s.ConditionStatus.FALSE, "KubeletHasSufficientMemory"),
        s.NodeCondition("DiskPressure", s.ConditionStatus.FALSE, "KubeletHasNoDiskPressure"),
    )
    board.link = s.LinkStatus(
        state=s.LinkState.CONNECTED,
        server="cloud.example.net:10000",
        since=now - 754,
        last_heartbeat_rtt_ms=23.4,
        last_heartbeat_at=now - 6,
        reconnects=3,
        last_error="read deadline: no frame from cloudhub for 30 s",
    )
    board.certificate = s.CertificateStatus(
        path="/etc/kubeedge/certs/server.crt", subject="CN=edge-rpi-07", not_after=now + 300 * 86400
    )
    http = s.Probe(s.ProbeKind.READINESS, s.ProbeResult.SUCCESS, "", now - 4)
    live = s.Probe(s.ProbeKind.LIVENESS, s.ProbeResult.SUCCESS, "", now - 9)
    board.pods = (
        s.PodStatus(
            uid="5f0c2d1e-1111-4c6b-9a51-0a1b2c3d4e01",
            namespace="default",
            name="nginx-edge",
            phase="Running",
            ready=True,
            pod_ip="172.17.0.4",
            started_at=now - 2 * 86400,
            containers=(
                s.ContainerStatus(
                    "nginx",
                    "nginx:1.27",
                    state=s.ContainerState.RUNNING,
                    ready=True,
                    started_at=now - 2 * 86400,
                    container_id="docker://4a1f",
                    probes=(live, http),
                ),
            ),
        ),
        s.PodStatus(
            uid="5f0c2d1e-2222-4c6b-9a51-0a1b2c3d4e02",
            namespace="iot",
            name="temp-collector",
            phase="Running",
            ready=False,
            pod_ip="172.17.0.5",
            started_at=now - 3600,
            containers=(
                s.ContainerStatus(
                    "wait-broker",
                    "busybox",
                    init=True,
                    state=s.ContainerState.TERMINATED,
                    reason="Completed",
                    ready=False,
                ),
                s.ContainerStatus(
                    "collector",
                    "registry.local/collector:2.1",
                    state=s.ContainerState.WAITING,
                    reason="CrashLoopBackOff",
                    restarts=14,
                    last_termination_reason="Error",
                    last_exit_code=2,
                    probes=(s.Probe(s.ProbeKind.LIVENESS, s.ProbeResult.FAILURE, "HTTP 500", now - 40),),
                ),
            ),
        ),
        s.PodStatus(
            uid="static-kube-vip-edge-rpi-07",
            namespace="kube-system",
            name="kube-vip",
            phase="Running",
            ready=True,
            static=True,
            pod_ip="192.168.50.17",
            started_at=now - 3 * 86400,
            containers=(
                s.ContainerStatus(
                    "kube-vip",
                    "kube-vip:0.8",
                    state=s.ContainerState.RUNNING,
                    ready=True,
                    restarts=1,
                    started_at=now - 3 * 86400,
                    last_termination_reason="OOMKilled",
                    last_exit_code=137,
                ),
            ),
        ),
    )
    board.devices = (
        s.DeviceStatus(
            id="iot/thermo-hall",
            name="thermo-hall",
            namespace="iot",
            model="dht22-model",
            protocol="modbus",
            state=s.DeviceState.ONLINE,
            last_report=now - 3,
            twins=(
                s.TwinStatus("temperature", None, "21.5", None, now - 3),
                s.TwinStatus("target", "22", "22", now - 600, now - 590),
                s.TwinStatus("fan", "on", "off", now - 20, now - 400),
            ),
        ),
        s.DeviceStatus(
            id="iot/door-sensor",
            name="door-sensor",
            namespace="iot",
            model="reed-switch",
            protocol="mqtt",
            state=s.DeviceState.OFFLINE,
            last_report=now - 5400,
            twins=(s.TwinStatus("open", None, "false", None, now - 5400),),
        ),
    )
    board.mqtt = s.MqttStatus(
        enabled=True,
        mode="external",
        broker="tcp://127.0.0.1:1883",
        connected=True,
        messages_in=18234,
        messages_out=912,
    )
    board.meta = s.MetaStatus(
        enabled=True,
        db_path="/var/lib/kubeedge/edgecore.db",
        db_bytes=3_407_872,
        connected=True,
        pending_acks=0,
        outbox=0,
        acked=5120,
        commits=388,
        drained=41,
    )
    for at, sev, src, reason, msg, obj in [
        (
            now - 900,
            s.Severity.WARNING,
            "edgehub",
            "CloudDisconnected",
            "read deadline: no frame for 30 s",
            "",
        ),
        (now - 754, s.Severity.INFO, "edgehub", "CloudConnected", "cloud.example.net:10000", ""),
        (now - 700, s.Severity.INFO, "metamanager", "OutboxDrained", "41 messages sent upstream", ""),
        (
            now - 40,
            s.Severity.WARNING,
            "edged",
            "BackOff",
            "back-off restarting failed container collector",
            "pod iot/temp-collector",
        ),
        (now - 20, s.Severity.INFO, "twin", "TwinUpdated", "fan: expected on", "device iot/thermo-hall"),
    ]:
        board.events.append(s.Event(at, sev, src, reason, msg, obj))
    return board


def offline_board(now: float = NOW) -> StatusBoard:
    """The realistic board with the cloud link down for 5 minutes and upstream messages queued."""
    board = realistic_board(now)
    board.link = dataclasses.replace(
        board.link, state=s.LinkState.DISCONNECTED, since=now - 312, last_error="dial: connection refused"
    )
    board.meta = dataclasses.replace(board.meta, connected=False, outbox=27)
    board.event(s.Severity.ERROR, "edgehub", "CloudDisconnected", "dial: connection refused")
    return board


class ServerThread:
    """A real :class:`StatusServer` serving ``board`` on ``socket_path`` from a trio loop in its own thread."""

    def __init__(self, board: StatusBoard, socket_path: str, group: str = "root") -> None:
        self.board = board
        self.socket_path = socket_path
        self.server = StatusServer(board, socket_path, group=group)
        self._ready = threading.Event()
        self._token: Any = None
        self._scope: trio.CancelScope | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="status-server", daemon=True)

    def _main(self) -> None:
        async def serve() -> None:
            self._token = trio.lowlevel.current_trio_token()
            with trio.CancelScope() as scope:
                self._scope = scope
                async with trio.open_nursery() as nursery:
                    await nursery.start(self.server.serve)
                    self._ready.set()

        try:
            trio.run(serve)
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None:
            raise RuntimeError(f"status server did not start: {self._error!r}")

    def stop(self) -> None:
        if self._token is not None and self._scope is not None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._scope.cancel, trio_token=self._token)
        self._thread.join(10)
        assert not self._thread.is_alive(), "status server thread did not stop"
        if self._error is not None:
            raise self._error


@contextlib.contextmanager
def serving(board: StatusBoard, socket_path: str | None = None) -> Iterator[ServerThread]:
    """Serve ``board`` in a thread for the duration of the block."""
    path = socket_path or os.path.join(short_socket_dir(), "status.sock")
    server = ServerThread(board, path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        with contextlib.suppress(OSError):
            Path(path).parent.rmdir()
