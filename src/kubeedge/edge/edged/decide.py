"""What to do with one pod, given its spec and the containers observed for it (kubelet's computePodActions).

Pure: :func:`plan_pod` takes the pod, the runtime's records, ``now`` and the back-off tables, and returns
a :class:`PodPlan` of kills and starts plus the waiting reasons the status must show; :func:`plan_teardown`
does the same for a deleted pod. Rules: one running sandbox per pod (a dead or duplicated sandbox means the
whole pod is restarted in a fresh one); init containers run one at a time, in order, in the current
sandbox; app containers start once every init container succeeded and are restarted per restartPolicy
behind the crash back-off; a changed container spec or a failed liveness/startup probe kills the container.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from kubeedge.edge.edged.backoff import Backoff
from kubeedge.edge.edged.podspec import Container, Pod, RestartPolicy
from kubeedge.edge.edged.runtime import ContainerKind, ContainerRecord, ContainerState


@dataclass(frozen=True, slots=True)
class Kill:
    """Stop a container (SIGTERM, SIGKILL after ``grace``)."""

    container_id: str
    grace: float
    reason: str
    sandbox: bool = False
    remove: bool = False
    """Remove instead of stop: the container was created but never ran (stopping it would be a no-op)."""


@dataclass(frozen=True, slots=True)
class Start:
    """Create and start ``container`` as restart number ``attempt``."""

    container: Container
    kind: ContainerKind
    attempt: int
    restart: bool
    """True when this replaces a container that exited (the crash back-off advances)."""


@dataclass(frozen=True, slots=True)
class StartFailure:
    """The last failed attempt to start a container (image pull, configuration or runtime error)."""

    reason: str
    """kubelet's waiting reason: ``ErrImagePull``, ``ErrImageNeverPull``, ``CreateContainerConfigError``,
    ``RunContainerError``..."""
    message: str
    failed_at: float

    @property
    def held_reason(self) -> str:
        """The reason shown while the retry waits (pull errors become ``ImagePullBackOff``)."""
        return "ImagePullBackOff" if self.reason == "ErrImagePull" else self.reason


@dataclass(frozen=True, slots=True)
class PodPlan:
    """The actions of one sync, in order: kills, then a new sandbox (if any), then starts."""

    kills: tuple[Kill, ...] = ()
    new_sandbox_attempt: int | None = None
    starts: tuple[Start, ...] = ()
    waiting: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    """Container name -> (reason, message) for containers held back (CrashLoopBackOff, ImagePullBackOff)."""
    failed: bool = False
    """An init container failed under restartPolicy Never: the pod can never run."""
    retry_in: float | None = None
    """Seconds until the earliest held container may be retried (None: nothing held)."""

    @property
    def idle(self) -> bool:
        """Nothing to do."""
        return not self.kills and self.new_sandbox_attempt is None and not self.starts


def latest(records: Iterable[ContainerRecord]) -> ContainerRecord | None:
    """The newest record: highest attempt, then latest creation."""
    best: ContainerRecord | None = None
    for record in records:
        if best is None or (record.attempt, record.created_at) > (best.attempt, best.created_at):
            best = record
    return best


def should_restart(policy: RestartPolicy, exit_code: int) -> bool:
    """Whether an exited container is started again under ``policy``."""
    if policy is RestartPolicy.ALWAYS:
        return True
    if policy is RestartPolicy.ON_FAILURE:
        return exit_code != 0
    return False


def _by_name(records: Sequence[ContainerRecord], kind: ContainerKind) -> dict[str, list[ContainerRecord]]:
    result: dict[str, list[ContainerRecord]] = {}
    for record in records:
        if record.kind is kind:
            result.setdefault(record.container_name, []).append(record)
    return result


def _next_attempt(records: Sequence[ContainerRecord] | None) -> int:
    newest = latest(records or ())
    return 0 if newest is None else newest.attempt + 1


def _held(
    pod: Pod,
    container: Container,
    last: ContainerRecord | None,
    now: float,
    crash_backoff: Backoff,
    start_backoff: Backoff,
    start_failures: Mapping[str, StartFailure],
) -> tuple[str, str, float] | None:
    """Why ``container`` may not start now: (reason, message, seconds left), or None."""
    key = (pod.uid, container.name)
    failure = start_failures.get(container.name)
    if failure is not None:
        left = start_backoff.remaining(key, failure.failed_at, now)
        if left > 0:
            if failure.reason == "ErrImagePull":
                return (
                    failure.held_reason,
                    f'Back-off pulling image "{container.image}": {failure.message}',
                    left,
                )
            return failure.held_reason, failure.message, left
    if last is not None and last.state in (ContainerState.EXITED, ContainerState.CREATED):
        left = crash_backoff.remaining(key, last.finished_at or last.created_at or now, now)
        if left > 0:
            delay = int(crash_backoff.delay(key))
            return (
                "CrashLoopBackOff",
                f"back-off {delay}s restarting failed container={container.name} pod={pod.name}_{pod.namespace}({pod.uid})",
                left,
            )
    return None


def plan_pod(
    pod: Pod,
    records: Sequence[ContainerRecord],
    now: float,
    *,
    crash_backoff: Backoff,
    start_backoff: Backoff,
    start_failures: Mapping[str, StartFailure] | None = None,
    unhealthy: frozenset[str] = frozenset(),
) -> PodPlan:
    """Decide one sync of ``pod``.

    ``start_failures`` holds the last failed start per container name (retried behind ``start_backoff``);
    ``unhealthy`` holds ids of containers whose liveness or startup probe failed.
    """
    failures = start_failures or {}
    held = _Held(pod, now, crash_backoff, start_backoff, failures)
    grace = float(pod.grace_seconds)
    sandboxes = [r for r in records if r.kind is ContainerKind.SANDBOX]
    running_sandboxes = [r for r in sandboxes if r.running]
    sandbox = latest(sandboxes)
    apps = _by_name(records, ContainerKind.APP)
    inits = _by_name(records, ContainerKind.INIT)

    if sandbox is None or not sandbox.running or len(running_sandboxes) > 1:
        if sandbox is not None and _all_done(pod, apps):
            return PodPlan()  # finished pod: nothing will run again, keep it as it ended
        kills = tuple(
            Kill(
                r.id,
                grace,
                "pod sandbox changed",
                sandbox=r.kind is ContainerKind.SANDBOX,
                remove=r.state is ContainerState.CREATED,
            )
            for r in records
            if r.running or r.state is ContainerState.CREATED
        )
        starts: list[Start] = []
        if pod.init_containers:
            first = pod.init_containers[0]
            starts.append(Start(first, ContainerKind.INIT, _next_attempt(inits.get(first.name)), False))
        else:
            for container in pod.containers:
                starts.append(
                    Start(container, ContainerKind.APP, _next_attempt(apps.get(container.name)), False)
                )
        return held.plan(kills, starts, apps, inits, new_sandbox=_next_attempt(sandboxes))

    # Leftovers of a race (a crash between create and relist): containers alive outside the current
    # sandbox and sandboxes created but never started go first; the next sync plans on a clean slate.
    stale = [
        r
        for r in records
        if (r.running or r.state is ContainerState.CREATED)
        and (r is not sandbox if r.kind is ContainerKind.SANDBOX else r.sandbox_id != sandbox.id)
    ]
    if stale:
        return PodPlan(
            kills=tuple(
                Kill(
                    r.id,
                    grace,
                    "not in the pod's sandbox",
                    sandbox=r.kind is ContainerKind.SANDBOX,
                    remove=r.state is ContainerState.CREATED,
                )
                for r in stale
            )
        )

    # Init containers: in order, one at a time, only those of the current sandbox count.
    for container in pod.init_containers:
        mine = [r for r in inits.get(container.name, ()) if r.sandbox_id == sandbox.id]
        if any(r.running for r in mine):
            return PodPlan()  # wait for it to finish
        last = latest(mine)
        if last is None:
            start = [Start(container, ContainerKind.INIT, _next_attempt(inits.get(container.name)), False)]
            return held.plan((), start, apps, inits)
        if last.state is ContainerState.EXITED and last.exit_code == 0:
            continue
        if pod.restart_policy is RestartPolicy.NEVER and last.state is ContainerState.EXITED:
            return PodPlan(failed=True)
        kills = (
            (Kill(last.id, 0.0, "init container never started", remove=True),)
            if last.state is ContainerState.CREATED
            else ()
        )
        start = [Start(container, ContainerKind.INIT, _next_attempt(inits.get(container.name)), True)]
        return held.plan(kills, start, apps, inits)

    kill_list: list[Kill] = []
    start_list: list[Start] = []
    for container in pod.containers:
        history = apps.get(container.name, [])
        last = latest(history)
        # Copies left over from a race (e.g. a crash between create and relist): only the newest may run.
        kill_list += [
            Kill(r.id, grace, "duplicate container") for r in history if r.running and r is not last
        ]
        if last is None:
            start_list.append(Start(container, ContainerKind.APP, 0, False))
        elif last.running:
            if last.spec_hash and last.spec_hash != container.spec_hash:
                kill_list.append(Kill(last.id, grace, "container spec changed"))
                start_list.append(Start(container, ContainerKind.APP, last.attempt + 1, False))
            elif last.id in unhealthy:
                kill_list.append(Kill(last.id, grace, "probe failed"))
        elif last.state is ContainerState.CREATED:
            kill_list.append(Kill(last.id, 0.0, "container never started", remove=True))
            start_list.append(Start(container, ContainerKind.APP, last.attempt + 1, True))
        elif last.state is ContainerState.EXITED:
            changed = bool(last.spec_hash) and last.spec_hash != container.spec_hash
            if changed or should_restart(pod.restart_policy, last.exit_code):
                start_list.append(Start(container, ContainerKind.APP, last.attempt + 1, not changed))
    return held.plan(tuple(kill_list), start_list, apps, inits)


@dataclass(frozen=True, slots=True)
class _Held:
    """Filters starts through the back-off tables and builds the plan."""

    pod: Pod
    now: float
    crash_backoff: Backoff
    start_backoff: Backoff
    failures: Mapping[str, StartFailure]

    def plan(
        self,
        kills: Sequence[Kill],
        starts: Sequence[Start],
        apps: Mapping[str, list[ContainerRecord]],
        inits: Mapping[str, list[ContainerRecord]],
        new_sandbox: int | None = None,
    ) -> PodPlan:
        kept = []
        waiting: dict[str, tuple[str, str]] = {}
        retry: float | None = None
        for start in starts:
            history = (apps if start.kind is ContainerKind.APP else inits).get(start.container.name, [])
            last = latest(history) if start.restart else None
            held = _held(
                self.pod,
                start.container,
                last,
                self.now,
                self.crash_backoff,
                self.start_backoff,
                self.failures,
            )
            if held is None:
                kept.append(start)
            else:
                waiting[start.container.name] = (held[0], held[1])
                retry = held[2] if retry is None else min(retry, held[2])
        if new_sandbox is not None and not kept and not kills:
            # Nothing could start: do not make an empty sandbox yet.
            new_sandbox = None
        return PodPlan(tuple(kills), new_sandbox, tuple(kept), waiting, retry_in=retry)


def _all_done(pod: Pod, apps: Mapping[str, list[ContainerRecord]]) -> bool:
    """Every app container ran and exited for good under the restart policy."""
    if pod.restart_policy is RestartPolicy.ALWAYS:
        return False
    for container in pod.containers:
        last = latest(apps.get(container.name, ()))
        if last is None or last.state is not ContainerState.EXITED:
            return False
        if should_restart(pod.restart_policy, last.exit_code):
            return False
    return True


def plan_teardown(records: Sequence[ContainerRecord], grace: float) -> PodPlan:
    """Stop everything of a deleted pod: app and init containers first, sandboxes last."""
    kills = [
        Kill(r.id, grace, "pod deleted") for r in records if r.kind is not ContainerKind.SANDBOX and r.running
    ]
    kills += [
        Kill(r.id, 0.0, "pod deleted", sandbox=True)
        for r in records
        if r.kind is ContainerKind.SANDBOX and r.running
    ]
    return PodPlan(kills=tuple(kills))
