"""The pod manager: the trio shell that keeps the runtime's containers in line with the desired pods.

Owns, per pod, a worker task (sync on wake-up: plan with :mod:`decide`, act on the runtime, compute the
status with :mod:`podstatus`), per running container a probe task, and four loops: relist (kubelet's PLEG:
list managed containers every ``relist_period`` or sooner on a Docker event, and wake the pods whose
containers changed), status emission, static manifests and garbage collection. State lives here, in
memory; the runtime's container labels are the only durable state, which is how a restarted manager
adopts the containers it finds instead of duplicating them.

Invariants: a pod's containers are touched only by its own worker (orphans get a teardown worker too);
containers are never started from a stale listing (a worker waits for a relist begun after its own
actions); statuses are emitted only when they change, newest per pod, without ever blocking a sync; a pod
that is deleted or carries a deletionTimestamp (however it arrived: update, restart, never run here) always
ends with its containers stopped and removed and a ``status=None`` report (the final delete), once.
Failures: a bad pod spec, a missing configmap or image, or a runtime error affects only that pod's
status (reason and message); a runtime outage marks the node not ready and is retried.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import trio

from kubeedge.edge.edged import decide, envvars, gc, nodestatus, podstatus, probes, static, volumes
from kubeedge.edge.edged.backoff import MAXIMUM, Backoff
from kubeedge.edge.edged.podspec import Container, Pod, PodSpecError, PullPolicy, parse_pod, pod_identity
from kubeedge.edge.edged.runtime import (
    ContainerKind,
    ContainerRecord,
    ContainerRuntime,
    CreateSpec,
    ImagePullError,
    PodRef,
    RuntimeFailure,
    SandboxSpec,
)
from kubeedge.kit import limits, log
from kubeedge.kit.config.edgecore import Edged

_log = log.get(__name__)

Lookup = Callable[[str, str, str], Awaitable[Mapping[str, Any] | None]]
"""``await lookup(kind, namespace, name)`` with kind ``configmap``, ``secret`` or ``serviceaccounttoken``;
``None`` when the object does not exist. Wire it to MetaManager (works offline from its DB)."""


SANDBOX_LOSS_WINDOW: Final = 2 * MAXIMUM
"""A sandbox lost under its starting containers is recreated at once unless that already happened within
this window (the back-off's own reset interval); then the containers wait out the start back-off."""


@dataclass(frozen=True, slots=True)
class PodStatusReport:
    """A changed pod status (``status`` is the Pod's ``status`` JSON), or ``status=None`` once a deleted
    pod's containers are all gone (upstream then sends the final pod delete)."""

    uid: str
    namespace: str
    name: str
    status: Mapping[str, Any] | None
    static: bool = False


@dataclass(frozen=True, slots=True)
class Periods:
    """Loop periods that are not upstream settings (kubelet hard-codes them); tests shorten them."""

    relist: float = 1.0
    """PLEG relist (s): containers changed outside edgecore are noticed within it (kubelet's 1 s)."""
    gc: float = 60.0
    """Container and image GC (s) (kubelet: containers every 1 min, images every 5 min)."""

    def __post_init__(self) -> None:
        if not (self.relist > 0 and self.gc > 0):
            raise ValueError(f"edged periods must be > 0, got relist={self.relist} gc={self.gc}")


@dataclass(slots=True)
class _PodState:
    """What a pod's worker remembers between syncs."""

    uid: str
    wake: trio.Event = field(default_factory=trio.Event)
    start_time: float = 0.0
    last_status: Mapping[str, Any] | None = None
    start_failures: dict[str, decide.StartFailure] = field(default_factory=dict)
    probes: dict[str, dict[probes.ProbeType, probes.ProbeTracker]] = field(default_factory=dict)
    probe_scopes: dict[str, trio.CancelScope] = field(default_factory=dict)
    failed: bool = False
    done: bool = False
    sandbox_lost_at: float | None = None
    """When containers were last refused because the sandbox had stopped under them."""


class PodManager:
    """Runs the desired pods on ``runtime`` and reports their status on ``status_out``.

    Feed it with :meth:`set_pods` (the full set from the cloud, once it is known), :meth:`upsert_pod`,
    :meth:`delete_pod` and :meth:`object_changed`; static pods come from
    ``tailoredKubeletConfig.staticPodPath``. Containers of unknown pods are removed only after
    :meth:`set_pods` was called once.

    ``config`` is edgecore.yaml's ``modules.edged`` with the host-dependent values resolved: the caller
    fills ``hostnameOverride`` (the node name) and ``nodeIP``; either left empty is a :class:`ValueError`.
    """

    def __init__(
        self,
        runtime: ContainerRuntime,
        config: Edged,
        lookup: Lookup,
        status_out: trio.MemorySendChannel[PodStatusReport] | None = None,
        clock: Callable[[], float] = time.time,
        periods: Periods | None = None,
    ) -> None:
        if not config.hostname_override:
            raise ValueError("modules.edged.hostnameOverride: edged needs the node name resolved")
        if not config.node_ip:
            raise ValueError("modules.edged.nodeIP: edged needs the node address resolved")
        self.runtime = runtime
        self.config = config
        self.node_name = config.hostname_override
        """The node this manager runs pods for."""
        self.node_ip = config.node_ip
        """The node's InternalIP: pods' hostIP and hostNetwork pods' podIP."""
        self.kubelet = config.tailored_kubelet_config
        self.static_dir = Path(self.kubelet.static_pod_path) if self.kubelet.static_pod_path else None
        """``staticPodPath``, or None when it is empty (static pods disabled)."""
        self.periods = periods or Periods()
        self._lookup = lookup
        self._status_out = status_out
        self._clock = clock
        self._cloud: dict[str, Mapping[str, Any]] = {}
        self._static: dict[str, Mapping[str, Any]] = {}
        self._synced = False
        self._pods: dict[str, _PodState] = {}
        self._records: dict[str, list[ContainerRecord]] = {}
        self._crash_backoff = Backoff()
        self._start_backoff = Backoff()
        self._relist_wanted = trio.Event()
        self._relist_done = trio.Event()
        self._gen_started = 0
        self._gen_done = 0
        self._outbox: dict[str, PodStatusReport] = {}
        self._outbox_ready = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._sandbox_image_ready = False
        self._image_unused_since: dict[str, float] = {}
        self.runtime_error = ""
        """Last runtime failure seen by the relist ("" while the runtime answers)."""
        self._statuses: dict[str, Mapping[str, Any]] = {}
        self._names: dict[str, tuple[str, str, bool]] = {}
        self._admitted: set[str] = set()
        self._deleted: dict[str, None] = {}
        """UIDs of gracefully deleted pods already reported gone, oldest first (bounded)."""

    def pod_dir(self, uid: str) -> Path:
        """``<rootDirectory>/pods/<uid>``: the pod's volumes live below it."""
        return Path(self.config.root_directory) / "pods" / uid

    # ----------------------------------------------------------------------------------- desired state
    def set_pods(self, pods: Iterable[Mapping[str, Any]]) -> None:
        """Replace the cloud-sourced pods with ``pods`` (unparseable ones are logged and skipped)."""
        fresh: dict[str, Mapping[str, Any]] = {}
        for raw in pods:
            try:
                uid, _, _ = pod_identity(raw)
            except PodSpecError as exc:
                _log.warning("pod ignored: no identity", error=str(exc))
                continue
            fresh[uid] = raw
        gone = set(self._cloud) - set(fresh)
        self._cloud = fresh
        self._synced = True
        for uid in gone | set(fresh):
            self._touch(uid)

    def upsert_pod(self, pod: Mapping[str, Any]) -> str:
        """Add or update one pod; returns its UID. Raises :class:`PodSpecError` without a usable identity."""
        uid, _, _ = pod_identity(pod)
        if uid in self._deleted and _deletion_requested(pod):
            return uid  # already torn down and reported gone: a late echo of its deletion changes nothing
        self._cloud[uid] = pod
        self._touch(uid)
        return uid

    def delete_pod(self, uid: str) -> None:
        """Forget a pod: its containers are stopped (grace period) and removed."""
        if self._cloud.pop(uid, None) is not None:
            self._touch(uid)

    def object_changed(self, kind: str, namespace: str, name: str) -> None:
        """A configmap/secret changed: re-sync (and refresh the volumes of) the pods that use it."""
        for uid in list(self._desired_uids()):
            raw = self._desired(uid)
            try:
                pod = parse_pod(raw) if raw is not None else None
            except PodSpecError:
                continue
            if pod is not None and (kind.lower(), namespace, name) in envvars.referenced_objects(pod):
                self._wake(uid)

    def status(self, uid: str) -> Mapping[str, Any] | None:
        """The last status computed for ``uid``."""
        return self._statuses.get(uid)

    def _desired(self, uid: str) -> Mapping[str, Any] | None:
        return self._static.get(uid) or self._cloud.get(uid)

    def _desired_uids(self) -> set[str]:
        return set(self._cloud) | set(self._static)

    def _touch(self, uid: str) -> None:
        if uid not in self._pods and self._nursery is not None:
            self._start_worker(uid)
        self._wake(uid)

    def _wake(self, uid: str) -> None:
        state = self._pods.get(uid)
        if state is not None:
            state.wake.set()

    def _start_worker(self, uid: str) -> None:
        assert self._nursery is not None
        state = _PodState(uid, start_time=self._clock())
        self._pods[uid] = state
        state.wake.set()
        self._nursery.start_soon(self._pod_worker, state)

    # ----------------------------------------------------------------------------------- service
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled; ``started`` once the first relist and static scan are done."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await self._scan_static()
            await self._relist()
            for uid in self._desired_uids():
                if uid not in self._pods:
                    self._start_worker(uid)
            nursery.start_soon(self._relist_loop)
            nursery.start_soon(self._events_loop)
            nursery.start_soon(self._emit_loop)
            nursery.start_soon(self._gc_loop)
            nursery.start_soon(self._resync_loop)
            if self.static_dir is not None:
                nursery.start_soon(self._static_loop)
            task_status.started()

    async def _events_loop(self) -> None:
        delay = 0.5
        while True:
            try:
                await self.runtime.watch_events(lambda _id: self._relist_wanted.set())
            except RuntimeFailure as exc:
                _log.warning("runtime events lost; relisting meanwhile", error=str(exc))
            # Jittered back-off so a restarting daemon is not hammered.
            await trio.sleep(delay * (0.5 + (time.monotonic_ns() % 1000) / 1000))
            delay = min(delay * 2, 30.0)

    async def _relist_loop(self) -> None:
        while True:
            with trio.move_on_after(self.periods.relist):
                await self._relist_wanted.wait()
            await self._relist()

    async def _relist(self) -> None:
        self._relist_wanted = trio.Event()
        self._gen_started += 1
        generation = self._gen_started
        try:
            listed = await self.runtime.list_containers()
            self.runtime_error = ""
        except RuntimeFailure as exc:
            if not self.runtime_error:
                _log.warning("runtime relist failed", error=str(exc))
            self.runtime_error = str(exc)
            listed = None
        if listed is not None:
            grouped: dict[str, list[ContainerRecord]] = {}
            for record in listed:
                grouped.setdefault(record.pod_uid, []).append(record)
            for uid in set(grouped) | set(self._records):
                if grouped.get(uid) != self._records.get(uid):
                    self._wake(uid)
            self._records = grouped
            if self._synced and self._nursery is not None:
                for uid in set(grouped) - self._desired_uids() - set(self._pods):
                    self._start_worker(uid)  # orphan: its worker tears it down
        self._gen_done = generation
        self._relist_done.set()
        self._relist_done = trio.Event()

    async def _fresh_records(self, uid: str) -> list[ContainerRecord]:
        """Records from a relist that began after this call."""
        target = self._gen_started + 1
        self._relist_wanted.set()
        while self._gen_done < target:
            await self._relist_done.wait()
        return list(self._records.get(uid, ()))

    async def _resync_loop(self) -> None:
        while True:
            await trio.sleep(self.kubelet.sync_frequency)
            for state in list(self._pods.values()):
                state.wake.set()

    # ----------------------------------------------------------------------------------- pod workers
    async def _pod_worker(self, state: _PodState) -> None:
        retry_in: float | None = None
        while not state.done:
            with trio.move_on_after(retry_in if retry_in is not None else math.inf):
                await state.wake.wait()
            state.wake = trio.Event()
            try:
                retry_in = await self._sync(state)
            except RuntimeFailure as exc:
                _log.warning("pod sync failed; will retry", uid=state.uid, error=str(exc))
                retry_in = 1.0
        for scope in state.probe_scopes.values():
            scope.cancel()
        self._pods.pop(state.uid, None)
        self._statuses.pop(state.uid, None)
        if self._desired(state.uid) is not None:
            self._start_worker(state.uid)  # re-added while it was being torn down

    async def _sync(self, state: _PodState) -> float | None:
        """One sync; returns seconds until a retry is due (None: wait for a wake-up)."""
        uid = state.uid
        raw = self._desired(uid)
        records = list(self._records.get(uid, ()))
        if raw is None:
            await self._teardown(state, records)
            return None
        if _deletion_requested(raw):
            # A graceful delete (also one restored from the local store after a restart, or of a pod this
            # node never ran): the pod ends like a deleted one, containers stopped within its deletion grace
            # period and removed, then the final report. Then it is forgotten, so no worker comes back for it.
            if uid not in self._names:
                try:
                    _, namespace, name = pod_identity(raw)
                    self._names[uid] = (namespace, name, False)
                except PodSpecError:
                    pass
            await self._teardown(state, records, _deletion_grace(raw))
            if state.done and _deletion_requested(self._cloud.get(uid) or {}):
                del self._cloud[uid]
                self._deleted[uid] = None
                while len(self._deleted) > limits.EDGED_DELETED_PODS_REMEMBERED:
                    del self._deleted[next(iter(self._deleted))]
            return None
        now = self._clock()
        made = [r.created_at for r in records if r.created_at]
        if made:
            # An adopted pod started when its oldest container was made, not when this process met it.
            state.start_time = min(state.start_time, *made)
        try:
            pod = parse_pod(raw)
        except PodSpecError as exc:
            self._emit_status(
                state, raw, podstatus.without_pod(("InvalidPodSpec", str(exc)), now, self.node_ip, raw)
            )
            return None
        if uid not in self._admitted:
            if len(self._admitted) >= self.kubelet.max_pods and not records:
                message = (
                    f"Node didn't have enough resource: pods, requested: 1, used: {len(self._admitted)}, "
                    f"capacity: {self.kubelet.max_pods}"
                )
                status = dict(podstatus.without_pod(("OutOfpods", message), now, self.node_ip, raw))
                status["phase"] = "Failed"
                self._emit_status(state, raw, status)
                return None
            self._admitted.add(uid)
        objects = await self._fetch_objects(pod)
        sandbox = decide.latest(r for r in records if r.kind is ContainerKind.SANDBOX)
        pod_ip = sandbox.ip if sandbox is not None and sandbox.running else ""
        ctx = envvars.PodContext(self.node_name, self.node_ip, self.node_ip if pod.host_network else pod_ip)
        volume_error = ""
        try:
            changed = await trio.to_thread.run_sync(
                volumes.prepare_volumes, pod, objects, ctx, self.pod_dir(uid)
            )
            if changed:
                _log.info("pod volumes updated", pod=pod.key, volumes=",".join(changed))
        except (envvars.ConfigError, OSError) as exc:
            volume_error = str(exc)
        unhealthy = frozenset(
            cid
            for cid, trackers in state.probes.items()
            if any(
                t.result is probes.ProbeResult.FAILURE
                for kind, t in trackers.items()
                if kind in (probes.ProbeType.LIVENESS, probes.ProbeType.STARTUP)
            )
        )
        plan = decide.plan_pod(
            pod,
            records,
            now,
            crash_backoff=self._crash_backoff,
            start_backoff=self._start_backoff,
            start_failures=state.start_failures,
            unhealthy=unhealthy,
        )
        state.failed = state.failed or plan.failed
        waiting = dict(plan.waiting)
        acted = bool(plan.kills)
        retry_soon = not await self._kill_all(plan.kills)
        sandbox_id = ""
        refused: list[str] = []
        if volume_error:
            for start in plan.starts:
                waiting[start.container.name] = ("CreateContainerConfigError", volume_error)
        elif plan.starts:
            sandbox_id = sandbox.id if sandbox is not None and sandbox.running else ""
            if plan.new_sandbox_attempt is not None:
                try:
                    created = await self._create_sandbox(pod, plan.new_sandbox_attempt)
                    sandbox_id, pod_ip = created.id, created.ip
                    acted = True
                except RuntimeFailure as exc:
                    _log.warning("pod sandbox failed", pod=pod.key, error=str(exc))
                    for start in plan.starts:
                        name = start.container.name
                        waiting[name] = ("CreatePodSandboxError", str(exc))
                        state.start_failures[name] = decide.StartFailure(
                            "CreatePodSandboxError", str(exc), now
                        )
                        self._start_backoff.next((uid, name), now)
                    sandbox_id = ""
            if sandbox_id:
                ctx = envvars.PodContext(
                    self.node_name,
                    self.node_ip,
                    self.node_ip if pod.host_network else pod_ip,
                )
                for start in plan.starts:
                    outcome = await self._start(pod, state, start, sandbox_id, objects, ctx, now)
                    acted = True
                    if outcome is not None:
                        waiting[start.container.name] = outcome
                        if outcome[0] == "RunContainerError":
                            refused.append(start.container.name)
        if acted:
            records = await self._fresh_records(uid)
            if self.runtime_error:
                retry_soon = True  # listing failed: never plan twice on the same stale records
            else:
                if refused and not any(r.id == sandbox_id and r.running for r in records):
                    self._sandbox_lost(state, refused, now)
                if not retry_soon:
                    state.wake.set()  # plan again on the fresh listing
        self._reconcile_probes(pod, state, records)
        inp = podstatus.StatusInput(
            host_ip=self.node_ip,
            now=now,
            start_time=state.start_time,
            waiting=waiting,
            probes=self._probe_views(state),
            failed=state.failed,
            previous=state.last_status,
        )
        self._emit_status(state, raw, podstatus.compute_status(pod, records, inp))
        retry = 1.0 if retry_soon else plan.retry_in
        for name, failure in state.start_failures.items():
            left = self._start_backoff.remaining((uid, name), failure.failed_at, now)
            if left > 0:
                retry = left if retry is None else min(retry, left)
        return None if retry is None else max(retry, 0.05)

    def _sandbox_lost(self, state: _PodState, refused: list[str], now: float) -> None:
        """Containers were refused because their sandbox stopped under them (Docker: "cannot join network of
        a non running container"): the sandbox is at fault, not the containers.

        The next sync recreates the sandbox and starts them again at once instead of holding them behind the
        start back-off; only a second loss within :data:`SANDBOX_LOSS_WINDOW` takes the back-off, so a sandbox
        that keeps dying cannot spin.
        """
        if state.sandbox_lost_at is not None and now - state.sandbox_lost_at < SANDBOX_LOSS_WINDOW:
            return
        state.sandbox_lost_at = now
        _log.warning("pod sandbox stopped while its containers started; recreating it", uid=state.uid)
        for name in refused:
            state.start_failures.pop(name, None)
            self._start_backoff.reset((state.uid, name))

    async def _fetch_objects(self, pod: Pod) -> dict[tuple[str, str, str], Mapping[str, Any] | None]:
        objects: dict[tuple[str, str, str], Mapping[str, Any] | None] = {}
        for kind, namespace, name in sorted(envvars.referenced_objects(pod)):
            try:
                objects[(kind, namespace, name)] = await self._lookup(kind, namespace, name)
            except Exception as exc:  # a failing lookup is a missing object for this sync, never a crash
                _log.warning(
                    "object lookup failed", kind=kind, namespace=namespace, name=name, error=str(exc)
                )
                objects[(kind, namespace, name)] = None
        return objects

    async def _create_sandbox(self, pod: Pod, attempt: int) -> ContainerRecord:
        if not self._sandbox_image_ready:
            await self.runtime.prepare_sandbox_image(self.config.pod_sandbox_image)
            self._sandbox_image_ready = True
        bindings = tuple(
            (port.container_port, port.protocol, port.host_port, port.host_ip)
            for container in pod.containers
            for port in container.ports
            if port.host_port and not pod.host_network
        )
        spec = SandboxSpec(
            pod=PodRef(pod.uid, pod.name, pod.namespace),
            attempt=attempt,
            image=self.config.pod_sandbox_image,
            hostname=pod.hostname,
            host_network=pod.host_network,
            port_bindings=bindings,
            grace_seconds=pod.grace_seconds,
        )
        _log.info("creating pod sandbox", pod=pod.key, attempt=attempt)
        return await self.runtime.create_sandbox(spec)

    async def _start(
        self,
        pod: Pod,
        state: _PodState,
        start: decide.Start,
        sandbox_id: str,
        objects: envvars.Objects,
        ctx: envvars.PodContext,
        now: float,
    ) -> tuple[str, str] | None:
        """Start one container; returns the waiting (reason, message) when it could not."""
        container = start.container
        key = (pod.uid, container.name)
        try:
            env = envvars.container_env(pod, container, objects, ctx)
        except envvars.ConfigError as exc:
            return "CreateContainerConfigError", str(exc)
        try:
            await self.runtime.ensure_image(
                container.image,
                pull_always=container.pull_policy is PullPolicy.ALWAYS,
                pull_allowed=container.pull_policy is not PullPolicy.NEVER,
            )
        except ImagePullError as exc:
            state.start_failures[container.name] = decide.StartFailure(exc.reason, str(exc), now)
            self._start_backoff.next(key, now)
            _log.warning("image pull failed", pod=pod.key, container=container.name, error=str(exc))
            return exc.reason, str(exc)
        binds = await trio.to_thread.run_sync(volumes.container_binds, pod, container, self.pod_dir(pod.uid))
        spec = CreateSpec(
            pod=PodRef(pod.uid, pod.name, pod.namespace),
            name=container.name,
            kind=start.kind,
            attempt=start.attempt,
            image=container.image,
            sandbox_id=sandbox_id,
            command=tuple(envvars.expand(c, env) for c in container.command),
            args=tuple(envvars.expand(a, env) for a in container.args),
            env=env,
            working_dir=container.working_dir,
            binds=binds,
            cpu_limit_millis=container.cpu_limit_millis,
            cpu_request_millis=container.cpu_request_millis,
            memory_limit_bytes=container.memory_limit_bytes,
            spec_hash=container.spec_hash,
            grace_seconds=pod.grace_seconds,
        )
        if start.restart:
            self._crash_backoff.next(key, now)
        try:
            await self.runtime.create_container(spec)
        except RuntimeFailure as exc:
            state.start_failures[container.name] = decide.StartFailure("RunContainerError", str(exc), now)
            self._start_backoff.next(key, now)
            _log.warning("container start failed", pod=pod.key, container=container.name, error=str(exc))
            return "RunContainerError", str(exc)
        state.start_failures.pop(container.name, None)
        self._start_backoff.reset(key)
        _log.info("container started", pod=pod.key, container=container.name, attempt=start.attempt)
        return None

    async def _kill_all(self, kills: Iterable[decide.Kill]) -> bool:
        """Stop (or remove) containers, apps before sandboxes; False when any of them failed."""
        kills = list(kills)
        failed = []

        async def stop(kill: decide.Kill) -> None:
            try:
                if kill.remove:
                    await self.runtime.remove_container(kill.container_id)
                else:
                    await self.runtime.stop_container(kill.container_id, kill.grace)
            except RuntimeFailure as exc:
                failed.append(kill)
                _log.warning("stop failed", container=kill.container_id[:12], error=str(exc))

        for group in ([k for k in kills if not k.sandbox], [k for k in kills if k.sandbox]):
            async with trio.open_nursery() as nursery:
                for kill in group:
                    _log.info("stopping container", container=kill.container_id[:12], reason=kill.reason)
                    nursery.start_soon(stop, kill)
        return not failed

    async def _teardown(
        self, state: _PodState, records: list[ContainerRecord], grace: float | None = None
    ) -> None:
        """Stop and remove every container of a pod that is no longer desired, then its directory.

        ``grace`` defaults to the pod's grace period recorded on its containers.
        """
        if grace is None:
            grace = max((r.grace_seconds for r in records), default=0)
        if records and state.uid not in self._names:
            self._names[state.uid] = (records[0].pod_namespace, records[0].pod_name, False)
        await self._kill_all(decide.plan_teardown(records, grace).kills)
        for record in records:
            try:
                await self.runtime.remove_container(record.id)
            except RuntimeFailure as exc:
                _log.warning("remove failed", container=record.id[:12], error=str(exc))
        records = await self._fresh_records(state.uid)
        if records:
            state.wake.set()  # something new appeared or removal failed: go again
            return
        pod_dir = self.pod_dir(state.uid)
        await trio.to_thread.run_sync(shutil.rmtree, pod_dir, True)
        state.done = True
        self._admitted.discard(state.uid)
        namespace, name, is_static = self._names.pop(state.uid, ("", "", False))
        self._publish(PodStatusReport(state.uid, namespace, name, None, is_static))

    # ----------------------------------------------------------------------------------- probes
    def _reconcile_probes(self, pod: Pod, state: _PodState, records: list[ContainerRecord]) -> None:
        sandbox = decide.latest(r for r in records if r.kind is ContainerKind.SANDBOX)
        pod_ip = "127.0.0.1" if pod.host_network else (sandbox.ip if sandbox is not None else "")
        specs = {c.name: c for c in pod.containers}
        live = set()
        for record in records:
            container = specs.get(record.container_name)
            if record.kind is not ContainerKind.APP or not record.running or container is None:
                continue
            declared = probes.probes_of(container)
            if not declared:
                continue
            live.add(record.id)
            if record.id not in state.probes and self._nursery is not None:
                started = record.started_at or self._clock()
                state.probes[record.id] = {
                    kind: probes.ProbeTracker(p, kind, started) for kind, p in declared.items()
                }
                scope = trio.CancelScope()
                state.probe_scopes[record.id] = scope
                self._nursery.start_soon(self._probe_worker, state, record.id, container, pod_ip, scope)
        for cid in set(state.probes) - live:
            state.probes.pop(cid, None)
            old_scope = state.probe_scopes.pop(cid, None)
            if old_scope is not None:
                old_scope.cancel()

    def _probe_views(self, state: _PodState) -> dict[str, podstatus.ProbeView]:
        views = {}
        for cid, trackers in state.probes.items():
            startup = trackers.get(probes.ProbeType.STARTUP)
            readiness = trackers.get(probes.ProbeType.READINESS)
            started = startup is None or startup.result is probes.ProbeResult.SUCCESS
            ready = readiness is None or readiness.result is probes.ProbeResult.SUCCESS
            views[cid] = podstatus.ProbeView(ready=ready and started, started=started)
        return views

    async def _probe_worker(
        self, state: _PodState, container_id: str, container: Container, pod_ip: str, scope: trio.CancelScope
    ) -> None:
        with scope:
            trackers = state.probes.get(container_id, {})
            while trackers:
                startup = trackers.get(probes.ProbeType.STARTUP)
                started = startup is None or startup.result is probes.ProbeResult.SUCCESS
                active = [
                    t
                    for kind, t in trackers.items()
                    if (kind is probes.ProbeType.STARTUP and not started)
                    or (kind is not probes.ProbeType.STARTUP and started)
                ]
                if not active:
                    return
                now = self._clock()
                due = min(t.wait(now) for t in active)
                await trio.sleep(due)
                now = self._clock()
                for tracker in active:
                    if tracker.wait(now) > 0:
                        continue
                    ok, message = await probes.run_probe(
                        self.runtime, container_id, container, tracker.probe, pod_ip
                    )
                    if tracker.record(ok, self._clock(), message):
                        _log.info(
                            "probe result changed",
                            uid=state.uid,
                            container=container.name,
                            probe=str(tracker.type),
                            result=str(tracker.result),
                            message=message,
                        )
                        state.wake.set()

    # ----------------------------------------------------------------------------------- status output
    def _emit_status(self, state: _PodState, raw: Mapping[str, Any], status: Mapping[str, Any]) -> None:
        meta = raw.get("metadata") or {}
        is_static = (meta.get("annotations") or {}).get(static.SOURCE_ANNOTATION) == "file"
        namespace, name = str(meta.get("namespace") or "default"), str(meta.get("name") or "")
        self._names[state.uid] = (namespace, name, is_static)
        self._statuses[state.uid] = status
        if status == state.last_status:
            return
        state.last_status = status
        self._publish(PodStatusReport(state.uid, namespace, name, status, is_static))

    def _publish(self, report: PodStatusReport) -> None:
        self._outbox[report.uid] = report
        self._outbox_ready.set()

    async def _emit_loop(self) -> None:
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready = trio.Event()
            while self._outbox:
                uid = next(iter(self._outbox))
                report = self._outbox.pop(uid)
                if self._status_out is not None:
                    await self._status_out.send(report)

    # ----------------------------------------------------------------------------------- static pods
    async def _scan_static(self) -> None:
        if self.static_dir is None:
            return
        contents, errors = await trio.to_thread.run_sync(static.read_dir, self.static_dir)
        pods, parse_errors = static.pods_from_manifests(contents, self.node_name)
        for name, error in {**errors, **parse_errors}.items():
            _log.warning("static pod manifest skipped", file=name, error=error)
        fresh: dict[str, Mapping[str, Any]] = {}
        for raw in pods:
            try:
                uid, _, _ = pod_identity(raw)
            except PodSpecError as exc:
                _log.warning("static pod skipped", error=str(exc))
                continue
            fresh[uid] = raw
        changed = set(fresh) ^ set(self._static)
        self._static = fresh
        for uid in changed:
            self._touch(uid)

    async def _static_loop(self) -> None:
        while True:
            await trio.sleep(self.kubelet.file_check_frequency)
            await self._scan_static()

    # ----------------------------------------------------------------------------------- garbage collection
    async def collect_garbage(self) -> list[str]:
        """One GC pass: dead containers beyond ``maxPerPodContainerCount`` and unused images; returns removed ids."""
        now = self._clock()
        records = [r for group in self._records.values() for r in group]
        removed = []
        for cid in gc.dead_containers(
            records,
            self._desired_uids(),
            self.config.max_per_pod_container_count,
            self.config.minimum_gc_age,
            now,
        ):
            try:
                await self.runtime.remove_container(cid)
                removed.append(cid)
            except RuntimeFailure as exc:
                _log.warning("container GC failed", container=cid[:12], error=str(exc))
        if self.kubelet.image_gc_high_threshold_percent < 100:
            removed += await self._image_gc(records, now)
        self._crash_backoff.gc(now)
        self._start_backoff.gc(now)
        return removed

    async def _image_gc(self, records: list[ContainerRecord], now: float) -> list[str]:
        used, capacity = await self.runtime.image_fs_usage()
        images = await self.runtime.list_images()
        in_use = {r.image_id for r in records}
        protected = {self.config.pod_sandbox_image}
        for uid in self._desired_uids():
            raw = self._desired(uid) or {}
            for c in [
                *((raw.get("spec") or {}).get("containers") or []),
                *((raw.get("spec") or {}).get("initContainers") or []),
            ]:
                if isinstance(c, Mapping) and isinstance(c.get("image"), str):
                    protected.add(c["image"])
        for image in images:
            if image.id in in_use:
                self._image_unused_since.pop(image.id, None)
            else:
                self._image_unused_since.setdefault(image.id, now)
        chosen = gc.images_to_remove(
            images,
            in_use,
            protected,
            gc.ImageUse(used, capacity),
            self.kubelet.image_gc_high_threshold_percent,
            self.kubelet.image_gc_low_threshold_percent,
            self.kubelet.image_minimum_gc_age,
            self._image_unused_since,
            now,
        )
        removed = []
        for image_id in chosen:
            try:
                await self.runtime.remove_image(image_id)
                removed.append(image_id)
            except RuntimeFailure as exc:  # in use by a container we do not manage: Docker refuses, fine
                _log.info("image GC skipped an image", image=image_id[:19], error=str(exc))
        return removed

    async def _gc_loop(self) -> None:
        while True:
            await trio.sleep(self.periods.gc)
            try:
                await self.collect_garbage()
            except RuntimeFailure as exc:
                _log.warning("garbage collection failed", error=str(exc))

    # ----------------------------------------------------------------------------------- node
    async def node_status(self, previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The Node ``status`` to report now (runtime version and health included)."""
        return nodestatus.build_status(self._node_config(), await self._facts(), self._clock(), previous)

    async def node(self) -> dict[str, Any]:
        """The full Node object to register."""
        return nodestatus.build_node(self._node_config(), await self._facts(), self._clock())

    def _node_config(self) -> nodestatus.NodeConfig:
        return nodestatus.NodeConfig(self.node_name, self.kubelet.max_pods, dict(self.config.node_labels))

    async def _facts(self) -> nodestatus.NodeFacts:
        try:
            version = await self.runtime.version()
            text, ready, message = (
                f"{version.name}://{version.version}",
                not self.runtime_error,
                self.runtime_error,
            )
        except RuntimeFailure as exc:
            text, ready, message = "", False, str(exc)
        return await trio.to_thread.run_sync(
            nodestatus.gather_facts, self.node_ip, Path(self.config.root_directory), text, ready, message
        )


def _deletion_requested(raw: Mapping[str, Any]) -> bool:
    """``metadata.deletionTimestamp`` is set: the pod is being deleted gracefully."""
    meta = raw.get("metadata")
    return isinstance(meta, Mapping) and bool(meta.get("deletionTimestamp"))


def _deletion_grace(raw: Mapping[str, Any]) -> float | None:
    """The grace period of a pod being deleted (None when its spec cannot say: the containers' labels do)."""
    try:
        return float(parse_pod(raw).grace_seconds)
    except PodSpecError:
        return None
