"""Server-side printing: ``meta.k8s.io/v1`` Table rows for ``kubectl get`` (and ``-o wide``).

Pure functions from stored objects to column definitions and cells, following
kube-apiserver's printers for the built-in kinds and a CRD's
``additionalPrinterColumns`` (simple JSONPath only). Columns with priority 1
are what ``-o wide`` adds.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from kubeedge.apiserver.machinery import parse_time
from kubeedge.apiserver.resources import Resource

Column = tuple[str, str, int]  # name, type, priority
Printer = Callable[[dict[str, Any], float], list[Any]]


def human_age(seconds: float) -> str:
    """Age as kubectl prints it (``45s``, ``3m12s``, ``5h``, ``12d``)."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = m // 60
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    d = h // 24
    if d < 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if d < 365 * 2:
        return f"{d}d"
    return f"{d // 365}y{d % 365}d"


def _age(obj: dict[str, Any], now: float) -> str:
    created = parse_time(str(obj.get("metadata", {}).get("creationTimestamp", "")))
    return "<unknown>" if created is None else human_age(now - created)


def _name(obj: dict[str, Any]) -> str:
    return str(obj.get("metadata", {}).get("name", ""))


def _pod(obj: dict[str, Any], now: float) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount", 0)) for c in statuses)
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for c in statuses:
        state = c.get("state") or {}
        if "waiting" in state and state["waiting"].get("reason"):
            reason = state["waiting"]["reason"]
        elif "terminated" in state and state["terminated"].get("reason"):
            reason = state["terminated"]["reason"]
    if obj.get("metadata", {}).get("deletionTimestamp"):
        reason = "Terminating"
    gates = spec.get("readinessGates") or []
    return [
        _name(obj),
        f"{ready}/{len(spec.get('containers') or [])}",
        reason,
        restarts,
        _age(obj, now),
        status.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        f"{len(gates)}" if gates else "<none>",
    ]


def _node(obj: dict[str, Any], now: float) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    state = "Unknown" if ready is None else ("Ready" if ready.get("status") == "True" else "NotReady")
    if spec.get("unschedulable"):
        state += ",SchedulingDisabled"
    labels = obj.get("metadata", {}).get("labels") or {}
    roles = sorted(
        k.removeprefix("node-role.kubernetes.io/") for k in labels if k.startswith("node-role.kubernetes.io/")
    )
    info = status.get("nodeInfo") or {}
    addrs = status.get("addresses") or []
    internal = next((a.get("address") for a in addrs if a.get("type") == "InternalIP"), "<none>")
    external = next((a.get("address") for a in addrs if a.get("type") == "ExternalIP"), "<none>")
    return [
        _name(obj),
        state,
        ",".join(roles) or "<none>",
        _age(obj, now),
        info.get("kubeletVersion", ""),
        internal,
        external,
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


def _service(obj: dict[str, Any], now: float) -> list[Any]:
    spec = obj.get("spec") or {}
    ports = ",".join(
        f"{p.get('port')}{':' + str(p['nodePort']) if p.get('nodePort') else ''}/{p.get('protocol', 'TCP')}"
        for p in spec.get("ports") or []
    )
    selector = ",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items()))
    return [
        _name(obj),
        spec.get("type", "ClusterIP"),
        spec.get("clusterIP") or "<none>",
        ",".join(spec.get("externalIPs") or []) or "<none>",
        ports or "<none>",
        _age(obj, now),
        selector or "<none>",
    ]


def _event(obj: dict[str, Any], now: float) -> list[Any]:
    inv = obj.get("involvedObject") or {}
    last = parse_time(str(obj.get("lastTimestamp") or obj.get("eventTime") or ""))
    return [
        "<unknown>" if last is None else human_age(now - last),
        obj.get("type", ""),
        obj.get("reason", ""),
        f"{str(inv.get('kind', '')).lower()}/{inv.get('name', '')}",
        obj.get("message", ""),
    ]


_BUILTIN: dict[str, tuple[list[Column], Printer]] = {
    "Pod": (
        [("Name", "string", 0), ("Ready", "string", 0), ("Status", "string", 0), ("Restarts", "string", 0),
         ("Age", "string", 0), ("IP", "string", 1), ("Node", "string", 1), ("Nominated Node", "string", 1),
         ("Readiness Gates", "string", 1)],
        _pod,
    ),
    "Node": (
        [("Name", "string", 0), ("Status", "string", 0), ("Roles", "string", 0), ("Age", "string", 0),
         ("Version", "string", 0), ("Internal-IP", "string", 1), ("External-IP", "string", 1),
         ("OS-Image", "string", 1), ("Kernel-Version", "string", 1), ("Container-Runtime", "string", 1)],
        _node,
    ),
    "Namespace": (
        [("Name", "string", 0), ("Status", "string", 0), ("Age", "string", 0)],
        lambda o, now: [_name(o), (o.get("status") or {}).get("phase", ""), _age(o, now)],
    ),
    "Service": (
        [("Name", "string", 0), ("Type", "string", 0), ("Cluster-IP", "string", 0), ("External-IP", "string", 0),
         ("Port(s)", "string", 0), ("Age", "string", 0), ("Selector", "string", 1)],
        _service,
    ),
    "ConfigMap": (
        [("Name", "string", 0), ("Data", "integer", 0), ("Age", "string", 0)],
        lambda o, now: [_name(o), len(o.get("data") or {}) + len(o.get("binaryData") or {}), _age(o, now)],
    ),
    "Secret": (
        [("Name", "string", 0), ("Type", "string", 0), ("Data", "integer", 0), ("Age", "string", 0)],
        lambda o, now: [_name(o), o.get("type", ""), len(o.get("data") or {}), _age(o, now)],
    ),
    "Event": (
        [("Last Seen", "string", 0), ("Type", "string", 0), ("Reason", "string", 0), ("Object", "string", 0),
         ("Message", "string", 0)],
        _event,
    ),
    "Lease": (
        [("Name", "string", 0), ("Holder", "string", 0), ("Age", "string", 0)],
        lambda o, now: [_name(o), (o.get("spec") or {}).get("holderIdentity", ""), _age(o, now)],
    ),
    "Endpoints": (
        [("Name", "string", 0), ("Endpoints", "string", 0), ("Age", "string", 0)],
        lambda o, now: [
            _name(o),
            ",".join(
                f"{a.get('ip')}:{p.get('port')}"
                for s in o.get("subsets") or []
                for a in s.get("addresses") or []
                for p in s.get("ports") or [{}]
            )
            or "<none>",
            _age(o, now),
        ],
    ),
}  # fmt: skip

_JSONPATH = re.compile(r"^\.?([A-Za-z0-9_$.\-\[\]\"'=?@()]+)$")


def jsonpath_value(obj: Any, path: str) -> Any:
    """Evaluate a simple ``.a.b[0].c`` JSONPath (what printer columns use); None if absent."""
    text = path.strip().removeprefix("{").removesuffix("}").lstrip("$")
    cur = obj
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", text):
        if part.startswith("["):
            idx = int(part[1:-1])
            cur = cur[idx] if isinstance(cur, list) and idx < len(cur) else None
        else:
            cur = cur.get(part) if isinstance(cur, dict) else None
        if cur is None:
            return None
    return cur


def columns(res: Resource) -> list[dict[str, Any]]:
    """The Table columnDefinitions for ``res``."""
    if res.crd:
        cols: list[Column] = [("Name", "string", 0)]
        cols += [(str(c.get("name")), str(c.get("type", "string")), int(c.get("priority", 0)))
                 for c in res.printer_columns]  # fmt: skip
        if not any(c[0] == "Age" for c in cols):
            cols.append(("Age", "date", 0))
    else:
        cols = _BUILTIN.get(res.kind, ([("Name", "string", 0), ("Created At", "date", 0)], _name_created))[0]
    return [
        {"name": name, "type": "string" if typ == "date" else typ, "format": "name" if name == "Name" else "",
         "description": name, "priority": prio}
        for name, typ, prio in cols
    ]  # fmt: skip


def _name_created(obj: dict[str, Any], _now: float) -> list[Any]:
    return [_name(obj), obj.get("metadata", {}).get("creationTimestamp", "")]


def cells(res: Resource, obj: dict[str, Any], now: float) -> list[Any]:
    """One Table row's cells for ``obj``."""
    if res.crd:
        out: list[Any] = [_name(obj)]
        for col in res.printer_columns:
            value = jsonpath_value(obj, str(col.get("jsonPath", "")))
            if col.get("type") == "date" and isinstance(value, str):
                t = parse_time(value)
                value = human_age(now - t) if t is not None else value
            out.append("<none>" if value is None else value)
        if not any(c.get("name") == "Age" for c in res.printer_columns):
            out.append(_age(obj, now))
        return out
    printer = _BUILTIN.get(res.kind, (None, _name_created))[1]
    return printer(obj, now)


def table(
    res: Resource, objs: list[dict[str, Any]], now: float, *, include_object: str, list_meta: dict[str, Any]
) -> dict[str, Any]:
    """A ``meta.k8s.io/v1`` Table of ``objs``."""
    rows = []
    for obj in objs:
        row: dict[str, Any] = {"cells": cells(res, obj, now)}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata", {}),
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": columns(res),
        "rows": rows,
    }
