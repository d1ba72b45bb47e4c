"""Properties of the sync planner over arbitrary observed containers (Hypothesis)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kubeedge.edge.edged import decide
from kubeedge.edge.edged.backoff import Backoff
from kubeedge.edge.edged.runtime import ContainerKind, ContainerRecord, ContainerState
from tests.edge.edged.test_decide import NOW, make

POD = make(["a", "b"], init=["i"])
HASHES = {c.name: c.spec_hash for c in (*POD.containers, *POD.init_containers)}


@st.composite
def records(draw: st.DrawFn) -> list[ContainerRecord]:
    count = draw(st.integers(0, 8))
    result = []
    for n in range(count):
        kind = draw(st.sampled_from(list(ContainerKind)))
        name = {"sandbox": "POD", "init": "i", "app": draw(st.sampled_from(["a", "b"]))}[kind.value]
        result.append(
            ContainerRecord(
                id=f"c{n}",
                pod_uid="u",
                pod_name="p",
                pod_namespace="d",
                container_name=name,
                kind=kind,
                attempt=draw(st.integers(0, 5)),
                state=draw(st.sampled_from(list(ContainerState))),
                spec_hash=draw(st.sampled_from([HASHES.get(name, ""), "stale"])),
                created_at=NOW - draw(st.integers(0, 1000)),
                finished_at=NOW - draw(st.integers(0, 1000)),
                exit_code=draw(st.sampled_from([0, 1, 137])),
                sandbox_id=draw(st.sampled_from(["c0", "c1", "gone"])),
            )
        )
    return result


@given(records(), st.sampled_from(["Always", "OnFailure", "Never"]))
def test_plans_are_consistent(observed: list[ContainerRecord], policy: str) -> None:
    pod = make(["a", "b"], init=["i"], policy=policy)
    plan = decide.plan_pod(pod, observed, NOW, crash_backoff=Backoff(), start_backoff=Backoff())
    ids = {r.id for r in observed}
    assert {k.container_id for k in plan.kills} <= ids
    assert len({k.container_id for k in plan.kills}) == len(plan.kills)
    inits = [s for s in plan.starts if s.kind is ContainerKind.INIT]
    assert len(inits) <= 1
    assert not (inits and any(s.kind is ContainerKind.APP for s in plan.starts))
    killed = {k.container_id for k in plan.kills}
    for start in plan.starts:
        same = [r for r in observed if r.container_name == start.container.name and r.kind is start.kind]
        # A new container always gets a higher restart count than any copy seen.
        assert all(start.attempt > r.attempt for r in same)
        # Nothing is started next to a still-running copy that is not being killed.
        assert not any(r.running and r.id not in killed for r in same)
    if plan.new_sandbox_attempt is not None:
        assert all(plan.new_sandbox_attempt > r.attempt for r in observed if r.kind is ContainerKind.SANDBOX)
        running = [r for r in observed if r.running or r.state is ContainerState.CREATED]
        assert {r.id for r in running} <= killed
