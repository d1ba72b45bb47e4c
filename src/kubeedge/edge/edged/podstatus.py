"""Pod status as kubelet computes it: phase, conditions, containerStatuses, IPs, QoS class.

Pure: :func:`compute_status` takes the pod, its container records, what the sync decided (waiting
reasons), probe verdicts, the previous status (to keep condition transition times) and ``now``; it
returns a ``PodStatus`` JSON dict. Equal inputs give equal output, so callers emit a status only when
it differs from the last one sent.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubeedge.edge.edged.decide import latest, should_restart
from kubeedge.edge.edged.podspec import Container, Pod, RestartPolicy
from kubeedge.edge.edged.runtime import ContainerKind, ContainerRecord, ContainerState


def rfc3339(ts: float) -> str:
    """Kubernetes' second-precision UTC timestamp."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@dataclass(frozen=True, slots=True)
class ProbeView:
    """Probe verdicts of one container instance."""

    ready: bool
    started: bool


@dataclass(frozen=True, slots=True)
class StatusInput:
    """Everything :func:`compute_status` reads besides the pod and records."""

    host_ip: str
    now: float
    start_time: float
    waiting: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    """Container name -> (reason, message) from the last sync (back-off, pull or config errors)."""
    probes: Mapping[str, ProbeView] = field(default_factory=dict)
    """Container id -> probe verdicts; absent means no probes ran yet."""
    pod_error: tuple[str, str] | None = None
    """(reason, message) that keeps the whole pod from running (e.g. ``InvalidPodSpec``)."""
    failed: bool = False
    previous: Mapping[str, Any] | None = None


def _terminated(record: ContainerRecord) -> dict[str, Any]:
    state: dict[str, Any] = {
        "exitCode": record.exit_code,
        "reason": record.reason or ("Completed" if record.exit_code == 0 else "Error"),
        "startedAt": rfc3339(record.started_at) if record.started_at else None,
        "finishedAt": rfc3339(record.finished_at) if record.finished_at else None,
        "containerID": f"docker://{record.id}",
    }
    if record.message:
        state["message"] = record.message
    return {"terminated": state}


def container_status(
    container: Container,
    history: Sequence[ContainerRecord],
    inp: StatusInput,
    policy: RestartPolicy,
    init: bool,
) -> dict[str, Any]:
    """One ``containerStatuses`` (or ``initContainerStatuses``) entry."""
    ordered = sorted(history, key=lambda r: (r.attempt, r.created_at), reverse=True)
    last = ordered[0] if ordered else None
    previous = ordered[1] if len(ordered) > 1 else None
    status: dict[str, Any] = {
        "name": container.name,
        "image": container.image,
        "imageID": "",
        "ready": False,
        "restartCount": last.attempt if last else 0,
        "started": False,
        "state": {},
        "lastState": {},
    }
    if last is not None:
        status["containerID"] = f"docker://{last.id}"
        status["imageID"] = f"docker://{last.image_id}" if last.image_id else ""
    waiting = inp.waiting.get(container.name)
    if last is not None and last.running:
        view = inp.probes.get(
            last.id, ProbeView(ready=container.readiness is None, started=container.startup is None)
        )
        status["state"] = {"running": {"startedAt": rfc3339(last.started_at or last.created_at)}}
        status["started"] = view.started
        status["ready"] = view.ready and view.started and not init
        if previous is not None and previous.state is ContainerState.EXITED:
            status["lastState"] = _terminated(previous)
        return status
    if last is not None and last.state is ContainerState.EXITED:
        if init:
            restarts = last.exit_code != 0 and policy is not RestartPolicy.NEVER
        else:
            restarts = should_restart(policy, last.exit_code)
        if not restarts:
            status["state"] = _terminated(last)
            status["ready"] = init and last.exit_code == 0
            if previous is not None and previous.state is ContainerState.EXITED:
                status["lastState"] = _terminated(previous)
            return status
        # To be restarted (kubelet: Waiting with the exit as lastState).
        reason, message = waiting or ("ContainerCreating", "")
        status["state"] = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        status["lastState"] = _terminated(last)
        return status
    reason, message = waiting or ("ContainerCreating", "")
    status["state"] = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
    return status


def _condition(kind: str, ok: bool, inp: StatusInput, reason: str = "", message: str = "") -> dict[str, Any]:
    status = "True" if ok else "False"
    when = rfc3339(inp.now)
    for old in (inp.previous or {}).get("conditions") or []:
        if old.get("type") == kind and old.get("status") == status and old.get("lastTransitionTime"):
            when = old["lastTransitionTime"]
    condition: dict[str, Any] = {
        "type": kind,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": when,
    }
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


def qos_class(pod: Pod) -> str:
    """``Guaranteed``, ``Burstable`` or ``BestEffort`` from the containers' resources."""
    resources = [c.get("resources") or {} for c in (pod.raw.get("spec") or {}).get("containers") or []]
    if not any((r.get("limits") or r.get("requests")) for r in resources):
        return "BestEffort"
    for r in resources:
        limits_ = r.get("limits") or {}
        requests = r.get("requests") or {}
        if "cpu" not in limits_ or "memory" not in limits_:
            return "Burstable"
        if any(requests.get(k, limits_[k]) != limits_[k] for k in ("cpu", "memory")):
            return "Burstable"
    return "Guaranteed"


def compute_status(pod: Pod, records: Sequence[ContainerRecord], inp: StatusInput) -> dict[str, Any]:
    """The pod's ``status`` object."""
    sandbox = latest(r for r in records if r.kind is ContainerKind.SANDBOX)
    pod_ip = ""
    if sandbox is not None and sandbox.running:
        pod_ip = inp.host_ip if pod.host_network else sandbox.ip
    by_kind: dict[ContainerKind, dict[str, list[ContainerRecord]]] = {
        ContainerKind.APP: {},
        ContainerKind.INIT: {},
    }
    for record in records:
        if record.kind in by_kind:
            by_kind[record.kind].setdefault(record.container_name, []).append(record)
    init_statuses = []
    initialized = True
    for container in pod.init_containers:
        history = [
            r
            for r in by_kind[ContainerKind.INIT].get(container.name, [])
            if sandbox is None or r.sandbox_id == sandbox.id
        ] or by_kind[ContainerKind.INIT].get(container.name, [])
        entry = container_status(container, history, inp, pod.restart_policy, init=True)
        init_statuses.append(entry)
        last = latest(history)
        if last is None or last.state is not ContainerState.EXITED or last.exit_code != 0:
            initialized = False
    statuses = []
    for container in pod.containers:
        history = by_kind[ContainerKind.APP].get(container.name, [])
        statuses.append(container_status(container, history, inp, pod.restart_policy, init=False))
    phase = _phase(pod, statuses, initialized, inp)
    all_ready = bool(statuses) and all(s["ready"] for s in statuses)
    not_ready = [s["name"] for s in statuses if not s["ready"]]
    not_ready_msg = f"containers with unready status: [{' '.join(not_ready)}]" if not_ready else ""
    pending_init = [
        s["name"]
        for s in init_statuses
        if "terminated" not in s["state"] or s["state"]["terminated"]["exitCode"] != 0
    ]
    terminal = phase in ("Succeeded", "Failed")
    conditions = [
        _condition(
            "Initialized",
            initialized,
            inp,
            "" if initialized else "ContainersNotInitialized",
            "" if initialized else f"containers with incomplete status: [{' '.join(pending_init)}]",
        ),
        _condition(
            "Ready",
            all_ready and not terminal,
            inp,
            "" if all_ready and not terminal else ("PodCompleted" if terminal else "ContainersNotReady"),
            "" if all_ready or terminal else not_ready_msg,
        ),
        _condition(
            "ContainersReady",
            all_ready and not terminal,
            inp,
            "" if all_ready and not terminal else ("PodCompleted" if terminal else "ContainersNotReady"),
            "" if all_ready or terminal else not_ready_msg,
        ),
        _condition("PodScheduled", True, inp),
    ]
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": inp.host_ip,
        "hostIPs": [{"ip": inp.host_ip}],
        "startTime": rfc3339(inp.start_time),
        "containerStatuses": statuses,
        "qosClass": qos_class(pod),
    }
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    if init_statuses:
        status["initContainerStatuses"] = init_statuses
    if inp.pod_error is not None:
        status["reason"], status["message"] = inp.pod_error
    return status


def _phase(pod: Pod, statuses: Sequence[Mapping[str, Any]], initialized: bool, inp: StatusInput) -> str:
    """kubelet's getPhase."""
    if inp.failed:
        return "Failed"
    if not initialized:
        return "Pending"
    running = waiting = stopped = succeeded = 0
    for status in statuses:
        state = status["state"]
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            succeeded += state["terminated"]["exitCode"] == 0
        elif status["lastState"]:
            stopped += 1
        else:
            waiting += 1
    if waiting == len(statuses) and not stopped:
        return "Pending"
    if running > 0:
        return "Running"
    if stopped > 0 and waiting == 0:
        if pod.restart_policy is RestartPolicy.ALWAYS:
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if pod.restart_policy is RestartPolicy.NEVER:
            return "Failed"
        return "Running"
    return "Pending"


def without_pod(
    pod_error: tuple[str, str], now: float, host_ip: str, raw: Mapping[str, Any]
) -> dict[str, Any]:
    """Status of a pod that could not even be parsed: Pending with the reason, nothing running."""
    return {
        "phase": "Pending",
        "reason": pod_error[0],
        "message": pod_error[1],
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": rfc3339(now),
            },
            {
                "type": "Ready",
                "status": "False",
                "lastProbeTime": None,
                "lastTransitionTime": rfc3339(now),
                "reason": pod_error[0],
                "message": pod_error[1],
            },
        ],
        "qosClass": "BestEffort",
    }
