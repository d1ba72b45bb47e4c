"""The on-device status schema (``/v1``): typed snapshots of everything edgecore reports about itself.

Owns the frozen dataclasses the status API serves and ``edgecore tui`` reads, their JSON codec and their
bounds. Edge modules build these values and publish them on the status board; the server clips and encodes
them; clients decode them with :func:`decode`. This module is pure (no trio, no sockets), so both sides can
import it.

JSON shape: keys are the dataclass field names (snake_case); times are Unix seconds (UTC) as numbers, ``null``
when unknown; enums are their lower-case string values. New fields may be added within ``v1``: decoders ignore
keys they do not know and use defaults for missing ones.

Invariants: a value returned by :func:`clip` holds no list longer than its field's ``max_items`` and no string
longer than :data:`~kubeedge.kit.limits.STATUS_MAX_STRING`; :func:`render` output never exceeds its byte cap.
Failures: :func:`decode` raises :class:`SchemaError` naming the JSON path of the first bad value.
"""

# _items() returns a dataclasses.field() specifier, which ruff cannot see through.

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

from kubeedge.kit import limits

SCHEMA: Final = "v1"
"""The API version; also the first path segment of every endpoint."""

CONTENT_TYPE: Final = "application/json"

POD_UID_LABEL: Final = "io.kubeedge-py.pod.uid"
"""Docker label edged puts on every container of a pod (mirrors edged's runtime labels): how the TUI finds a
pod's containers for its log lines without importing edge code."""

ELLIPSIS: Final = "…"

_T = TypeVar("_T")


class SchemaError(ValueError):
    """A status document does not match the schema; ``path`` is where (``pods[3].containers[0].restarts``)."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path or '<document>'}: {problem}")


def _items(max_items: int) -> Any:
    return dataclasses.field(default=(), metadata={"max_items": max_items})


# --- enums ---------------------------------------------------------------------------------------------------


class LinkState(enum.StrEnum):
    """State of the cloud link (EdgeHub)."""

    CONNECTED = "connected"
    CONNECTING = "connecting"
    DISCONNECTED = "disconnected"
    DISABLED = "disabled"
    """EdgeHub is switched off in the config."""
    UNKNOWN = "unknown"
    """Nothing published yet (EdgeHub not started, or not wired to the board)."""


class ConditionStatus(enum.StrEnum):
    """Kubernetes condition status values."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class ContainerState(enum.StrEnum):
    """Which of the Kubernetes container states a container is in."""

    WAITING = "waiting"
    RUNNING = "running"
    TERMINATED = "terminated"
    UNKNOWN = "unknown"


class ProbeKind(enum.StrEnum):
    """Kubernetes probe kinds."""

    STARTUP = "startup"
    LIVENESS = "liveness"
    READINESS = "readiness"


class ProbeResult(enum.StrEnum):
    """Outcome of the last probe run."""

    SUCCESS = "success"
    FAILURE = "failure"
    UNKNOWN = "unknown"


class DeviceState(enum.StrEnum):
    """Device state as DeviceTwin reports it (upstream's ``online``/``offline``/``unknown``)."""

    ONLINE = "online"
    OFFLINE = "offline"
    UNKNOWN = "unknown"


class Severity(enum.StrEnum):
    """Severity of a recent event."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


# --- node ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NodeCondition:
    """One node condition (``Ready``, ``MemoryPressure`` ...), as edged computes it."""

    type: str
    status: ConditionStatus = ConditionStatus.UNKNOWN
    reason: str = ""
    message: str = ""
    last_transition: float | None = None


@dataclasses.dataclass(frozen=True)
class NodeStatus:
    """Who this node is and which software it runs."""

    name: str = ""
    node_ip: str = ""
    kubeedge_py_version: str = ""
    """Version of the running kubeedge-py."""
    edgecore_version: str = ""
    """``edgecoreVersion`` of edgecore.yaml (the upstream version the config was written for)."""
    python_version: str = ""
    started_at: float | None = None
    """When this edgecore process started."""
    conditions: tuple[NodeCondition, ...] = _items(limits.STATUS_MAX_CONDITIONS)


# --- cloud link ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CertificateStatus:
    """The edge certificate EdgeHub presents, read from its file."""

    path: str = ""
    subject: str = ""
    not_after: float | None = None
    """Expiry (the certificate's notAfter)."""
    error: str = ""
    """Why the file could not be read ("" when it was)."""


@dataclasses.dataclass(frozen=True)
class LinkStatus:
    """The cloud link (EdgeHub)."""

    state: LinkState = LinkState.UNKNOWN
    server: str = ""
    """CloudHub ``host:port``."""
    since: float | None = None
    """When ``state`` was entered: connected since, or offline since."""
    last_heartbeat_rtt_ms: float | None = None
    """Round trip of the last keepalive that was answered."""
    last_heartbeat_at: float | None = None
    reconnects: int = 0
    """Dials after the first one since edgecore started."""
    last_error: str = ""
    certificate: CertificateStatus = CertificateStatus()


# --- pods ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Probe:
    """The last result of one probe of a container."""

    kind: ProbeKind
    result: ProbeResult = ProbeResult.UNKNOWN
    message: str = ""
    at: float | None = None


@dataclasses.dataclass(frozen=True)
class ContainerStatus:
    """One container of a pod."""

    name: str
    image: str = ""
    init: bool = False
    state: ContainerState = ContainerState.UNKNOWN
    reason: str = ""
    """Waiting/terminated reason (``CrashLoopBackOff``, ``Completed`` ...)."""
    ready: bool = False
    restarts: int = 0
    started_at: float | None = None
    last_termination_reason: str = ""
    last_exit_code: int | None = None
    container_id: str = ""
    probes: tuple[Probe, ...] = _items(limits.STATUS_MAX_CONDITIONS)


@dataclasses.dataclass(frozen=True)
class PodStatus:
    """One pod edged runs."""

    uid: str
    namespace: str
    name: str
    phase: str = "Unknown"
    """Kubernetes pod phase: Pending, Running, Succeeded, Failed, Unknown."""
    ready: bool = False
    static: bool = False
    pod_ip: str = ""
    started_at: float | None = None
    reason: str = ""
    message: str = ""
    containers: tuple[ContainerStatus, ...] = _items(limits.STATUS_MAX_CONTAINERS)

    @property
    def restarts(self) -> int:
        """Restarts of all containers together."""
        return sum(c.restarts for c in self.containers)

    @property
    def ready_count(self) -> tuple[int, int]:
        """(ready, total) app containers, as ``kubectl get pods`` shows them."""
        apps = [c for c in self.containers if not c.init]
        return sum(c.ready for c in apps), len(apps)


# --- devices -------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TwinStatus:
    """One twin property of a device: what the cloud wants and what the device reports (strings, as upstream)."""

    name: str
    """The property name (upstream's twin key)."""
    expected: str | None = None
    actual: str | None = None
    expected_at: float | None = None
    actual_at: float | None = None

    @property
    def in_sync(self) -> bool:
        """Whether the device reports what the cloud expects (a twin without an expectation is in sync)."""
        return self.expected is None or self.expected == self.actual


@dataclasses.dataclass(frozen=True)
class DeviceStatus:
    """One device DeviceTwin knows."""

    id: str
    name: str = ""
    namespace: str = ""
    model: str = ""
    protocol: str = ""
    state: DeviceState = DeviceState.UNKNOWN
    last_report: float | None = None
    """When the device (its mapper) last reported anything."""
    twins: tuple[TwinStatus, ...] = _items(limits.STATUS_MAX_TWINS)


# --- MQTT and MetaManager ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MqttStatus:
    """EventBus and its broker."""

    enabled: bool = False
    mode: str = ""
    """``internal``, ``both`` or ``external`` (eventBus.mqttMode 0/1/2)."""
    broker: str = ""
    connected: bool = False
    messages_in: int = 0
    messages_out: int = 0
    last_error: str = ""


@dataclasses.dataclass(frozen=True)
class MetaStatus:
    """MetaManager and its database."""

    enabled: bool = False
    db_path: str = ""
    db_bytes: int | None = None
    """Size of edgecore.db plus its WAL; ``null`` when it could not be read."""
    connected: bool = False
    """Whether MetaManager last heard ``cloud_connected``."""
    pending_acks: int | None = None
    """Messages waiting in MetaManager's inbox (cloud messages, and edged requests which share it) plus cloud
    messages being written: received but not yet durably stored and acked; ``null`` when not reported."""
    outbox: int | None = None
    """Edge-to-cloud messages queued while offline; ``null`` when not reported."""
    acked: int = 0
    commits: int = 0
    drained: int = 0
    error: str = ""


# --- events and the whole document ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Event:
    """One recent event or warning a module appended to the board's ring buffer."""

    at: float
    severity: Severity
    source: str
    """Module that reported it (``edgehub``, ``edged``, ``twin`` ...)."""
    reason: str
    """Short CamelCase reason, as Kubernetes events have (``CloudDisconnected``, ``BackOff``)."""
    message: str = ""
    object: str = ""
    """What it is about (``pod default/web``, ``device thermo-1``), "" for the node."""


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """``GET /v1/status``: everything at once."""

    schema: str = SCHEMA
    generated_at: float = 0.0
    node: NodeStatus = NodeStatus()
    link: LinkStatus = LinkStatus()
    pods: tuple[PodStatus, ...] = _items(limits.STATUS_MAX_PODS)
    devices: tuple[DeviceStatus, ...] = _items(limits.STATUS_MAX_DEVICES)
    mqtt: MqttStatus = MqttStatus()
    meta: MetaStatus = MetaStatus()
    events: tuple[Event, ...] = _items(limits.STATUS_EVENTS)
    truncated: tuple[str, ...] = ()
    """Lists (``pods``, ``events`` ...) that were cut to fit the bounds; empty when the document is complete."""


@dataclasses.dataclass(frozen=True)
class PodList:
    """``GET /v1/pods``."""

    schema: str = SCHEMA
    generated_at: float = 0.0
    pods: tuple[PodStatus, ...] = _items(limits.STATUS_MAX_PODS)
    truncated: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class DeviceList:
    """``GET /v1/devices``."""

    schema: str = SCHEMA
    generated_at: float = 0.0
    devices: tuple[DeviceStatus, ...] = _items(limits.STATUS_MAX_DEVICES)
    truncated: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class LinkReport:
    """``GET /v1/link``."""

    schema: str = SCHEMA
    generated_at: float = 0.0
    link: LinkStatus = LinkStatus()
    truncated: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class EventList:
    """``GET /v1/events`` (oldest first)."""

    schema: str = SCHEMA
    generated_at: float = 0.0
    events: tuple[Event, ...] = _items(limits.STATUS_EVENTS)
    truncated: tuple[str, ...] = ()


Document = Snapshot | PodList | DeviceList | LinkReport | EventList

ENDPOINTS: Final[dict[str, type[Any]]] = {
    f"/{SCHEMA}/status": Snapshot,
    f"/{SCHEMA}/pods": PodList,
    f"/{SCHEMA}/devices": DeviceList,
    f"/{SCHEMA}/link": LinkReport,
    f"/{SCHEMA}/events": EventList,
}
"""Every path the status API serves, with the document type it returns."""


def documents(snap: Snapshot) -> dict[str, Document]:
    """Every endpoint's document, cut from one snapshot."""
    at = snap.generated_at
    return {
        f"/{SCHEMA}/status": snap,
        f"/{SCHEMA}/pods": PodList(pods=snap.pods, generated_at=at),
        f"/{SCHEMA}/devices": DeviceList(devices=snap.devices, generated_at=at),
        f"/{SCHEMA}/link": LinkReport(link=snap.link, generated_at=at),
        f"/{SCHEMA}/events": EventList(events=snap.events, generated_at=at),
    }


# --- codec ---------------------------------------------------------------------------------------------------


def encode(value: Any) -> Any:
    """A dataclass tree as plain JSON values (dicts, lists, strings, numbers, ``None``)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    return value


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _hints(cls: type[Any]) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _decode(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is types.UnionType or origin is typing.Union:
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        (inner,) = [o for o in options if o is not type(None)]
        return _decode(inner, value, path)
    if origin is tuple:
        if not isinstance(value, list):
            raise SchemaError(path, f"expected a list, got {_kind(value)}")
        (inner, _ellipsis) = typing.get_args(tp)
        return tuple(_decode(inner, v, f"{path}[{i}]") for i, v in enumerate(value))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _decode_object(tp, value, path)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            allowed = ", ".join(str(m.value) for m in tp)
            raise SchemaError(path, f"expected one of {allowed}, got {value!r}") from None
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise SchemaError(path, f"expected a number, got {_kind(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise SchemaError(path, f"expected an integer, got {_kind(value)}")
    if tp is bool or tp is str:
        if type(value) is tp:
            return value
        raise SchemaError(path, f"expected a {'boolean' if tp is bool else 'string'}, got {_kind(value)}")
    raise TypeError(f"status schema has an unsupported field type {tp!r} at {path}")


def _decode_object(cls: type[_T], value: Any, path: str) -> _T:
    if not isinstance(value, dict):
        raise SchemaError(path, f"expected an object, got {_kind(value)}")
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        here = f"{path}.{f.name}" if path else f.name
        if f.name not in value:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise SchemaError(here, "missing")
            continue
        kwargs[f.name] = _decode(hints[f.name], value[f.name], here)
    return cls(**kwargs)


def decode(cls: type[_T], data: Any) -> _T:
    """Build ``cls`` (a schema dataclass) from parsed JSON; raises :class:`SchemaError` on a mismatch."""
    return _decode_object(cls, data, "")


def loads(cls: type[_T], body: bytes) -> _T:
    """Parse and decode a JSON body; raises :class:`SchemaError` (also for bad JSON or a foreign schema)."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError("", f"not JSON: {exc}") from None
    if isinstance(data, dict) and data.get("schema") != SCHEMA:
        raise SchemaError("schema", f"expected {SCHEMA!r}, got {data.get('schema')!r}")
    return decode(cls, data)


# --- bounds --------------------------------------------------------------------------------------------------


def clip_text(text: str, limit: int = limits.STATUS_MAX_STRING) -> str:
    """``text`` cut to ``limit`` characters, the last one an ellipsis when it was cut."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def _clip_value(value: Any, max_items: int | None, cut: Callable[[], None]) -> Any:
    if isinstance(value, str):
        return clip_text(value)
    if isinstance(value, tuple):
        if max_items is not None and len(value) > max_items:
            value = value[-max_items:] if _keeps_newest(value) else value[:max_items]
            cut()
        return tuple(_clip_value(v, None, cut) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _clip_object(value, cut)
    return value


def _keeps_newest(items: tuple[Any, ...]) -> bool:
    # Events are oldest first: when there are too many, the newest matter.
    return bool(items) and isinstance(items[0], Event)


def _clip_object(obj: _T, cut: Callable[[], None]) -> _T:
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        old = getattr(obj, f.name)
        new = _clip_value(old, f.metadata.get("max_items"), cut)
        if new is not old and new != old:
            changes[f.name] = new
    return dataclasses.replace(obj, **changes) if changes else obj  # type: ignore[type-var]


def clip(doc: _T) -> _T:
    """``doc`` with every list cut to its ``max_items`` and every string to ``STATUS_MAX_STRING``.

    A document whose lists were cut names the top-level lists in its ``truncated`` field.
    """
    names: list[str] = []
    fields = {f.name: f for f in dataclasses.fields(doc)}  # type: ignore[arg-type]
    changes: dict[str, Any] = {}
    for name, f in fields.items():
        was_cut = False

        def mark() -> None:
            nonlocal was_cut
            was_cut = True

        old = getattr(doc, name)
        new = _clip_value(old, f.metadata.get("max_items"), mark)
        if new is not old:
            changes[name] = new
        if was_cut:
            names.append(name)
    if names and "truncated" in fields:
        changes["truncated"] = tuple(sorted({*typing.cast(Any, doc).truncated, *names}))
    return dataclasses.replace(doc, **changes) if changes else doc  # type: ignore[type-var]


def _dumps(doc: Any) -> bytes:
    return json.dumps(encode(doc), ensure_ascii=False, separators=(",", ":")).encode()


def render(doc: Any, max_bytes: int = limits.STATUS_MAX_RESPONSE_BYTES) -> bytes:
    """``doc`` clipped and encoded as compact UTF-8 JSON of at most ``max_bytes`` bytes.

    While the body is too big, the longest top-level list loses its older half (events) or its tail (others)
    and is named in ``truncated``. A document that cannot fit even with every list empty raises ValueError.
    """
    doc = clip(doc)
    body = _dumps(doc)
    lists = [f.name for f in dataclasses.fields(doc) if "max_items" in f.metadata]
    # Each round halves one list, so 64 rounds empty lists far longer than any max_items.
    for _ in range(64):
        if len(body) <= max_bytes:
            return body
        longest = max(lists, key=lambda n: len(getattr(doc, n)), default=None)
        if longest is None or not getattr(doc, longest):
            break
        items: Sequence[Any] = getattr(doc, longest)
        keep = len(items) // 2
        kept = tuple(items[len(items) - keep :]) if _keeps_newest(tuple(items)) else tuple(items[:keep])
        doc = dataclasses.replace(
            doc, **{longest: kept, "truncated": tuple(sorted({*doc.truncated, longest}))}
        )
        body = _dumps(doc)
    if len(body) > max_bytes:
        raise ValueError(f"status document does not fit in {max_bytes} bytes even with its lists emptied")
    return body
