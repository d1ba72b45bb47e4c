"""Pod status computation (pure) and probe bookkeeping."""

from __future__ import annotations

from typing import Any

import pytest

from kubeedge.edge.edged import podstatus
from kubeedge.edge.edged.podspec import Probe, ProbeKind, parse_pod
from kubeedge.edge.edged.probes import ProbeResult, ProbeTracker, ProbeType
from kubeedge.edge.edged.runtime import ContainerKind, ContainerState
from tests.edge.edged.test_decide import NOW, make, rec, sandbox


def inp(**kw: Any) -> podstatus.StatusInput:
    return podstatus.StatusInput(host_ip="10.0.0.5", now=kw.pop("now", NOW), start_time=NOW - 200, **kw)


def cond(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == kind)


def test_running_pod_without_probes_is_ready() -> None:
    pod = make(["a"])
    sb = sandbox(pod)
    sb = type(sb)(**{**{f: getattr(sb, f) for f in sb.__slots__}, "ip": "172.17.0.9"})
    status = podstatus.compute_status(pod, [sb, rec(pod, "a")], inp())
    assert status["phase"] == "Running"
    assert status["podIP"] == "172.17.0.9"
    assert status["podIPs"] == [{"ip": "172.17.0.9"}]
    assert status["hostIP"] == "10.0.0.5"
    assert cond(status, "Ready")["status"] == "True"
    assert cond(status, "ContainersReady")["status"] == "True"
    assert cond(status, "Initialized")["status"] == "True"
    assert cond(status, "PodScheduled")["status"] == "True"
    entry = status["containerStatuses"][0]
    assert entry["state"] == {"running": {"startedAt": podstatus.rfc3339(NOW - 100)}}
    assert (entry["ready"], entry["started"], entry["restartCount"]) == (True, True, 0)
    assert entry["containerID"] == "docker://a-0"
    assert status["qosClass"] == "BestEffort"


def test_readiness_probe_gates_ready_and_transition_time_is_kept() -> None:
    pod = parse_pod(
        {
            "metadata": {"name": "p", "namespace": "d", "uid": "u"},
            "spec": {
                "containers": [
                    {"name": "a", "image": "i:1", "readinessProbe": {"exec": {"command": ["true"]}}}
                ]
            },
        }
    )
    records = [sandbox(pod), rec(pod, "a")]
    unready = podstatus.compute_status(pod, records, inp())
    assert cond(unready, "Ready")["status"] == "False"
    assert cond(unready, "Ready")["message"] == "containers with unready status: [a]"
    views = {"a-0": podstatus.ProbeView(ready=True, started=True)}
    ready = podstatus.compute_status(pod, records, inp(probes=views, previous=unready, now=NOW + 5))
    assert cond(ready, "Ready")["lastTransitionTime"] == podstatus.rfc3339(NOW + 5)
    assert cond(ready, "PodScheduled")["lastTransitionTime"] == podstatus.rfc3339(NOW)
    again = podstatus.compute_status(pod, records, inp(probes=views, previous=ready, now=NOW + 50))
    assert again == ready  # nothing changed: same dict, so nothing is emitted


def test_crash_loop_shows_waiting_with_last_state() -> None:
    pod = make(["a"])
    records = [
        sandbox(pod),
        rec(pod, "a", attempt=2, state=ContainerState.EXITED, exit_code=1, finished_at=NOW - 5),
        rec(pod, "a", attempt=1, state=ContainerState.EXITED, exit_code=1, finished_at=NOW - 50),
    ]
    waiting = {"a": ("CrashLoopBackOff", "back-off 20s restarting failed container=a")}
    status = podstatus.compute_status(pod, records, inp(waiting=waiting))
    entry = status["containerStatuses"][0]
    assert entry["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert entry["lastState"]["terminated"]["exitCode"] == 1
    assert entry["lastState"]["terminated"]["reason"] == "Error"
    assert entry["lastState"]["terminated"]["containerID"] == "docker://a-2"
    assert entry["restartCount"] == 2
    assert status["phase"] == "Running"  # restartPolicy Always: still running, kubelet says the same


@pytest.mark.parametrize(
    ("policy", "codes", "phase"),
    [
        ("Never", [0, 0], "Succeeded"),
        ("Never", [0, 1], "Failed"),
        ("OnFailure", [0, 0], "Succeeded"),
        ("Always", [0, 0], "Running"),
    ],
)
def test_terminal_phases(policy: str, codes: list[int], phase: str) -> None:
    pod = make(["a", "b"], policy=policy)
    records = [sandbox(pod)] + [
        rec(pod, name, state=ContainerState.EXITED, exit_code=code)
        for name, code in zip(["a", "b"], codes, strict=True)
    ]
    status = podstatus.compute_status(pod, records, inp())
    assert status["phase"] == phase
    if phase in ("Succeeded", "Failed"):
        assert cond(status, "Ready")["reason"] == "PodCompleted"
        assert status["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"


def test_pending_pod_with_init_container_running() -> None:
    pod = make(["app"], init=["i1"])
    status = podstatus.compute_status(pod, [sandbox(pod), rec(pod, "i1", ContainerKind.INIT)], inp())
    assert status["phase"] == "Pending"
    assert cond(status, "Initialized")["status"] == "False"
    assert cond(status, "Initialized")["message"] == "containers with incomplete status: [i1]"
    assert "running" in status["initContainerStatuses"][0]["state"]
    assert status["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}


def test_waiting_reason_from_pull_failure() -> None:
    pod = make(["a"])
    status = podstatus.compute_status(
        pod, [sandbox(pod)], inp(waiting={"a": ("ErrImagePull", "no such host")})
    )
    assert status["phase"] == "Pending"
    assert status["containerStatuses"][0]["state"] == {
        "waiting": {"reason": "ErrImagePull", "message": "no such host"}
    }


def test_qos_classes() -> None:
    def qos(resources: dict[str, Any]) -> str:
        pod = parse_pod(
            {
                "metadata": {"name": "p", "uid": "u"},
                "spec": {"containers": [{"name": "a", "image": "i:1", "resources": resources}]},
            }
        )
        return podstatus.qos_class(pod)

    assert qos({}) == "BestEffort"
    assert qos({"limits": {"cpu": "1", "memory": "1Gi"}}) == "Guaranteed"
    assert qos({"limits": {"cpu": "1"}}) == "Burstable"
    assert qos({"requests": {"cpu": "1"}, "limits": {"cpu": "2", "memory": "1Gi"}}) == "Burstable"


def test_status_of_an_unparseable_pod() -> None:
    status = podstatus.without_pod(
        ("InvalidPodSpec", "spec.containers[0].image: required"), NOW, "10.0.0.5", {}
    )
    assert (status["phase"], status["reason"]) == ("Pending", "InvalidPodSpec")
    assert cond(status, "Ready")["message"] == "spec.containers[0].image: required"


def test_probe_thresholds_and_timing() -> None:
    probe = Probe(
        ProbeKind.EXEC, command=("x",), initial_delay=5, period=2, success_threshold=2, failure_threshold=3
    )
    readiness = ProbeTracker(probe, ProbeType.READINESS, started_at=NOW)
    assert readiness.result is ProbeResult.FAILURE
    assert readiness.wait(NOW) == 5
    assert not readiness.record(True, NOW + 5)  # one success is not enough
    assert readiness.wait(NOW + 5) == 2
    assert readiness.record(True, NOW + 7)
    assert readiness.result is ProbeResult.SUCCESS
    assert not readiness.record(False, NOW + 9)
    assert not readiness.record(False, NOW + 11)
    assert readiness.record(False, NOW + 13, "exit 1")
    assert (readiness.result, readiness.message) == (ProbeResult.FAILURE, "exit 1")
    liveness = ProbeTracker(probe, ProbeType.LIVENESS, started_at=NOW)
    startup = ProbeTracker(probe, ProbeType.STARTUP, started_at=NOW)
    assert liveness.result is ProbeResult.SUCCESS
    assert startup.result is ProbeResult.UNKNOWN
