"""Sans-io DeviceController rules: edge reports -> Device status, Device objects -> what each node must get.

Owns the translation of upstream's edge reports (``twin/edge_updated`` MsgTwins, the ``state/update`` JSON
string) into the ``status`` of a ``devices.kubeedge.io/v1beta1`` Device, and the downstream plan for a
Device change (membership added/removed per node, object insert/update/delete).

Status shape: the embedded API server serves no ``DeviceStatus`` CR (upstream v1.23 moved status
there), so status is written to ``Device.status`` as upstream <= v1.22 did:
``status{twins[{propertyName, reported{value, metadata}, observedDesired{value, metadata}}], state,
lastOnlineTime}``. Metadata values are strings (the CRD says so).

Nothing here does I/O or reads a clock. Bad report content raises :class:`ReportError` naming the field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubeedge.kit import limits


class ReportError(ValueError):
    """An edge report that cannot be applied."""


@dataclass(frozen=True, slots=True)
class TwinReport:
    """Reported (and observed desired) values of some properties of one device."""

    reported: dict[str, tuple[str, dict[str, str]]]
    observed_desired: dict[str, tuple[str, dict[str, str]]]


@dataclass(frozen=True, slots=True)
class StateReport:
    """A device state report."""

    state: str
    last_online: str


def _meta(twin: Mapping[str, Any], part: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    pmeta = part.get("metadata")
    if isinstance(pmeta, Mapping) and "timestamp" in pmeta:
        out["timestamp"] = str(pmeta["timestamp"])[:32]
    tmeta = twin.get("metadata")
    if isinstance(tmeta, Mapping) and isinstance(tmeta.get("type"), str):
        out["type"] = tmeta["type"][:32]
    return out


def parse_twin_report(content: Any) -> TwinReport:
    """``{"event_id","timestamp","twin":{name: MsgTwin}}`` (object or JSON text) -> :class:`TwinReport`."""
    body = _object(content, "twin report")
    twin = body.get("twin")
    if not isinstance(twin, Mapping):
        raise ReportError("twin report: 'twin' must be an object")
    if len(twin) > limits.TWIN_MAX_PROPERTIES:
        raise ReportError(f"twin report: more than {limits.TWIN_MAX_PROPERTIES} properties")
    reported: dict[str, tuple[str, dict[str, str]]] = {}
    desired: dict[str, tuple[str, dict[str, str]]] = {}
    for name, msg_twin in twin.items():
        if not isinstance(name, str) or not isinstance(msg_twin, Mapping):
            raise ReportError(f"twin report: property {str(name)[:64]!r} must be an object")
        for key, into in (("actual", reported), ("expected", desired)):
            part = msg_twin.get(key)
            if isinstance(part, Mapping) and isinstance(part.get("value"), str):
                into[name] = (part["value"], _meta(msg_twin, part))
    return TwinReport(reported, desired)


def parse_state_report(content: Any) -> StateReport:
    """``{"device":{"state","lastOnlineTime"}}`` (upstream sends JSON text; objects accepted too)."""
    body = _object(content, "state report")
    device = body.get("device")
    if not isinstance(device, Mapping):
        raise ReportError("state report: 'device' must be an object")
    state = device.get("state")
    if not isinstance(state, str) or not state:
        raise ReportError("state report: 'device.state' must be a non-empty string")
    last = device.get("lastOnlineTime")
    return StateReport(state[:64], last[:64] if isinstance(last, str) else "")


def _object(content: Any, what: str) -> Mapping[str, Any]:
    if isinstance(content, str | bytes):
        if len(content) > limits.TWIN_MAX_PAYLOAD:
            raise ReportError(f"{what}: larger than {limits.TWIN_MAX_PAYLOAD} bytes")
        try:
            content = json.loads(content)
        except ValueError as e:
            raise ReportError(f"{what}: not valid JSON ({e})") from None
    if not isinstance(content, Mapping):
        raise ReportError(f"{what}: must be a JSON object")
    return content


def merge_twins(status: Mapping[str, Any] | None, report: TwinReport) -> list[dict[str, Any]]:
    """The ``status.twins`` list after applying ``report`` (order kept, new properties appended)."""
    current = (status or {}).get("twins")
    twins: list[dict[str, Any]] = (
        [dict(t) for t in current if isinstance(t, Mapping)] if isinstance(current, list) else []
    )
    index = {t.get("propertyName"): t for t in twins}
    for name in sorted(set(report.reported) | set(report.observed_desired)):
        entry = index.get(name)
        if entry is None:
            entry = {"propertyName": name}
            twins.append(entry)
            index[name] = entry
        if name in report.reported:
            value, meta = report.reported[name]
            entry["reported"] = {"value": value, "metadata": meta}
        if name in report.observed_desired:
            value, meta = report.observed_desired[name]
            entry["observedDesired"] = {"value": value, "metadata": meta}
    return twins


def node_of(device: Mapping[str, Any]) -> str:
    """``spec.nodeName`` of a Device, ``""`` when unbound."""
    spec = device.get("spec")
    node = spec.get("nodeName") if isinstance(spec, Mapping) else None
    return node if isinstance(node, str) else ""


def model_of(device: Mapping[str, Any]) -> str:
    """``spec.deviceModelRef.name`` of a Device, ``""`` when absent."""
    spec = device.get("spec")
    ref = spec.get("deviceModelRef") if isinstance(spec, Mapping) else None
    name = ref.get("name") if isinstance(ref, Mapping) else None
    return name if isinstance(name, str) else ""


def member(device: Mapping[str, Any]) -> dict[str, Any]:
    """The membership entry of a Device: ``{"id": "<ns>/<name>", "name", "description"}``."""
    meta = device.get("metadata") or {}
    ns, name = meta.get("namespace", "default"), meta.get("name", "")
    return {"id": f"{ns}/{name}", "name": name, "description": ""}
