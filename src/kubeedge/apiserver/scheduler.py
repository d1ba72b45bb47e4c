"""A minimal pod scheduler for the embedded control plane.

:func:`fit` is pure: given a pod, the nodes and the resources already
requested on each node, it picks a node or explains why none fits
(Ready condition, ``spec.unschedulable``, nodeSelector, required node
affinity on labels and ``metadata.name``, NoSchedule/NoExecute taints against
tolerations, requested cpu/memory/pod count against allocatable). The
:class:`Scheduler` keeps the pending set and per-node usage up to date from
store events and binds through the API; pods that fit nowhere stay Pending with
``PodScheduled=False``/``Unschedulable`` and a ``FailedScheduling`` Event.
Only pods whose ``schedulerName`` is ``default-scheduler`` are considered.
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import trio

from kubeedge.apiserver import errors
from kubeedge.apiserver.api import Api, set_condition
from kubeedge.apiserver.http import ChangeSignal
from kubeedge.apiserver.storage import Event, EventType
from kubeedge.kit import log

_log = log.get(__name__)
COMPONENT = "default-scheduler"

_SUFFIX = {
    "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4, "Pi": 1024**5, "Ei": 1024**6,
    "n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
}  # fmt: skip
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|)$")


def quantity(text: Any) -> float:
    """A Kubernetes quantity (``100m``, ``1.5``, ``128Mi``) as a float; ValueError if malformed."""
    m = _QUANTITY.match(str(text).strip())
    if not m:
        raise ValueError(f"invalid quantity {text!r}")
    return float(m.group(1)) * _SUFFIX[m.group(2)]


@dataclass(frozen=True)
class Request:
    """What a pod asks of a node."""

    cpu: float = 0.0
    memory: float = 0.0


def pod_request(pod: dict[str, Any]) -> Request:
    """Sum of container requests (limits stand in for missing requests), max with each init container."""
    spec = pod.get("spec") or {}

    def of(c: dict[str, Any]) -> tuple[float, float]:
        res = c.get("resources") or {}
        req = {**(res.get("limits") or {}), **(res.get("requests") or {})}
        try:
            return quantity(req.get("cpu", 0)), quantity(req.get("memory", 0))
        except ValueError:
            return 0.0, 0.0

    cpu = mem = 0.0
    for c in spec.get("containers") or []:
        a, b = of(c)
        cpu, mem = cpu + a, mem + b
    for c in spec.get("initContainers") or []:
        a, b = of(c)
        cpu, mem = max(cpu, a), max(mem, b)
    return Request(cpu, mem)


def _expr_matches(expr: dict[str, Any], labels: dict[str, str]) -> bool:
    key, op, values = expr.get("key", ""), expr.get("operator"), [str(v) for v in expr.get("values") or []]
    have = labels.get(key)
    if op == "In":
        return have is not None and have in values
    if op == "NotIn":
        return have is None or have not in values
    if op == "Exists":
        return have is not None
    if op == "DoesNotExist":
        return have is None
    if op in ("Gt", "Lt") and have is not None and values:
        try:
            return int(have) > int(values[0]) if op == "Gt" else int(have) < int(values[0])
        except ValueError:
            return False
    return False


def affinity_matches(pod: dict[str, Any], node: dict[str, Any]) -> bool:
    """nodeSelector and required node affinity of ``pod`` hold on ``node``."""
    spec = pod.get("spec") or {}
    labels = node["metadata"].get("labels") or {}
    for key, value in (spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})  # fmt: skip
    terms = required.get("nodeSelectorTerms")
    if not terms:
        return True
    fields = {"metadata.name": node["metadata"]["name"]}
    for term in terms:
        exprs = term.get("matchExpressions") or []
        fexprs = term.get("matchFields") or []
        if not exprs and not fexprs:
            continue
        if all(_expr_matches(e, labels) for e in exprs) and all(_expr_matches(e, fields) for e in fexprs):
            return True
    return False


def _tolerates(tol: dict[str, Any], taint: dict[str, Any]) -> bool:
    if tol.get("effect") and tol["effect"] != taint.get("effect"):
        return False
    op = tol.get("operator", "Equal")
    if not tol.get("key"):
        return bool(op == "Exists")
    if tol["key"] != taint.get("key"):
        return False
    return bool(op == "Exists" or tol.get("value", "") == taint.get("value", ""))


def untolerated_taint(pod: dict[str, Any], node: dict[str, Any]) -> dict[str, Any] | None:
    """The first NoSchedule/NoExecute taint of ``node`` that ``pod`` does not tolerate."""
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if not any(_tolerates(t, taint) for t in tolerations if isinstance(t, dict)):
            return dict(taint)
    return None


def node_ready(node: dict[str, Any]) -> bool:
    """The node's Ready condition is True."""
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (node.get("status") or {}).get("conditions") or []
    )


def fit(
    pod: dict[str, Any], nodes: list[dict[str, Any]], used: dict[str, tuple[Request, int]]
) -> tuple[str | None, str]:
    """The node to bind ``pod`` to, or None and the FailedScheduling message."""
    want = pod_request(pod)
    reasons: Counter[str] = Counter()
    best: tuple[float, str] | None = None
    for node in nodes:
        name = node["metadata"]["name"]
        if not node_ready(node):
            reasons["node(s) were not ready"] += 1
            continue
        if (node.get("spec") or {}).get("unschedulable"):
            reasons["node(s) were unschedulable"] += 1
            continue
        if not affinity_matches(pod, node):
            reasons["node(s) didn't match Pod's node affinity/selector"] += 1
            continue
        taint = untolerated_taint(pod, node)
        if taint is not None:
            text = f"{taint.get('key')}: {taint['value']}" if taint.get("value") else str(taint.get("key"))
            reasons[f"node(s) had untolerated taint {{{text}}}"] += 1
            continue
        alloc = (node.get("status") or {}).get("allocatable") or {}
        have, count = used.get(name, (Request(), 0))
        try:
            cpu_cap = quantity(alloc["cpu"]) if "cpu" in alloc else float("inf")
            mem_cap = quantity(alloc["memory"]) if "memory" in alloc else float("inf")
            pods_cap = quantity(alloc["pods"]) if "pods" in alloc else float("inf")
        except ValueError:
            reasons["node(s) had invalid allocatable"] += 1
            continue
        short = False
        if count + 1 > pods_cap:
            reasons["Too many pods"] += 1
            short = True
        if have.cpu + want.cpu > cpu_cap + 1e-9:
            reasons["Insufficient cpu"] += 1
            short = True
        if have.memory + want.memory > mem_cap:
            reasons["Insufficient memory"] += 1
            short = True
        if short:
            continue
        free = (cpu_cap - have.cpu - want.cpu) / cpu_cap if cpu_cap not in (0, float("inf")) else 1.0
        score = (-free, name)
        if best is None or score < (best[0], best[1]):
            best = (-free, name)
    if best is not None:
        return best[1], ""
    detail = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
    message = f"0/{len(nodes)} nodes are available" + (f": {detail}." if detail else ".")
    return None, message


class Scheduler:
    """Pending pods and per-node usage, fed by store events; binds through the API."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.pending: set[tuple[str, str]] = set()
        self.fresh: set[tuple[str, str]] = set()
        self.bound: dict[tuple[str, str], tuple[str, Request]] = {}
        self.retry_all = True
        for ns, name, _ in api.store.scan("pods", None):
            pod = api.store.get("pods", ns, name)
            if pod is not None:
                self._track(pod)

    def _wants(self, pod: dict[str, Any]) -> bool:
        spec = pod.get("spec") or {}
        return (
            not spec.get("nodeName")
            and spec.get("schedulerName", COMPONENT) == COMPONENT
            and not pod["metadata"].get("deletionTimestamp")
        )

    def _track(self, pod: dict[str, Any]) -> None:
        key = (pod["metadata"].get("namespace", ""), pod["metadata"]["name"])
        node = (pod.get("spec") or {}).get("nodeName")
        phase = (pod.get("status") or {}).get("phase")
        if node and phase not in ("Succeeded", "Failed"):
            self.bound[key] = (str(node), pod_request(pod))
        elif self.bound.pop(key, None) is not None:
            self.retry_all = True
        if self._wants(pod):
            if key not in self.pending:
                self.fresh.add(key)
            self.pending.add(key)
        else:
            self.pending.discard(key)
            self.fresh.discard(key)

    def observe(self, ev: Event) -> None:
        """Store listener: keep the pending set and usage current."""
        if ev.resource == "nodes":
            self.retry_all = True
        elif ev.resource == "pods":
            if ev.type is EventType.DELETED:
                key = (ev.namespace, ev.obj["metadata"]["name"])
                self.pending.discard(key)
                self.fresh.discard(key)
                if self.bound.pop(key, None) is not None:
                    self.retry_all = True
            else:
                self._track(ev.obj)

    def _usage(self) -> dict[str, tuple[Request, int]]:
        out: dict[str, tuple[Request, int]] = {}
        for node, req in self.bound.values():
            have, count = out.get(node, (Request(), 0))
            out[node] = (Request(have.cpu + req.cpu, have.memory + req.memory), count + 1)
        return out

    def schedule(self) -> int:
        """Try the pods that need it; returns how many were bound."""
        todo = set(self.pending) if self.retry_all else set(self.fresh)
        self.retry_all = False
        self.fresh.clear()
        if not todo:
            return 0
        nodes = [self.api.store.get("nodes", "", name) for _, name, _ in self.api.store.scan("nodes", None)]
        node_objs = [n for n in nodes if n is not None]
        bound = 0
        for ns, name in sorted(todo):
            pod = self.api.store.get("pods", ns, name)
            if pod is None or not self._wants(pod):
                continue
            choice, message = fit(pod, node_objs, self._usage())
            try:
                if choice is not None:
                    self.api.bind(pod, choice)
                    self.api.record_event(
                        pod,
                        "Scheduled",
                        f"Successfully assigned {ns}/{name} to {choice}",
                        component=COMPONENT,
                    )
                    bound += 1
                else:
                    self._unschedulable(pod, message)
            except errors.ApiError as exc:
                _log.warning("scheduling failed", pod=f"{ns}/{name}", error=exc.message)
        return bound

    def _unschedulable(self, pod: dict[str, Any], message: str) -> None:
        res = self.api.registry.lookup("", "v1", "pods")
        assert res is not None
        old = next(
            (c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "PodScheduled"),
            None,
        )
        if old and old.get("status") == "False" and old.get("message") == message:
            return
        new = copy.deepcopy(pod)
        set_condition(new, "PodScheduled", "False", "Unschedulable", message, self.api.now())
        stored = self.api.write(res, pod, new)
        self.api.record_event(stored, "FailedScheduling", message, type_="Warning", component=COMPONENT)


async def run(
    api: Api, signal: ChangeSignal, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Schedule pending pods whenever the store changes, until cancelled."""
    sched = Scheduler(api)
    api.store.listeners.append(sched.observe)
    task_status.started()
    try:
        while True:
            changed = signal.event
            sched.schedule()
            await changed.wait()
    finally:
        api.store.listeners.remove(sched.observe)
