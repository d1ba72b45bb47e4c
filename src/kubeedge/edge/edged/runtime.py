"""The container runtime interface edged drives, and the records it exchanges.

Owns :class:`ContainerRuntime` (a Protocol: Docker today, CRI/containerd later), the observed
:class:`ContainerRecord` and :class:`ImageRecord`, the :class:`CreateSpec`/:class:`SandboxSpec` requests and
the label keys that mark what edged owns. Invariant: every container a runtime creates for edged carries
:data:`LABEL_MANAGED` and the pod/container labels, and ``list_containers`` returns only those, so nothing
else on the host is ever touched. Runtime failures raise :class:`RuntimeFailure` (or
:class:`ImagePullError` for images) carrying the daemon's message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, Protocol

LABEL_MANAGED: Final = "io.kubeedge-py.managed"
LABEL_POD_UID: Final = "io.kubeedge-py.pod.uid"
LABEL_POD_NAME: Final = "io.kubeedge-py.pod.name"
LABEL_POD_NAMESPACE: Final = "io.kubeedge-py.pod.namespace"
LABEL_CONTAINER_NAME: Final = "io.kubeedge-py.container.name"
LABEL_CONTAINER_KIND: Final = "io.kubeedge-py.container.kind"
LABEL_ATTEMPT: Final = "io.kubeedge-py.container.restart-count"
LABEL_HASH: Final = "io.kubeedge-py.container.hash"
LABEL_GRACE: Final = "io.kubeedge-py.pod.termination-grace-period"
LABEL_SANDBOX: Final = "io.kubeedge-py.sandbox-id"
LABEL_NODE: Final = "io.kubeedge-py.node"
"""The edge node whose edged created the container: several nodes may share one engine (tests, molecule), and
each edged lists, adopts and garbage-collects only its own node's containers."""
SANDBOX_NAME: Final = "POD"
"""Container name recorded for sandboxes (dockershim's convention)."""


class ContainerKind(StrEnum):
    """What a managed container is for."""

    SANDBOX = "sandbox"
    INIT = "init"
    APP = "app"


class ContainerState(StrEnum):
    """Observed state, mapped from the runtime's own words."""

    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class ContainerRecord:
    """One managed container as the runtime last reported it. Times are Unix seconds (0 = never)."""

    id: str
    pod_uid: str
    pod_name: str
    pod_namespace: str
    container_name: str
    kind: ContainerKind
    attempt: int
    state: ContainerState
    image: str = ""
    image_id: str = ""
    spec_hash: str = ""
    created_at: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    exit_code: int = 0
    reason: str = ""
    """Why it exited: ``Completed``, ``Error`` or ``OOMKilled``."""
    message: str = ""
    ip: str = ""
    """Sandbox only: the pod's IP on the runtime's network (empty on the host network)."""
    grace_seconds: int = 30
    sandbox_id: str = ""
    """Init/app containers: the sandbox they were joined to."""

    @property
    def running(self) -> bool:
        """True while the container's process runs."""
        return self.state is ContainerState.RUNNING


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """An image known to the runtime."""

    id: str
    tags: tuple[str, ...]
    size: int
    created_at: float


@dataclass(frozen=True, slots=True)
class PodRef:
    """The identity labels of a pod."""

    uid: str
    name: str
    namespace: str


@dataclass(frozen=True, slots=True)
class VolumeBind:
    """A host path (or tmpfs) mounted into a container."""

    target: str
    source: str = ""
    read_only: bool = False
    tmpfs: bool = False


@dataclass(frozen=True, slots=True)
class SandboxSpec:
    """The pause container holding a pod's network namespace."""

    pod: PodRef
    attempt: int
    image: str
    hostname: str
    host_network: bool
    port_bindings: tuple[tuple[int, str, int, str], ...] = ()
    """``(containerPort, protocol, hostPort, hostIP)`` published on the sandbox (hostIP "" = all addresses)."""
    grace_seconds: int = 30


@dataclass(frozen=True, slots=True)
class CreateSpec:
    """An init or app container joined to ``sandbox_id``'s namespaces."""

    pod: PodRef
    name: str
    kind: ContainerKind
    attempt: int
    image: str
    sandbox_id: str
    command: tuple[str, ...] = ()
    """Kubernetes ``command``: replaces the image entrypoint (and then the image's default args too)."""
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    working_dir: str = ""
    binds: tuple[VolumeBind, ...] = ()
    cpu_limit_millis: int = 0
    cpu_request_millis: int = 0
    memory_limit_bytes: int = 0
    spec_hash: str = ""
    grace_seconds: int = 30


@dataclass(frozen=True, slots=True)
class RuntimeVersion:
    """``nodeInfo.containerRuntimeVersion`` is ``f"{name}://{version}"``."""

    name: str
    version: str
    api_version: str = ""


@dataclass(frozen=True, slots=True)
class ExecResult:
    """Outcome of a command run inside a container."""

    exit_code: int
    output: bytes


class RuntimeFailure(RuntimeError):
    """The runtime refused or failed an operation; the message is the daemon's own."""


class ImagePullError(RuntimeFailure):
    """An image is missing and could not be pulled (or pulling is forbidden by the pull policy)."""

    def __init__(self, message: str, reason: str = "ErrImagePull") -> None:
        super().__init__(message)
        self.reason = reason
        """kubelet's waiting reason: ``ErrImagePull`` or ``ErrImageNeverPull``."""


class ContainerRuntime(Protocol):
    """What edged needs from a container runtime. All methods are async and safe to call concurrently."""

    async def version(self) -> RuntimeVersion:
        """Runtime name and version."""
        ...

    async def list_containers(self) -> list[ContainerRecord]:
        """Every container edged manages (by label), running or not."""
        ...

    async def ensure_image(self, image: str, pull_always: bool, pull_allowed: bool) -> str:
        """Image id of ``image``, pulling it if needed and allowed; raises :class:`ImagePullError`."""
        ...

    async def create_sandbox(self, spec: SandboxSpec) -> ContainerRecord:
        """Create and start a sandbox; returns its record (with its IP)."""
        ...

    async def create_container(self, spec: CreateSpec) -> str:
        """Create and start an init/app container; returns its id."""
        ...

    async def stop_container(self, container_id: str, grace_seconds: float) -> None:
        """SIGTERM, then SIGKILL after ``grace_seconds``; a missing container is not an error."""
        ...

    async def remove_container(self, container_id: str) -> None:
        """Remove a (stopped) container and its anonymous volumes; missing is not an error."""
        ...

    async def exec(self, container_id: str, command: tuple[str, ...]) -> ExecResult:
        """Run ``command`` inside a running container; the caller bounds the time."""
        ...

    async def prepare_sandbox_image(self, image: str) -> str:
        """Make the sandbox image available (pull it, or build a local one); returns its id."""
        ...

    async def watch_events(self, notify: Callable[[str], None]) -> None:
        """Call ``notify(container_id)`` whenever a managed container changes; runs until cancelled.

        Raises :class:`RuntimeFailure` when the runtime's event stream ends or breaks.
        """
        ...

    async def list_images(self) -> list[ImageRecord]:
        """Every image in the runtime."""
        ...

    async def remove_image(self, image_id: str) -> None:
        """Remove an image; one still in use is refused with :class:`RuntimeFailure`."""
        ...

    async def image_fs_usage(self) -> tuple[int, int]:
        """``(used_bytes, capacity_bytes)`` of the filesystem holding images."""
        ...
