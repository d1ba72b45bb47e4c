"""The Node object and its status as edged reports them (kubelet's setters), from host facts.

:func:`build_node` and :func:`build_status` are pure: they take a :class:`NodeFacts` snapshot and ``now``.
:func:`gather_facts` reads /proc, ``os.uname`` and the filesystem (blocking; call it from a thread) and
never raises for a missing file: an unreadable fact becomes 0 and, for memory/disk, a pressure condition
stays False rather than inventing pressure. :func:`host_ip` picks the node's InternalIP when ``nodeIP`` is
unset, as upstream does: the IPv4 address of the interface holding the default route.
"""

from __future__ import annotations

import fcntl
import os
import platform
import shutil
import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from kubeedge.edge.edged.podstatus import rfc3339

ARCHES: Final = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm", "i686": "386"}
EVICTION_MEMORY_AVAILABLE: Final = 100 * 1024 * 1024
"""kubelet's default hard eviction ``memory.available<100Mi``."""
EVICTION_NODEFS_PERCENT: Final = 10
"""kubelet's default ``nodefs.available<10%``."""
EVICTION_PID_PERCENT: Final = 10
"""Free PID share below which PIDPressure is reported."""
_RTF_UP: Final = 0x1
_RTF_GATEWAY: Final = 0x2
_SIOCGIFADDR: Final = 0x8915
"""Linux ioctl reading an interface's IPv4 address."""
_ROUTE_TABLE_MAX: Final = 1 << 20
"""Bytes of /proc/net/route read: a host with more routes than this fits no edge node."""


def default_route_interface(route_table: str) -> str | None:
    """The interface of the IPv4 default route in ``/proc/net/route`` text (lowest metric wins), or None."""
    best: tuple[int, str] | None = None
    for line in route_table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        try:
            destination, flags, metric, mask = (
                int(fields[1], 16),
                int(fields[3], 16),
                int(fields[6]),
                int(fields[7], 16),
            )
        except ValueError:
            continue
        up_gateway = flags & _RTF_UP and flags & _RTF_GATEWAY
        if destination == 0 and mask == 0 and up_gateway and (best is None or metric < best[0]):
            best = (metric, fields[0])
    return best[1] if best else None


def interface_ipv4(name: str) -> str | None:
    """The IPv4 address of interface ``name`` (blocking ioctl), or None when it has none."""
    encoded = name.encode()[:15]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            answer = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, struct.pack("256s", encoded))
        except OSError:
            return None
    return socket.inet_ntoa(answer[20:24])


def host_ip() -> str:
    """The node's address when ``edged.nodeIP`` is unset (blocking).

    Like upstream (the host interface choice kubelet makes): the IPv4 address of the default-route
    interface; without one, the address the hostname resolves to; as a last resort ``127.0.0.1``.
    """
    try:
        with Path("/proc/net/route").open() as routes:
            iface = default_route_interface(routes.read(_ROUTE_TABLE_MAX))
    except OSError:
        iface = None
    address = interface_ipv4(iface) if iface else None
    if address:
        return address
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


@dataclass(frozen=True, slots=True)
class NodeFacts:
    """A snapshot of the host."""

    hostname: str
    node_ip: str
    cpu_count: int
    memory_bytes: int
    memory_available_bytes: int
    disk_capacity_bytes: int
    disk_available_bytes: int
    pid_max: int = 0
    pid_used: int = 0
    kernel_version: str = ""
    os_image: str = ""
    operating_system: str = "linux"
    architecture: str = "amd64"
    machine_id: str = ""
    boot_id: str = ""
    runtime_version: str = ""
    """``docker://20.10.24`` style."""
    runtime_ready: bool = True
    runtime_message: str = ""


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """What the operator configured about the node."""

    name: str
    max_pods: int = 110
    labels: Mapping[str, str] = field(default_factory=dict)
    kubelet_version: str = "v1.32.10-kubeedge-py"
    daemon_port: int = 10350


def gather_facts(
    node_ip: str, root: Path, runtime_version: str, runtime_ready: bool = True, runtime_message: str = ""
) -> NodeFacts:
    """Read the host's facts (blocking)."""
    meminfo: dict[str, int] = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines()[:64]:
            key, _, rest = line.partition(":")
            meminfo[key] = int(rest.split()[0]) * 1024 if rest.split() else 0
    except (OSError, ValueError):
        pass
    probe = root if root.exists() else Path("/")
    try:
        disk = shutil.disk_usage(probe)
        disk_total, disk_free = disk.total, disk.free
    except OSError:
        disk_total = disk_free = 0
    os_image = ""
    try:
        for line in Path("/etc/os-release").read_text().splitlines()[:64]:
            if line.startswith("PRETTY_NAME="):
                os_image = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass

    def read(path: str) -> str:
        try:
            return Path(path).read_text()[:256].strip()
        except OSError:
            return ""

    pid_max = int(read("/proc/sys/kernel/pid_max") or 0)
    pid_used = (
        sum(1 for entry in os.scandir("/proc") if entry.name.isdigit()) if Path("/proc").is_dir() else 0
    )
    uname = os.uname()
    return NodeFacts(
        hostname=socket.gethostname(),
        node_ip=node_ip,
        cpu_count=os.cpu_count() or 1,
        memory_bytes=meminfo.get("MemTotal", 0),
        memory_available_bytes=meminfo.get("MemAvailable", 0),
        disk_capacity_bytes=disk_total,
        disk_available_bytes=disk_free,
        pid_max=pid_max,
        pid_used=pid_used,
        kernel_version=uname.release,
        os_image=os_image,
        operating_system=platform.system().lower() or "linux",
        architecture=ARCHES.get(uname.machine, uname.machine),
        machine_id=read("/etc/machine-id"),
        boot_id=read("/proc/sys/kernel/random/boot_id"),
        runtime_version=runtime_version,
        runtime_ready=runtime_ready,
        runtime_message=runtime_message,
    )


def node_labels(config: NodeConfig, facts: NodeFacts) -> dict[str, str]:
    """The labels edged puts on its Node (well-known ones first, operator's ``nodeLabels`` override)."""
    labels = {
        "kubernetes.io/hostname": config.name,
        "kubernetes.io/os": facts.operating_system,
        "kubernetes.io/arch": facts.architecture,
        "beta.kubernetes.io/os": facts.operating_system,
        "beta.kubernetes.io/arch": facts.architecture,
        "node-role.kubernetes.io/edge": "",
        "node-role.kubernetes.io/agent": "",
    }
    labels.update(config.labels)
    return labels


def _condition(
    kind: str,
    bad: bool,
    ok_reason: str,
    bad_reason: str,
    ok_msg: str,
    bad_msg: str,
    now: float,
    previous: Mapping[str, Any] | None,
    invert: bool = False,
) -> dict[str, Any]:
    # Pressure conditions are True when bad; Ready is True when good (invert).
    status = ("False" if bad else "True") if invert else ("True" if bad else "False")
    when = rfc3339(now)
    for old in (previous or {}).get("conditions") or []:
        if old.get("type") == kind and old.get("status") == status and old.get("lastTransitionTime"):
            when = old["lastTransitionTime"]
    return {
        "type": kind,
        "status": status,
        "lastHeartbeatTime": rfc3339(now),
        "lastTransitionTime": when,
        "reason": bad_reason if bad else ok_reason,
        "message": bad_msg if bad else ok_msg,
    }


def build_status(
    config: NodeConfig, facts: NodeFacts, now: float, previous: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The Node ``status`` (capacity, allocatable, conditions, addresses, nodeInfo, daemonEndpoints)."""
    capacity = {
        "cpu": str(facts.cpu_count),
        "memory": f"{facts.memory_bytes // 1024}Ki",
        "pods": str(config.max_pods),
        "ephemeral-storage": f"{facts.disk_capacity_bytes // 1024}Ki",
    }
    # kubelet subtracts the hard eviction threshold from allocatable memory.
    allocatable = dict(capacity)
    allocatable["memory"] = f"{max(0, facts.memory_bytes - EVICTION_MEMORY_AVAILABLE) // 1024}Ki"
    allocatable["ephemeral-storage"] = str(facts.disk_capacity_bytes * (100 - EVICTION_NODEFS_PERCENT) // 100)
    memory_pressure = facts.memory_bytes > 0 and facts.memory_available_bytes < EVICTION_MEMORY_AVAILABLE
    disk_pressure = facts.disk_capacity_bytes > 0 and (
        facts.disk_available_bytes * 100 < facts.disk_capacity_bytes * EVICTION_NODEFS_PERCENT
    )
    pid_pressure = (
        facts.pid_max > 0 and (facts.pid_max - facts.pid_used) * 100 < facts.pid_max * EVICTION_PID_PERCENT
    )
    conditions = [
        _condition(
            "MemoryPressure",
            memory_pressure,
            "KubeletHasSufficientMemory",
            "KubeletHasInsufficientMemory",
            "kubelet has sufficient memory available",
            "kubelet has insufficient memory available",
            now,
            previous,
        ),
        _condition(
            "DiskPressure",
            disk_pressure,
            "KubeletHasNoDiskPressure",
            "KubeletHasDiskPressure",
            "kubelet has no disk pressure",
            "kubelet has disk pressure",
            now,
            previous,
        ),
        _condition(
            "PIDPressure",
            pid_pressure,
            "KubeletHasSufficientPID",
            "KubeletHasInsufficientPID",
            "kubelet has sufficient PID available",
            "kubelet has insufficient PID available",
            now,
            previous,
        ),
        _condition(
            "Ready",
            not facts.runtime_ready,
            "EdgeReady",
            "KubeletNotReady",
            "edge is posting ready status",
            f"container runtime is down: {facts.runtime_message}"
            if facts.runtime_message
            else "container runtime is down",
            now,
            previous,
            invert=True,
        ),
    ]
    return {
        "capacity": capacity,
        "allocatable": allocatable,
        "conditions": conditions,
        "addresses": [
            {"type": "InternalIP", "address": facts.node_ip},
            {"type": "Hostname", "address": config.name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": config.daemon_port}},
        "nodeInfo": {
            "machineID": facts.machine_id,
            "systemUUID": facts.machine_id,
            "bootID": facts.boot_id,
            "kernelVersion": facts.kernel_version,
            "osImage": facts.os_image,
            "containerRuntimeVersion": facts.runtime_version,
            "kubeletVersion": config.kubelet_version,
            "kubeProxyVersion": "",
            "operatingSystem": facts.operating_system,
            "architecture": facts.architecture,
        },
    }


def build_node(config: NodeConfig, facts: NodeFacts, now: float) -> dict[str, Any]:
    """The full Node object edged registers (``null/node/<name>`` insert)."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": config.name, "labels": node_labels(config, facts)},
        "spec": {},
        "status": build_status(config, facts, now),
    }
