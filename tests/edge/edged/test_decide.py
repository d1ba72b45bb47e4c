"""The pure sync decisions: what to start, kill and hold back, and the kubelet-style back-off."""

from __future__ import annotations

from typing import Any

import pytest

from kubeedge.edge.edged import decide
from kubeedge.edge.edged.backoff import Backoff
from kubeedge.edge.edged.podspec import Pod, parse_pod
from kubeedge.edge.edged.runtime import ContainerKind, ContainerRecord, ContainerState

NOW = 1_700_000_000.0


def make(containers: list[str], init: list[str] | None = None, policy: str = "Always") -> Pod:
    spec: dict[str, Any] = {
        "containers": [{"name": n, "image": "img:1"} for n in containers],
        "restartPolicy": policy,
        "terminationGracePeriodSeconds": 7,
    }
    if init:
        spec["initContainers"] = [{"name": n, "image": "img:1"} for n in init]
    return parse_pod({"metadata": {"name": "p", "namespace": "d", "uid": "u"}, "spec": spec})


def rec(
    pod: Pod,
    name: str,
    kind: ContainerKind = ContainerKind.APP,
    attempt: int = 0,
    state: ContainerState = ContainerState.RUNNING,
    exit_code: int = 0,
    sandbox_id: str = "sb0",
    finished_at: float = 0.0,
    id: str | None = None,
) -> ContainerRecord:
    spec_hash = ""
    for c in (*pod.containers, *pod.init_containers):
        if c.name == name:
            spec_hash = c.spec_hash
    return ContainerRecord(
        id=id or f"{name}-{attempt}" if kind is not ContainerKind.SANDBOX else (id or sandbox_id),
        pod_uid=pod.uid,
        pod_name=pod.name,
        pod_namespace=pod.namespace,
        container_name=name,
        kind=kind,
        attempt=attempt,
        state=state,
        spec_hash=spec_hash,
        created_at=NOW - 100 + attempt,
        finished_at=finished_at,
        exit_code=exit_code,
        sandbox_id=sandbox_id if kind is not ContainerKind.SANDBOX else "",
    )


def sandbox(pod: Pod, attempt: int = 0, running: bool = True, id: str = "sb0") -> ContainerRecord:
    state = ContainerState.RUNNING if running else ContainerState.EXITED
    return rec(pod, "POD", ContainerKind.SANDBOX, attempt, state, id=id, sandbox_id=id)


def plan(pod: Pod, records: list[ContainerRecord], now: float = NOW, **kw: Any) -> decide.PodPlan:
    kw.setdefault("crash_backoff", Backoff())
    kw.setdefault("start_backoff", Backoff())
    return decide.plan_pod(pod, records, now, **kw)


def test_new_pod_gets_a_sandbox_and_all_app_containers() -> None:
    pod = make(["a", "b"])
    result = plan(pod, [])
    assert result.new_sandbox_attempt == 0
    assert [(s.container.name, s.attempt, s.restart) for s in result.starts] == [
        ("a", 0, False),
        ("b", 0, False),
    ]
    assert result.kills == ()


def test_healthy_pod_is_left_alone() -> None:
    pod = make(["a"])
    assert plan(pod, [sandbox(pod), rec(pod, "a")]).idle


def test_exited_container_restarts_at_once_then_backs_off() -> None:
    pod = make(["a"])
    crash = Backoff()
    records = [sandbox(pod), rec(pod, "a", state=ContainerState.EXITED, exit_code=1, finished_at=NOW - 1)]
    first = plan(pod, records, crash_backoff=crash)
    assert [(s.attempt, s.restart) for s in first.starts] == [(1, True)]
    crash.next(("u", "a"), NOW)  # what the shell does when it restarts it
    records = [
        sandbox(pod),
        rec(pod, "a", attempt=1, state=ContainerState.EXITED, exit_code=1, finished_at=NOW + 1),
    ]
    second = plan(pod, records, now=NOW + 2, crash_backoff=crash)
    assert second.starts == ()
    reason, message = second.waiting["a"]
    assert reason == "CrashLoopBackOff"
    assert message == "back-off 10s restarting failed container=a pod=p_d(u)"
    assert second.retry_in == pytest.approx(9.0)
    third = plan(pod, records, now=NOW + 11.5, crash_backoff=crash)
    assert [(s.attempt, s.restart) for s in third.starts] == [(2, True)]


@pytest.mark.parametrize(
    ("policy", "exit_code", "restarts"),
    [
        ("Always", 0, True),
        ("Always", 3, True),
        ("OnFailure", 0, False),
        ("OnFailure", 3, True),
        ("Never", 3, False),
    ],
)
def test_restart_policy(policy: str, exit_code: int, restarts: bool) -> None:
    pod = make(["a"], policy=policy)
    result = plan(pod, [sandbox(pod), rec(pod, "a", state=ContainerState.EXITED, exit_code=exit_code)])
    assert bool(result.starts) is restarts


def test_init_containers_run_one_at_a_time_in_order() -> None:
    pod = make(["app"], init=["i1", "i2"])
    first = plan(pod, [])
    assert first.new_sandbox_attempt == 0
    assert [(s.container.name, s.kind) for s in first.starts] == [("i1", ContainerKind.INIT)]
    running = plan(pod, [sandbox(pod), rec(pod, "i1", ContainerKind.INIT)])
    assert running.idle
    done = [sandbox(pod), rec(pod, "i1", ContainerKind.INIT, state=ContainerState.EXITED)]
    assert [s.container.name for s in plan(pod, done).starts] == ["i2"]
    all_done = [*done, rec(pod, "i2", ContainerKind.INIT, state=ContainerState.EXITED)]
    assert [(s.container.name, s.kind) for s in plan(pod, all_done).starts] == [("app", ContainerKind.APP)]


def test_init_containers_of_an_old_sandbox_do_not_count() -> None:
    pod = make(["app"], init=["i1"])
    records = [
        sandbox(pod, 1, id="sb1"),
        rec(pod, "i1", ContainerKind.INIT, state=ContainerState.EXITED, sandbox_id="sb0"),
    ]
    result = plan(pod, records)
    assert [(s.container.name, s.attempt) for s in result.starts] == [("i1", 1)]


def test_failed_init_container_under_never_fails_the_pod() -> None:
    pod = make(["app"], init=["i1"], policy="Never")
    result = plan(
        pod, [sandbox(pod), rec(pod, "i1", ContainerKind.INIT, state=ContainerState.EXITED, exit_code=2)]
    )
    assert result.failed
    assert result.idle


def test_dead_sandbox_restarts_the_whole_pod() -> None:
    pod = make(["a"])
    records = [sandbox(pod, running=False), rec(pod, "a", attempt=3)]
    result = plan(pod, records)
    assert [(k.container_id, k.grace) for k in result.kills] == [("a-3", 7.0)]
    assert result.new_sandbox_attempt == 1
    assert [(s.container.name, s.attempt, s.restart) for s in result.starts] == [("a", 4, False)]


def test_two_running_sandboxes_are_replaced() -> None:
    pod = make(["a"])
    records = [sandbox(pod, 0, id="s0"), sandbox(pod, 1, id="s1"), rec(pod, "a", sandbox_id="s1")]
    result = plan(pod, records)
    assert {k.container_id for k in result.kills} == {"s0", "s1", "a-0"}
    assert result.new_sandbox_attempt == 2


def test_finished_pod_does_not_get_a_new_sandbox() -> None:
    pod = make(["a"], policy="OnFailure")
    assert plan(pod, [sandbox(pod, running=False), rec(pod, "a", state=ContainerState.EXITED)]).idle


def test_changed_spec_replaces_the_container() -> None:
    pod = make(["a"])
    old = rec(pod, "a")
    stale = ContainerRecord(**{**{f: getattr(old, f) for f in old.__slots__}, "spec_hash": "different"})
    result = plan(pod, [sandbox(pod), stale])
    assert [k.reason for k in result.kills] == ["container spec changed"]
    assert [(s.attempt, s.restart) for s in result.starts] == [(1, False)]


def test_failed_liveness_kills_the_container() -> None:
    pod = make(["a"])
    result = plan(pod, [sandbox(pod), rec(pod, "a")], unhealthy=frozenset({"a-0"}))
    assert [(k.container_id, k.reason) for k in result.kills] == [("a-0", "probe failed")]
    assert result.starts == ()


def test_created_but_never_started_container_is_removed_and_retried() -> None:
    pod = make(["a"])
    result = plan(pod, [sandbox(pod), rec(pod, "a", state=ContainerState.CREATED)])
    assert [(k.container_id, k.remove) for k in result.kills] == [("a-0", True)]
    assert [s.attempt for s in result.starts] == [1]


def test_image_pull_failure_is_held_as_image_pull_backoff() -> None:
    pod = make(["a"])
    start_backoff = Backoff()
    start_backoff.next(("u", "a"), NOW)
    failures = {"a": decide.StartFailure("ErrImagePull", "connection refused", NOW)}
    result = plan(pod, [sandbox(pod)], now=NOW + 1, start_backoff=start_backoff, start_failures=failures)
    assert result.starts == ()
    assert result.waiting["a"] == ("ImagePullBackOff", 'Back-off pulling image "img:1": connection refused')
    later = plan(pod, [sandbox(pod)], now=NOW + 10.5, start_backoff=start_backoff, start_failures=failures)
    assert [s.container.name for s in later.starts] == ["a"]


def test_no_empty_sandbox_when_nothing_can_start() -> None:
    pod = make(["a"])
    start_backoff = Backoff()
    start_backoff.next(("u", "a"), NOW)
    failures = {"a": decide.StartFailure("ErrImagePull", "nope", NOW)}
    result = plan(pod, [], now=NOW + 1, start_backoff=start_backoff, start_failures=failures)
    assert result.new_sandbox_attempt is None
    assert result.waiting["a"][0] == "ImagePullBackOff"


def test_teardown_stops_apps_with_grace_then_sandboxes() -> None:
    pod = make(["a", "b"])
    records = [sandbox(pod), rec(pod, "a"), rec(pod, "b", state=ContainerState.EXITED)]
    result = decide.plan_teardown(records, 5)
    assert [(k.container_id, k.grace, k.sandbox) for k in result.kills] == [
        ("a-0", 5, False),
        ("sb0", 0.0, True),
    ]


def test_backoff_doubles_caps_and_resets() -> None:
    backoff = Backoff()
    delays = [backoff.next("k", NOW + i) for i in range(7)]
    assert delays == [10, 20, 40, 80, 160, 300, 300]
    assert backoff.remaining("k", NOW + 6, NOW + 100) == pytest.approx(206)
    assert backoff.next("k", NOW + 6 + 601) == 10  # idle for more than twice the maximum
    backoff.gc(NOW + 10_000)
    assert len(backoff) == 0
    assert backoff.remaining("k", NOW, NOW) == 0
