"""The Docker Engine implementation of :class:`~kubeedge.edge.edged.runtime.ContainerRuntime`.

A thin shell over the ``docker`` SDK's low-level API: every blocking SDK call runs in a worker thread,
at most :data:`~kubeedge.kit.limits.EDGED_DOCKER_THREADS` at once, so trio stays responsive. Invariants:
every container it creates carries the labels of :mod:`~kubeedge.edge.edged.runtime`; it lists, inspects
and removes only containers carrying ``io.kubeedge-py.managed=true``. Docker errors become
:class:`~kubeedge.edge.edged.runtime.RuntimeFailure` with the daemon's own message, and so do transport
failures (engine unreachable, timed out, connection dropped mid-answer); a container that vanished is not an
error when stopping or removing.
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final, TypeVar

import trio

from kubeedge.edge.edged import runtime as rt
from kubeedge.edge.edged.runtime import (
    ContainerKind,
    ContainerRecord,
    ContainerState,
    CreateSpec,
    ExecResult,
    ImagePullError,
    ImageRecord,
    RuntimeFailure,
    RuntimeVersion,
    SandboxSpec,
)
from kubeedge.kit import limits, log

_log = log.get(__name__)
T = TypeVar("T")
STOP_SETTLE_SECONDS: Final = 5.0
"""How long to wait for a SIGKILLed container to be reported exited (Docker reaps it in milliseconds)."""
_STATES: Final = {
    "created": ContainerState.CREATED,
    "running": ContainerState.RUNNING,
    "paused": ContainerState.RUNNING,
    "restarting": ContainerState.RUNNING,
    "exited": ContainerState.EXITED,
    "dead": ContainerState.EXITED,
    "removing": ContainerState.EXITED,
}


def parse_time(text: str | None) -> float:
    """Docker's RFC 3339 nanosecond timestamps as Unix seconds; Go's zero time is 0."""
    if not text or text.startswith("0001-01-01"):
        return 0.0
    main, _, frac = text.rstrip("Z").partition(".")
    offset = "+00:00"
    for sign in ("+", "-"):
        if sign in frac:
            frac, _, tz = frac.partition(sign)
            offset = sign + tz
    if "+" in main[10:]:
        main, _, tz = main.rpartition("+")
        offset = "+" + tz
    try:
        stamp = datetime.fromisoformat(f"{main}{offset}").timestamp()
    except ValueError:
        return 0.0
    return stamp + (float(f"0.{frac[:9]}") if frac.isdigit() else 0.0)


def record_from_inspect(data: Mapping[str, Any]) -> ContainerRecord:
    """A :class:`ContainerRecord` from ``docker inspect`` output of a managed container."""
    config = data.get("Config") or {}
    labels = config.get("Labels") or {}
    state = data.get("State") or {}
    status = _STATES.get(str(state.get("Status", "")), ContainerState.UNKNOWN)
    exit_code = int(state.get("ExitCode") or 0)
    reason = ""
    if status is ContainerState.EXITED:
        reason = "OOMKilled" if state.get("OOMKilled") else ("Completed" if exit_code == 0 else "Error")
    network = data.get("NetworkSettings") or {}
    ip = str(network.get("IPAddress") or "")
    if not ip:
        for net in (network.get("Networks") or {}).values():
            if net and net.get("IPAddress"):
                ip = str(net["IPAddress"])
                break
    try:
        kind = ContainerKind(labels.get(rt.LABEL_CONTAINER_KIND, "app"))
    except ValueError:
        kind = ContainerKind.APP
    try:
        attempt = int(labels.get(rt.LABEL_ATTEMPT, "0"))
        grace = int(labels.get(rt.LABEL_GRACE, "30"))
    except ValueError:
        attempt, grace = 0, 30
    return ContainerRecord(
        id=str(data.get("Id", "")),
        pod_uid=labels.get(rt.LABEL_POD_UID, ""),
        pod_name=labels.get(rt.LABEL_POD_NAME, ""),
        pod_namespace=labels.get(rt.LABEL_POD_NAMESPACE, ""),
        container_name=labels.get(rt.LABEL_CONTAINER_NAME, ""),
        kind=kind,
        attempt=attempt,
        state=status,
        image=str(config.get("Image", "")),
        image_id=str(data.get("Image", "")),
        spec_hash=labels.get(rt.LABEL_HASH, ""),
        created_at=parse_time(data.get("Created")),
        started_at=parse_time(state.get("StartedAt")),
        finished_at=parse_time(state.get("FinishedAt")),
        exit_code=exit_code,
        reason=reason,
        message=str(state.get("Error") or ""),
        ip=ip,
        grace_seconds=grace,
        sandbox_id=labels.get(rt.LABEL_SANDBOX, ""),
    )


def _labels(
    pod: rt.PodRef, name: str, kind: ContainerKind, attempt: int, grace: int, **extra: str
) -> dict[str, str]:
    labels = {
        rt.LABEL_MANAGED: "true",
        rt.LABEL_POD_UID: pod.uid,
        rt.LABEL_POD_NAME: pod.name,
        rt.LABEL_POD_NAMESPACE: pod.namespace,
        rt.LABEL_CONTAINER_NAME: name,
        rt.LABEL_CONTAINER_KIND: str(kind),
        rt.LABEL_ATTEMPT: str(attempt),
        rt.LABEL_GRACE: str(grace),
    }
    labels.update(extra)
    return labels


def _docker_name(pod: rt.PodRef, name: str, attempt: int) -> str:
    # dockershim's naming, so `docker ps` reads the same as on a kubelet node.
    return f"k8s_{name}_{pod.name}_{pod.namespace}_{pod.uid}_{attempt}"


class DockerRuntime:
    """Docker Engine runtime; ``client`` is a ``docker.DockerClient`` (owned by the caller)."""

    def __init__(self, client: Any, limiter: trio.CapacityLimiter | None = None, *, node: str = "") -> None:
        import docker.errors
        import urllib3.exceptions

        # Not DockerExceptions: what the SDK raises when the engine is unreachable, times out or drops the
        # connection mid-answer (requests' errors are OSErrors). Callers must get a RuntimeFailure to retry,
        # never a crash of edged.
        self._transport_errors: tuple[type[Exception], ...] = (OSError, urllib3.exceptions.HTTPError)
        self._node = node
        """Edge node name; when set, containers are labelled with it and only that node's are seen."""
        self._client = client
        self._api = client.api
        self._errors = docker.errors
        self._limiter = limiter or trio.CapacityLimiter(limits.EDGED_DOCKER_THREADS)
        self._exec_limiter = trio.CapacityLimiter(limits.EDGED_EXEC_THREADS)
        self._inspected: dict[tuple[str, str], ContainerRecord] = {}

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await self._call_in(self._limiter, False, functools.partial(fn, *args, **kwargs))

    async def _call_in(self, limiter: trio.CapacityLimiter, abandon: bool, fn: Callable[[], T]) -> T:
        try:
            return await trio.to_thread.run_sync(fn, limiter=limiter, abandon_on_cancel=abandon)
        except self._errors.ImageNotFound as exc:
            raise ImagePullError(str(exc.explanation or exc)) from exc
        except self._errors.DockerException as exc:
            explanation = getattr(exc, "explanation", None)
            raise RuntimeFailure(str(explanation or exc)) from exc
        except self._transport_errors as exc:
            raise RuntimeFailure(f"Docker engine unreachable: {exc}") from exc

    async def version(self) -> RuntimeVersion:
        """Docker's version (``docker://<Version>``)."""
        data = await self._call(self._api.version)
        return RuntimeVersion("docker", str(data.get("Version", "")), str(data.get("ApiVersion", "")))

    def _label_filter(self) -> list[str]:
        """Docker label filters (ANDed) selecting the containers this runtime owns."""
        wanted = [f"{rt.LABEL_MANAGED}=true"]
        if self._node:
            wanted.append(f"{rt.LABEL_NODE}={self._node}")
        return wanted

    def _own(self, labels: dict[str, str]) -> dict[str, str]:
        if self._node:
            labels[rt.LABEL_NODE] = self._node
        return labels

    async def list_containers(self) -> list[ContainerRecord]:
        """Managed containers; only those whose id or state changed since the last call are inspected."""
        listed = await self._call(self._api.containers, all=True, filters={"label": self._label_filter()})
        keys = [(str(c["Id"]), str(c.get("State", ""))) for c in listed]
        records: list[ContainerRecord] = []
        fresh: dict[tuple[str, str], ContainerRecord] = {}
        for key in keys:
            record = self._inspected.get(key)
            if record is None:
                try:
                    data = await self._call(self._api.inspect_container, key[0])
                except RuntimeFailure:
                    continue  # removed between list and inspect
                record = record_from_inspect(data)
                if record.state is ContainerState.RUNNING and key[1] != "running":
                    continue  # raced with a state change: the next relist sees it
            fresh[key] = record
            records.append(record)
        self._inspected = fresh
        return records

    async def ensure_image(self, image: str, pull_always: bool, pull_allowed: bool) -> str:
        """Image id of ``image``, pulling per policy; raises :class:`ImagePullError` with the daemon's message."""
        present: str | None = None
        try:
            present = str((await self._call(self._api.inspect_image, image))["Id"])
        except (ImagePullError, RuntimeFailure):
            present = None
        if present is not None and not pull_always:
            return present
        if not pull_allowed:
            raise ImagePullError(
                f'Container image "{image}" is not present with pull policy of Never',
                reason="ErrImageNeverPull",
            )
        repository, tag = _split_image(image)
        try:
            await self._call(self._api.pull, repository, tag=tag)
        except RuntimeFailure as exc:
            raise ImagePullError(f'failed to pull image "{image}": {exc}') from exc
        return str((await self._call(self._api.inspect_image, image))["Id"])

    async def prepare_sandbox_image(self, image: str) -> str:
        """The sandbox image's id; when absent and not pullable, a local pause image is built from busybox."""
        try:
            return await self.ensure_image(image, pull_always=False, pull_allowed=True)
        except ImagePullError as exc:
            from kubeedge.kit import images

            _log.warning("sandbox image missing: building a local pause image", image=image, error=str(exc))
            try:
                return await self._call(images.ensure_pause_image, self._client, image)
            except images.ImageBuildError as build_exc:
                raise ImagePullError(
                    f"sandbox image {image}: {exc}; local build failed: {build_exc}"
                ) from build_exc

    async def _create(self, name: str, kwargs: dict[str, Any]) -> str:
        """Create a container; a leftover managed container holding the same name is removed first."""
        try:
            created = await self._call(self._api.create_container, name=name, **kwargs)
        except RuntimeFailure as exc:
            if "Conflict" not in str(exc) and "already in use" not in str(exc):
                raise
            old = await self._call(self._api.inspect_container, name)
            old_labels = (old.get("Config") or {}).get("Labels") or {}
            if old_labels.get(rt.LABEL_MANAGED) != "true" or old_labels.get(rt.LABEL_NODE, "") != self._node:
                raise
            await self._call(self._api.remove_container, old["Id"], force=True, v=True)
            created = await self._call(self._api.create_container, name=name, **kwargs)
        return str(created["Id"])

    async def create_sandbox(self, spec: SandboxSpec) -> ContainerRecord:
        """Create and start the pause container of a pod."""
        ports = [(port, proto.lower()) for port, proto, _, _ in spec.port_bindings]
        bindings = {
            f"{port}/{proto.lower()}": (host_ip, host) if host_ip else host
            for port, proto, host, host_ip in spec.port_bindings
        }
        host_config = self._api.create_host_config(
            network_mode="host" if spec.host_network else "bridge",
            port_bindings=bindings or None,
            ipc_mode="shareable",
        )
        kwargs: dict[str, Any] = {
            "image": spec.image,
            "labels": self._own(
                _labels(spec.pod, rt.SANDBOX_NAME, ContainerKind.SANDBOX, spec.attempt, spec.grace_seconds)
            ),
            "host_config": host_config,
            "ports": ports or None,
            "detach": True,
        }
        if not spec.host_network:
            kwargs["hostname"] = spec.hostname
        container_id = await self._create(_docker_name(spec.pod, rt.SANDBOX_NAME, spec.attempt), kwargs)
        await self._call(self._api.start, container_id)
        return record_from_inspect(await self._call(self._api.inspect_container, container_id))

    async def create_container(self, spec: CreateSpec) -> str:
        """Create and start an init/app container in its sandbox's network and IPC namespaces."""
        binds = [f"{b.source}:{b.target}:{'ro' if b.read_only else 'rw'}" for b in spec.binds if not b.tmpfs]
        tmpfs = {b.target: "ro" if b.read_only else "" for b in spec.binds if b.tmpfs}
        host_config = self._api.create_host_config(
            network_mode=f"container:{spec.sandbox_id}",
            ipc_mode=f"container:{spec.sandbox_id}",
            binds=binds or None,
            tmpfs=tmpfs or None,
            nano_cpus=spec.cpu_limit_millis * 1_000_000 or None,
            cpu_shares=max(2, spec.cpu_request_millis * 1024 // 1000) if spec.cpu_request_millis else None,
            mem_limit=spec.memory_limit_bytes or None,
        )
        kwargs: dict[str, Any] = {
            "image": spec.image,
            "entrypoint": list(spec.command) or None,
            "command": list(spec.args) or None,
            "environment": dict(spec.env),
            "working_dir": spec.working_dir or None,
            "labels": self._own(
                _labels(
                    spec.pod,
                    spec.name,
                    spec.kind,
                    spec.attempt,
                    spec.grace_seconds,
                    **{rt.LABEL_HASH: spec.spec_hash, rt.LABEL_SANDBOX: spec.sandbox_id},
                )
            ),
            "host_config": host_config,
            "detach": True,
        }
        container_id = await self._create(_docker_name(spec.pod, spec.name, spec.attempt), kwargs)
        await self._call(self._api.start, container_id)
        return container_id

    async def stop_container(self, container_id: str, grace_seconds: float) -> None:
        """What ``docker stop -t grace`` does, without holding a worker thread for the grace period.

        Sends the image's stop signal (SIGTERM by default), polls until the container exits, and sends
        SIGKILL when ``grace_seconds`` pass; a vanished container is fine.
        """
        try:
            data = await self._call(self._api.inspect_container, container_id)
            if not (data.get("State") or {}).get("Running"):
                return
            signal = str((data.get("Config") or {}).get("StopSignal") or "SIGTERM")
            if grace_seconds > 0:
                await self._call(self._api.kill, container_id, signal=signal)
                if await self._exited_within(container_id, grace_seconds):
                    return
            await self._call(self._api.kill, container_id, signal="SIGKILL")
            await self._exited_within(container_id, STOP_SETTLE_SECONDS)
        except RuntimeFailure as exc:
            if "No such container" not in str(exc) and "is not running" not in str(exc):
                raise

    async def _exited_within(self, container_id: str, seconds: float) -> bool:
        deadline = trio.current_time() + seconds
        pause = 0.05
        while trio.current_time() < deadline:
            await trio.sleep(min(pause, max(0.0, deadline - trio.current_time())))
            pause = min(pause * 2, 1.0)
            data = await self._call(self._api.inspect_container, container_id)
            if not (data.get("State") or {}).get("Running"):
                return True
        return False

    async def remove_container(self, container_id: str) -> None:
        """``docker rm -f -v``; a vanished container or a removal in progress is fine."""
        try:
            await self._call(self._api.remove_container, container_id, force=True, v=True)
        except RuntimeFailure as exc:
            if "No such container" not in str(exc) and "already in progress" not in str(exc):
                raise

    async def exec(self, container_id: str, command: tuple[str, ...]) -> ExecResult:
        """``docker exec`` and wait for the exit code."""
        created = await self._call(
            self._api.exec_create, container_id, list(command), stdout=True, stderr=True
        )
        # Abandoned on cancel (the probe's timeout), under a limiter of its own: a command that hangs must
        # neither outlive its probe's timeout nor hold a thread the relists and kills need.
        output = await self._call_in(
            self._exec_limiter, True, functools.partial(self._api.exec_start, created["Id"])
        )
        inspected = await self._call(self._api.exec_inspect, created["Id"])
        code = inspected.get("ExitCode")
        return ExecResult(int(code) if code is not None else -1, bytes(output or b""))

    async def watch_events(self, notify: Callable[[str], None]) -> None:
        """Feed ``notify`` from ``docker events`` for managed containers until cancelled."""
        broken: tuple[type[Exception], ...] = (*self._transport_errors, ValueError)  # ValueError: bad JSON
        stream = await self._call(
            self._api.events, decode=True, filters={"type": "container", "label": self._label_filter()}
        )
        try:
            while True:
                # Not under the limiter: this thread blocks for as long as nothing happens.
                try:
                    event = await trio.to_thread.run_sync(next, stream, None, abandon_on_cancel=True)
                except broken as exc:
                    raise RuntimeFailure(f"docker event stream broke: {exc}") from exc
                if event is None:
                    raise RuntimeFailure("docker event stream ended")
                if isinstance(event, Mapping) and event.get("id"):
                    notify(str(event["id"]))
        finally:
            stream.close()

    async def list_images(self) -> list[ImageRecord]:
        """Every image (id, tags, size, creation time)."""
        images = await self._call(self._api.images)
        return [
            ImageRecord(
                id=str(i["Id"]),
                tags=tuple(i.get("RepoTags") or ()),
                size=int(i.get("Size") or 0),
                created_at=float(i.get("Created") or 0),
            )
            for i in images
        ]

    async def remove_image(self, image_id: str) -> None:
        """``docker rmi`` without force: Docker itself refuses images a container uses."""
        await self._call(self._api.remove_image, image_id)

    async def image_fs_usage(self) -> tuple[int, int]:
        """Used and total bytes of the filesystem holding Docker's root dir."""
        info = await self._call(self._api.info)
        usage = await trio.to_thread.run_sync(
            shutil.disk_usage, str(info.get("DockerRootDir") or "/var/lib/docker")
        )
        return usage.used, usage.total


def _split_image(image: str) -> tuple[str, str]:
    if "@" in image:
        repository, digest = image.split("@", 1)
        return repository, digest
    name, sep, tag = image.rpartition(":")
    if sep and "/" not in tag:
        return name, tag
    return image, "latest"
