"""Collectors that fill the status board from sources edgecore already has: config, cert file, MetaManager, pods.

Owns the translation from those sources into :mod:`kubeedge.kit.status` values: node identity from
edgecore.yaml, certificate expiry read from ``edgeHub.tlsCertFile``, MetaManager counters and the size of
edgecore.db, baseline link/MQTT sections from the config, EventBus's connection state and counters,
DeviceTwin's devices and twins (read from its tables in edgecore.db), and Kubernetes pod status JSON (what
edged's pod manager emits) into :class:`~kubeedge.kit.status.PodStatus`.

Invariants: file and database reads are bounded (:data:`~kubeedge.kit.limits.PKI_MAX_FILE_BYTES`,
``STATUS_MAX_DEVICES``/``STATUS_MAX_TWINS`` rows) and run in a worker thread; the certificate is re-read only when its file changes. Failures: a missing or unreadable certificate
or database is reported in its section's ``error`` field, never raised; anything else a provider raises is
handled by :meth:`StatusBoard.refresh`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import socket
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Protocol

import trio
from cryptography import x509

import kubeedge
from kubeedge.edge.status.board import StatusBoard
from kubeedge.kit import limits
from kubeedge.kit import status as s
from kubeedge.kit.config.edgecore import EdgeCoreConfig

MQTT_MODES = {0: "internal", 1: "both", 2: "external"}
"""``eventBus.mqttMode`` values by name."""


def node_name(cfg: EdgeCoreConfig) -> str:
    """The node name edgecore registers: ``edged.hostnameOverride`` or the lowercased hostname (upstream's rule)."""
    return cfg.modules.edged.hostname_override or socket.gethostname().lower()


def node_identity(cfg: EdgeCoreConfig, *, started_at: float) -> s.NodeStatus:
    """Who this node is and what it runs, from the config and the process."""
    return s.NodeStatus(
        name=node_name(cfg),
        node_ip=cfg.modules.edged.node_ip,
        kubeedge_py_version=kubeedge.__version__,
        edgecore_version=cfg.edgecore_version,
        python_version=platform.python_version(),
        started_at=started_at,
    )


def configured_link(cfg: EdgeCoreConfig) -> s.LinkStatus:
    """The link section before EdgeHub publishes: the configured server, ``disabled`` when EdgeHub is off."""
    hub = cfg.modules.edge_hub
    state = s.LinkState.UNKNOWN if hub.enable else s.LinkState.DISABLED
    return s.LinkStatus(state=state, server=hub.websocket.server)


def configured_mqtt(cfg: EdgeCoreConfig) -> s.MqttStatus:
    """The MQTT section before EventBus publishes: mode and broker from ``eventBus``."""
    bus = cfg.modules.event_bus
    broker = bus.mqtt_server_internal if bus.mqtt_mode == 0 else bus.mqtt_server_external
    return s.MqttStatus(enabled=bus.enable, mode=MQTT_MODES[bus.mqtt_mode], broker=broker)


def board_from_config(
    cfg: EdgeCoreConfig, *, started_at: float, clock: Callable[[], float] = time.time
) -> StatusBoard:
    """A board pre-filled from edgecore.yaml: node identity, configured link and MQTT, MetaManager's database
    path, and the certificate provider on ``edgeHub.tlsCertFile``. Modules then publish on it; add the
    MetaManager provider once MetaManager runs (``board.add_provider("metamanager", MetaProvider(...))``)."""
    board = StatusBoard(clock=clock)
    board.node = node_identity(cfg, started_at=started_at)
    board.link = configured_link(cfg)
    board.mqtt = configured_mqtt(cfg)
    board.meta = s.MetaStatus(enabled=cfg.modules.meta_manager.enable, db_path=cfg.database.data_source)
    if cfg.modules.edge_hub.enable:
        board.add_provider("certificate", CertificateProvider(cfg.modules.edge_hub.tls_cert_file))
    return board


# --- certificate ---------------------------------------------------------------------------------------------


def read_certificate(path: str) -> s.CertificateStatus:
    """Subject and notAfter of the first certificate in the PEM file ``path``; problems go in ``error``."""
    try:
        with open(path, "rb") as f:
            data = f.read(limits.PKI_MAX_FILE_BYTES + 1)
    except OSError as exc:
        return s.CertificateStatus(path=path, error=exc.strerror or str(exc))
    if len(data) > limits.PKI_MAX_FILE_BYTES:
        return s.CertificateStatus(path=path, error=f"larger than {limits.PKI_MAX_FILE_BYTES} bytes")
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        return s.CertificateStatus(path=path, error=f"not a PEM certificate: {exc}")
    return s.CertificateStatus(
        path=path,
        subject=cert.subject.rfc4514_string(),
        not_after=cert.not_valid_after_utc.timestamp(),
    )


class CertificateProvider:
    """Keeps ``board.certificate`` current with the file at ``path`` (re-read when its mtime or size change)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._seen: tuple[int, int] | None = None

    async def __call__(self, board: StatusBoard) -> None:
        try:
            st = os.stat(self.path)
            key: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except OSError:
            key = None
        if key is not None and key == self._seen:
            return
        board.certificate = await trio.to_thread.run_sync(read_certificate, self.path)
        self._seen = key


# --- MetaManager ---------------------------------------------------------------------------------------------


class _OutboxStore(Protocol):
    def outbox_len(self) -> int: ...


class MetaSource(Protocol):
    """What the MetaManager provider reads (``kubeedge.edge.metamanager.MetaManager`` has all of it)."""

    @property
    def connected(self) -> bool: ...

    @property
    def outbox_pending(self) -> bool: ...

    @property
    def store(self) -> _OutboxStore: ...

    stats: dict[str, int]


def database_bytes(path: str) -> int | None:
    """Size of the SQLite file plus its WAL, ``None`` when the file is missing."""
    try:
        size = os.stat(path).st_size
    except OSError:
        return None
    with contextlib.suppress(OSError):
        size += os.stat(path + "-wal").st_size
    return size


class MetaProvider:
    """Fills ``board.meta`` from a running MetaManager and the size of its database file.

    ``pending_acks`` (optional) returns how many cloud messages wait to be stored and acked: edgecore wires
    it to ``MetaManager.pending_acks`` (its inbox backlog, which edged's requests share, plus the cloud
    messages of the batch being written). ``outbox`` counts the edge-to-cloud messages queued while offline.
    """

    def __init__(
        self, manager: MetaSource, db_path: str, *, pending_acks: Callable[[], int] | None = None
    ) -> None:
        self.manager = manager
        self.db_path = db_path
        self.pending_acks = pending_acks

    async def __call__(self, board: StatusBoard) -> None:
        m = self.manager
        error = ""
        outbox: int | None = None
        if m.outbox_pending:
            try:
                # The store serialises callers with a lock and may be inside a commit: never block trio on it.
                outbox = await trio.to_thread.run_sync(m.store.outbox_len)
            except Exception as exc:  # the store's own errors name the file
                error = str(exc)
        else:
            outbox = 0
        size = await trio.to_thread.run_sync(database_bytes, self.db_path)
        board.meta = s.MetaStatus(
            enabled=True,
            db_path=self.db_path,
            db_bytes=size,
            connected=m.connected,
            pending_acks=self.pending_acks() if self.pending_acks is not None else None,
            outbox=outbox,
            acked=m.stats.get("acked", 0),
            commits=m.stats.get("commits", 0),
            drained=m.stats.get("drained", 0),
            error=error or ("" if size is not None else f"{self.db_path}: no such file"),
        )


# --- EventBus (MQTT) ----------------------------------------------------------------------------------------


class MqttLink(Protocol):
    """What the MQTT provider reads of one EventBus broker link."""

    @property
    def name(self) -> str: ...
    @property
    def sub(self) -> object | None: ...
    @property
    def pub_connected(self) -> bool: ...
    @property
    def last_error(self) -> str: ...


class MqttSource(Protocol):
    """What the MQTT provider reads (``kubeedge.edge.eventbus.eventbus.EventBus`` has all of it)."""

    @property
    def messages_in(self) -> int: ...
    @property
    def messages_out(self) -> int: ...
    @property
    def links(self) -> Sequence[MqttLink]: ...


class MqttProvider:
    """Keeps ``board.mqtt`` current with a running EventBus: connected (every link's sub and pub connection
    up), messages in/out, last error; mode and broker stay as the config says. A change of ``connected``
    appends an ``MqttConnected``/``MqttDisconnected`` event."""

    def __init__(self, bus: MqttSource) -> None:
        self.bus = bus
        self._was: bool | None = None

    async def __call__(self, board: StatusBoard) -> None:
        links = list(self.bus.links)
        connected = bool(links) and all(x.sub is not None and x.pub_connected for x in links)
        errors = [f"{x.name} broker: {x.last_error}" for x in links if x.last_error]
        last_error = "; ".join(errors) or board.mqtt.last_error
        board.mqtt = dataclasses.replace(
            board.mqtt,
            connected=connected,
            messages_in=self.bus.messages_in,
            messages_out=self.bus.messages_out,
            last_error=last_error,
        )
        if connected != self._was and (connected or self._was is not None):
            if connected:
                board.event(s.Severity.INFO, "eventbus", "MqttConnected", board.mqtt.broker)
            else:
                board.event(
                    s.Severity.WARNING, "eventbus", "MqttDisconnected", last_error or board.mqtt.broker
                )
        self._was = connected


# --- DeviceTwin ----------------------------------------------------------------------------------------------

_DEVICE_SQL: Final = "SELECT id, name, state, last_online FROM device ORDER BY id LIMIT ?"
# Window functions keep the answer bounded however many twins a device has (SQLite >= 3.25).
_TWIN_SQL: Final = """
SELECT deviceid, name, expected, actual, expected_meta, actual_meta FROM (
    SELECT t.*, row_number() OVER (PARTITION BY t.deviceid ORDER BY t.name) AS n
    FROM device_twin AS t
    WHERE t.deviceid IN (SELECT id FROM device ORDER BY id LIMIT ?)
) WHERE n <= ? ORDER BY deviceid, name
"""


def _meta_seconds(text: str | None) -> float | None:
    """The ``{"timestamp": <Unix ms>}`` twin metadata DeviceTwin stores, as Unix seconds (None if absent/0)."""
    try:
        ms = json.loads(text).get("timestamp") if text else None
    except (ValueError, AttributeError):
        return None
    return ms / 1000 if isinstance(ms, int | float) and not isinstance(ms, bool) and ms > 0 else None


def _device_state(text: str | None) -> s.DeviceState:
    state = (text or "").lower()
    if state in ("online", "ok"):  # upstream treats "ok" as online too
        return s.DeviceState.ONLINE
    return s.DeviceState.OFFLINE if state == "offline" else s.DeviceState.UNKNOWN


def read_devices(
    path: str,
    *,
    max_devices: int = limits.STATUS_MAX_DEVICES,
    max_twins: int = limits.STATUS_MAX_TWINS,
) -> list[s.DeviceStatus]:
    """The devices DeviceTwin keeps in edgecore.db (upstream's ``device`` and ``device_twin`` tables), by id.

    Reads at most ``max_devices + 1`` devices and ``max_twins + 1`` twins per device, so that the status
    document can say it was cut. ``last_report`` is the newest of the reported (actual) twin values' times
    and the device's last online time. A database without those tables (DeviceTwin never ran) has no devices.
    Raises :class:`sqlite3.Error` for any other database problem.
    """
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=limits.STATUS_REQUEST_TIMEOUT)
    except sqlite3.OperationalError:
        if not os.path.exists(path):
            return []
        raise
    try:
        try:
            rows = conn.execute(_DEVICE_SQL, (max_devices + 1,)).fetchall()
            twin_rows = conn.execute(_TWIN_SQL, (max_devices + 1, max_twins + 1)).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
    finally:
        conn.close()
    twins: dict[str, list[s.TwinStatus]] = {}
    for device_id, name, expected, actual, expected_meta, actual_meta in twin_rows:
        twins.setdefault(device_id, []).append(
            s.TwinStatus(
                name=str(name),
                expected=expected,
                actual=actual,
                expected_at=_meta_seconds(expected_meta) if expected is not None else None,
                actual_at=_meta_seconds(actual_meta) if actual is not None else None,
            )
        )
    devices = []
    for device_id, name, state, last_online in rows:
        own = tuple(twins.get(device_id, ()))
        times = [t.actual_at for t in own if t.actual_at is not None]
        online = parse_time(last_online)
        if online is not None:
            times.append(online)
        namespace, _, short = str(device_id).rpartition("/")
        devices.append(
            s.DeviceStatus(
                id=str(device_id),
                name=str(name or short),
                namespace=namespace,
                state=_device_state(state),
                last_report=max(times, default=None),
                twins=own,
            )
        )
    return devices


class DeviceProvider:
    """Keeps ``board.devices`` current with what DeviceTwin has committed to edgecore.db.

    Reads the database on its own read-only connection (WAL readers never wait for DeviceTwin's writer), so
    the board shows exactly what DeviceTwin has made durable and answers mappers from, also while DeviceTwin
    restarts. A device whose state changes appends an event (``DeviceOnline``/``DeviceOffline``).
    Model and protocol are not kept in those tables and stay empty.
    """

    def __init__(self, db_path: str) -> None:
        self.db_path = db_path

    async def __call__(self, board: StatusBoard) -> None:
        devices = await trio.to_thread.run_sync(read_devices, self.db_path)
        before = {d.id: d.state for d in board.devices}
        for d in devices:
            was = before.get(d.id)
            if was is not None and was != d.state and d.state is not s.DeviceState.UNKNOWN:
                online = d.state is s.DeviceState.ONLINE
                board.event(
                    s.Severity.INFO if online else s.Severity.WARNING,
                    "twin",
                    "DeviceOnline" if online else "DeviceOffline",
                    obj=f"device {d.id}",
                )
        board.devices = tuple(devices)


# --- pods ----------------------------------------------------------------------------------------------------


def parse_time(value: Any) -> float | None:
    """A Kubernetes RFC 3339 time (``2026-11-27T06:00:00Z``) as Unix seconds; ``None`` if absent or malformed."""
    if not isinstance(value, str) or not value:
        return None
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def _container(raw: Mapping[str, Any], *, init: bool) -> s.ContainerStatus:
    state = raw.get("state") or {}
    kind, detail = next(iter(state.items()), ("unknown", {}))
    detail = detail if isinstance(detail, Mapping) else {}
    last = (raw.get("lastState") or {}).get("terminated") or {}
    exit_code = last.get("exitCode")
    try:
        container_state = s.ContainerState(kind)
    except ValueError:
        container_state = s.ContainerState.UNKNOWN
    return s.ContainerStatus(
        name=str(raw.get("name", "")),
        image=str(raw.get("image", "")),
        init=init,
        state=container_state,
        reason=str(detail.get("reason", "")),
        ready=bool(raw.get("ready", False)),
        restarts=int(raw.get("restartCount", 0) or 0),
        started_at=parse_time(detail.get("startedAt")),
        last_termination_reason=str(last.get("reason", "")),
        last_exit_code=exit_code if isinstance(exit_code, int) else None,
        container_id=str(raw.get("containerID", "")),
    )


def pod_from_kubernetes(
    uid: str,
    namespace: str,
    name: str,
    status: Mapping[str, Any],
    *,
    static: bool = False,
    probes: Mapping[str, tuple[s.Probe, ...]] | None = None,
) -> s.PodStatus:
    """A :class:`~kubeedge.kit.status.PodStatus` from a Kubernetes pod ``status`` JSON (edged's status reports).

    ``probes`` maps container names to their last probe results, which Kubernetes statuses do not carry.
    """
    containers = [_container(c, init=True) for c in status.get("initContainerStatuses") or ()]
    containers += [_container(c, init=False) for c in status.get("containerStatuses") or ()]
    if probes:
        containers = [dataclasses.replace(c, probes=probes.get(c.name, ())) for c in containers]
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or ()
    )
    return s.PodStatus(
        uid=uid,
        namespace=namespace,
        name=name,
        phase=str(status.get("phase", "Unknown")),
        ready=ready,
        static=static,
        pod_ip=str(status.get("podIP", "")),
        started_at=parse_time(status.get("startTime")),
        reason=str(status.get("reason", "")),
        message=str(status.get("message", "")),
        containers=tuple(containers),
    )


def publish_pod(board: StatusBoard, pod: s.PodStatus | None, *, uid: str) -> None:
    """Put ``pod`` on the board in place of the pod with ``uid`` (kept in order), or remove it when ``pod`` is
    ``None``: what edged does with each of its status reports (a report with ``status=None`` removes the pod)."""
    pods = list(board.pods)
    index = next((i for i, p in enumerate(pods) if p.uid == uid), None)
    if pod is None:
        if index is not None:
            del pods[index]
    elif index is None:
        pods.append(pod)
    else:
        pods[index] = pod
    board.pods = tuple(pods)
