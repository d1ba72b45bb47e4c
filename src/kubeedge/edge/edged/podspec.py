"""The validated pod model edged works from: plain Kubernetes Pod dicts in, frozen dataclasses out.

Pure. :func:`parse_pod` checks everything the runtime relies on (names, images, probes, volume types,
resource quantities) and raises :class:`PodSpecError` whose message names the offending field, so a bad
pod gets a clear status and never reaches the runtime. Parts of the spec edged only passes through
(env, volume sources) stay as the original JSON mappings.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from kubeedge.edge.edged import quantity

DNS_LABEL: Final = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
SUPPORTED_VOLUMES: Final = ("configMap", "secret", "emptyDir", "hostPath", "projected", "downwardAPI")
DEFAULT_GRACE: Final = 30
"""Pod ``terminationGracePeriodSeconds`` default (Kubernetes API default)."""


class PodSpecError(ValueError):
    """The pod cannot be run as written; ``str()`` names the field."""


class RestartPolicy(StrEnum):
    """``spec.restartPolicy``."""

    ALWAYS = "Always"
    ON_FAILURE = "OnFailure"
    NEVER = "Never"


class PullPolicy(StrEnum):
    """``imagePullPolicy``."""

    ALWAYS = "Always"
    IF_NOT_PRESENT = "IfNotPresent"
    NEVER = "Never"


class ProbeKind(StrEnum):
    """The handler of a probe."""

    EXEC = "exec"
    HTTP = "httpGet"
    TCP = "tcpSocket"


@dataclass(frozen=True, slots=True)
class Probe:
    """One liveness/readiness/startup probe with Kubernetes' defaults applied."""

    kind: ProbeKind
    command: tuple[str, ...] = ()
    port: int | str = 0
    host: str = ""
    path: str = "/"
    scheme: str = "HTTP"
    headers: tuple[tuple[str, str], ...] = ()
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3


@dataclass(frozen=True, slots=True)
class Port:
    """A declared container port."""

    container_port: int
    protocol: str = "TCP"
    host_port: int = 0
    name: str = ""
    host_ip: str = ""


@dataclass(frozen=True, slots=True)
class Mount:
    """A ``volumeMounts`` entry."""

    name: str
    mount_path: str
    read_only: bool = False
    sub_path: str = ""


@dataclass(frozen=True, slots=True)
class Container:
    """One (init or app) container."""

    name: str
    image: str
    pull_policy: PullPolicy
    command: tuple[str, ...]
    args: tuple[str, ...]
    working_dir: str
    env: tuple[Mapping[str, Any], ...]
    env_from: tuple[Mapping[str, Any], ...]
    ports: tuple[Port, ...]
    mounts: tuple[Mount, ...]
    cpu_limit_millis: int
    cpu_request_millis: int
    memory_limit_bytes: int
    liveness: Probe | None
    readiness: Probe | None
    startup: Probe | None
    spec_hash: str
    """Hash of the container's JSON: a changed hash means the container must be recreated."""


@dataclass(frozen=True, slots=True)
class Pod:
    """A pod as edged runs it; ``raw`` is the original object."""

    uid: str
    name: str
    namespace: str
    containers: tuple[Container, ...]
    init_containers: tuple[Container, ...]
    volumes: Mapping[str, Mapping[str, Any]]
    """Volume name -> the volume's JSON (with exactly one supported source key)."""
    restart_policy: RestartPolicy
    grace_seconds: int
    host_network: bool
    hostname: str
    raw: Mapping[str, Any]

    @property
    def key(self) -> str:
        """``namespace/name``."""
        return f"{self.namespace}/{self.name}"

    @property
    def deletion_requested(self) -> bool:
        """True when ``metadata.deletionTimestamp`` is set (the pod is being deleted gracefully)."""
        return bool(self.raw.get("metadata", {}).get("deletionTimestamp"))


def _str(obj: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str):
        if value is None and default is None:
            raise PodSpecError(f"{where}.{key}: required")
        raise PodSpecError(f"{where}.{key}: must be a string")
    return value


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PodSpecError(f"{where}: must be a list of strings")
    return tuple(value)


def _int(obj: Mapping[str, Any], key: str, where: str, default: int, minimum: int = 0) -> int:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PodSpecError(f"{where}.{key}: must be an integer >= {minimum}")
    return value


def _port_value(value: Any, where: str) -> int | str:
    if isinstance(value, bool):
        raise PodSpecError(f"{where}: must be a port number or name")
    if isinstance(value, int):
        if not 0 < value < 65536:
            raise PodSpecError(f"{where}: {value} is not a port number")
        return value
    if isinstance(value, str) and value:
        return int(value) if value.isdigit() else value
    raise PodSpecError(f"{where}: must be a port number or name")


def parse_probe(raw: Any, where: str) -> Probe | None:
    """A probe from its JSON; ``None`` when absent."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise PodSpecError(f"{where}: must be an object")
    handlers = [k for k in ("exec", "httpGet", "tcpSocket", "grpc") if k in raw]
    if len(handlers) != 1:
        raise PodSpecError(f"{where}: needs exactly one of exec, httpGet, tcpSocket")
    timing = {
        "initial_delay": float(_int(raw, "initialDelaySeconds", where, 0)),
        "period": float(_int(raw, "periodSeconds", where, 10, 1)),
        "timeout": float(_int(raw, "timeoutSeconds", where, 1, 1)),
        "success_threshold": _int(raw, "successThreshold", where, 1, 1),
        "failure_threshold": _int(raw, "failureThreshold", where, 3, 1),
    }
    handler = raw[handlers[0]]
    if not isinstance(handler, Mapping):
        raise PodSpecError(f"{where}.{handlers[0]}: must be an object")
    if handlers[0] == "exec":
        command = _strings(handler.get("command"), f"{where}.exec.command")
        if not command:
            raise PodSpecError(f"{where}.exec.command: must not be empty")
        return Probe(ProbeKind.EXEC, command=command, **timing)  # type: ignore[arg-type]
    if handlers[0] == "httpGet":
        scheme = _str(handler, "scheme", f"{where}.httpGet", "HTTP")
        if scheme not in ("HTTP", "HTTPS"):
            raise PodSpecError(f"{where}.httpGet.scheme: {scheme!r} is not HTTP or HTTPS")
        headers = []
        for i, header in enumerate(handler.get("httpHeaders") or []):
            if not isinstance(header, Mapping):
                raise PodSpecError(f"{where}.httpGet.httpHeaders[{i}]: must be an object")
            headers.append(
                (
                    _str(header, "name", f"{where}.httpGet.httpHeaders[{i}]"),
                    _str(header, "value", f"{where}.httpGet.httpHeaders[{i}]", ""),
                )
            )
        path = _str(handler, "path", f"{where}.httpGet", "/") or "/"
        if not path.startswith("/") or any(c in path for c in "\r\n "):
            raise PodSpecError(f"{where}.httpGet.path: {path!r} is not an absolute path")
        return Probe(
            ProbeKind.HTTP,
            port=_port_value(handler.get("port"), f"{where}.httpGet.port"),
            host=_str(handler, "host", f"{where}.httpGet", ""),
            path=path,
            scheme=scheme,
            headers=tuple(headers),
            **timing,  # type: ignore[arg-type]
        )
    if handlers[0] == "tcpSocket":
        return Probe(
            ProbeKind.TCP,
            port=_port_value(handler.get("port"), f"{where}.tcpSocket.port"),
            host=_str(handler, "host", f"{where}.tcpSocket", ""),
            **timing,  # type: ignore[arg-type]
        )
    raise PodSpecError(f"{where}.grpc: grpc probes are not supported by edged")


def _resources(raw: Any, where: str) -> tuple[int, int, int]:
    if raw is None:
        return 0, 0, 0
    if not isinstance(raw, Mapping):
        raise PodSpecError(f"{where}: must be an object")
    limits = raw.get("limits") or {}
    requests = raw.get("requests") or {}
    try:
        cpu_limit = quantity.millicores(limits["cpu"]) if "cpu" in limits else 0
        cpu_request = quantity.millicores(requests["cpu"]) if "cpu" in requests else cpu_limit
        memory = quantity.to_bytes(limits["memory"]) if "memory" in limits else 0
    except (ValueError, TypeError) as exc:
        raise PodSpecError(f"{where}: {exc}") from exc
    if cpu_limit < 0 or memory < 0 or cpu_request < 0:
        raise PodSpecError(f"{where}: negative quantity")
    return cpu_limit, cpu_request, memory


def parse_container(raw: Any, where: str, volume_names: set[str]) -> Container:
    """One container from its JSON."""
    if not isinstance(raw, Mapping):
        raise PodSpecError(f"{where}: must be an object")
    name = _str(raw, "name", where)
    if not DNS_LABEL.match(name):
        raise PodSpecError(f"{where}.name: {name!r} is not a DNS label")
    where = f"{where}[{name}]"
    image = raw.get("image")
    if not isinstance(image, str) or not image.strip() or any(c.isspace() for c in image):
        raise PodSpecError(f"{where}.image: required (a non-empty image reference without spaces)")
    default_policy = (
        "Always" if image.endswith(":latest") or ":" not in image.rsplit("/", 1)[-1] else "IfNotPresent"
    )
    policy_text = _str(raw, "imagePullPolicy", where, default_policy)
    try:
        pull_policy = PullPolicy(policy_text)
    except ValueError:
        raise PodSpecError(
            f"{where}.imagePullPolicy: {policy_text!r} is not Always, IfNotPresent or Never"
        ) from None
    env = raw.get("env") or []
    env_from = raw.get("envFrom") or []
    if not isinstance(env, list) or not all(
        isinstance(e, Mapping) and isinstance(e.get("name"), str) for e in env
    ):
        raise PodSpecError(f"{where}.env: must be a list of objects with a name")
    if not isinstance(env_from, list) or not all(isinstance(e, Mapping) for e in env_from):
        raise PodSpecError(f"{where}.envFrom: must be a list of objects")
    ports = []
    for i, port in enumerate(raw.get("ports") or []):
        pw = f"{where}.ports[{i}]"
        if not isinstance(port, Mapping):
            raise PodSpecError(f"{pw}: must be an object")
        number = _port_value(port.get("containerPort"), f"{pw}.containerPort")
        if not isinstance(number, int):
            raise PodSpecError(f"{pw}.containerPort: must be a number")
        protocol = _str(port, "protocol", pw, "TCP")
        if protocol not in ("TCP", "UDP", "SCTP"):
            raise PodSpecError(f"{pw}.protocol: {protocol!r} is not TCP, UDP or SCTP")
        host_port = _int(port, "hostPort", pw, 0)
        if host_port > 65535:
            raise PodSpecError(f"{pw}.hostPort: {host_port} is not a port number")
        ports.append(
            Port(number, protocol, host_port, _str(port, "name", pw, ""), _str(port, "hostIP", pw, ""))
        )
    mounts = []
    for i, mount in enumerate(raw.get("volumeMounts") or []):
        mw = f"{where}.volumeMounts[{i}]"
        if not isinstance(mount, Mapping):
            raise PodSpecError(f"{mw}: must be an object")
        vol = _str(mount, "name", mw)
        if vol not in volume_names:
            raise PodSpecError(f"{mw}.name: no volume named {vol!r} in spec.volumes")
        path = _str(mount, "mountPath", mw)
        if not path.startswith("/") or ":" in path:
            raise PodSpecError(f"{mw}.mountPath: {path!r} must be an absolute path without ':'")
        sub = _str(mount, "subPath", mw, "")
        if sub.startswith("/") or ".." in sub.split("/"):
            raise PodSpecError(f"{mw}.subPath: {sub!r} must be a relative path without '..'")
        mounts.append(Mount(vol, path, bool(mount.get("readOnly", False)), sub))
    cpu_limit, cpu_request, memory = _resources(raw.get("resources"), f"{where}.resources")
    digest = hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return Container(
        name=name,
        image=image,
        pull_policy=pull_policy,
        command=_strings(raw.get("command"), f"{where}.command"),
        args=_strings(raw.get("args"), f"{where}.args"),
        working_dir=_str(raw, "workingDir", where, ""),
        env=tuple(env),
        env_from=tuple(env_from),
        ports=tuple(ports),
        mounts=tuple(mounts),
        cpu_limit_millis=cpu_limit,
        cpu_request_millis=cpu_request,
        memory_limit_bytes=memory,
        liveness=parse_probe(raw.get("livenessProbe"), f"{where}.livenessProbe"),
        readiness=parse_probe(raw.get("readinessProbe"), f"{where}.readinessProbe"),
        startup=parse_probe(raw.get("startupProbe"), f"{where}.startupProbe"),
        spec_hash=digest,
    )


def _containers(raw: Any, where: str, volume_names: set[str]) -> tuple[Container, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise PodSpecError(f"{where}: must be a list")
    result = tuple(parse_container(c, f"{where}[{i}]", volume_names) for i, c in enumerate(raw))
    names = [c.name for c in result]
    if len(set(names)) != len(names):
        raise PodSpecError(f"{where}: container names must be unique")
    return result


def pod_identity(raw: Mapping[str, Any]) -> tuple[str, str, str]:
    """``(uid, namespace, name)`` of a pod object; raises :class:`PodSpecError` when missing."""
    meta = raw.get("metadata")
    if not isinstance(meta, Mapping):
        raise PodSpecError("metadata: required")
    uid = _str(meta, "uid", "metadata")
    name = _str(meta, "name", "metadata")
    namespace = _str(meta, "namespace", "metadata", "default") or "default"
    if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", uid):
        raise PodSpecError(f"metadata.uid: {uid!r} is not a UID")
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", name):
        raise PodSpecError(f"metadata.name: {name!r} is not a DNS subdomain")
    if not DNS_LABEL.match(namespace):
        raise PodSpecError(f"metadata.namespace: {namespace!r} is not a DNS label")
    return uid, namespace, name


def parse_pod(raw: Mapping[str, Any]) -> Pod:
    """Validate a Pod object; raises :class:`PodSpecError` naming the first bad field."""
    uid, namespace, name = pod_identity(raw)
    spec = raw.get("spec")
    if not isinstance(spec, Mapping):
        raise PodSpecError("spec: required")
    volumes: dict[str, Mapping[str, Any]] = {}
    for i, volume in enumerate(spec.get("volumes") or []):
        where = f"spec.volumes[{i}]"
        if not isinstance(volume, Mapping):
            raise PodSpecError(f"{where}: must be an object")
        vname = _str(volume, "name", where)
        sources = [k for k in volume if k != "name"]
        if len(sources) != 1:
            raise PodSpecError(f"{where}[{vname}]: needs exactly one volume source")
        if sources[0] not in SUPPORTED_VOLUMES:
            raise PodSpecError(
                f"{where}[{vname}]: volume type {sources[0]!r} is not supported by edged "
                f"(supported: {', '.join(SUPPORTED_VOLUMES)})"
            )
        if vname in volumes:
            raise PodSpecError(f"{where}.name: duplicate volume {vname!r}")
        volumes[vname] = volume
    containers = _containers(spec.get("containers"), "spec.containers", set(volumes))
    if not containers:
        raise PodSpecError("spec.containers: at least one container is required")
    init = _containers(spec.get("initContainers"), "spec.initContainers", set(volumes))
    if {c.name for c in init} & {c.name for c in containers}:
        raise PodSpecError("spec.initContainers: names clash with spec.containers")
    policy_text = _str(spec, "restartPolicy", "spec", "Always")
    try:
        policy = RestartPolicy(policy_text)
    except ValueError:
        raise PodSpecError(f"spec.restartPolicy: {policy_text!r} is not Always, OnFailure or Never") from None
    grace = spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE)
    meta_grace = raw.get("metadata", {}).get("deletionGracePeriodSeconds")
    if isinstance(meta_grace, int) and not isinstance(meta_grace, bool):
        grace = meta_grace
    if isinstance(grace, bool) or not isinstance(grace, int) or grace < 0:
        raise PodSpecError("spec.terminationGracePeriodSeconds: must be an integer >= 0")
    hostname = _str(spec, "hostname", "spec", "") or name[:63]
    return Pod(
        uid=uid,
        name=name,
        namespace=namespace,
        containers=containers,
        init_containers=init,
        volumes=volumes,
        restart_policy=policy,
        grace_seconds=grace,
        host_network=bool(spec.get("hostNetwork", False)),
        hostname=hostname.rstrip("-.") or "pod",
        raw=raw,
    )
