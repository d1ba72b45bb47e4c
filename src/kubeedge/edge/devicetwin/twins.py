"""Twin rules, sans-io: validation of mapper and cloud payloads, the merge of an update into stored twins.

Owns the shape of upstream's ``MsgTwin`` (``expected``, ``actual``, ``optional``, ``metadata.type``,
``expected_version``/``actual_version`` as ``{"cloud": n, "edge": n}``), the key and value rules, the
accepted value types and device states, and the payloads DeviceTwin publishes (update result, delta,
document, error results).

Invariants:

- Keys match ``^[a-zA-Z0-9-_.,:/@#]{1,128}$``; non-empty values use the same characters, at most 512;
  ``metadata.type`` is ``string`` (default), ``int``/``integer``, ``float``, ``boolean`` or ``deleted`` and
  the value must parse as that type. Anything else is a :class:`TwinError` (code 400) naming the property,
  never a silent drop: the whole update is refused so a mapper never sees half of it applied.
- Versions: an edge update (mapper) bumps the ``edge`` counter of what it changed. A cloud update bumps
  ``cloud``; when it carries versions of its own (sync), they are adopted only if neither counter goes
  backwards (upstream's ``dealVersion``), else the property is refused with code 409.
- ``deleted`` type removes the property. Nothing here reads a clock: ``now_ms`` is passed in.
"""

from __future__ import annotations

import copy
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from kubeedge.kit import limits

# Used with fullmatch: Python's "$" also matches before a trailing newline, Go's (upstream's) does not.
KEY_RE: Final = re.compile(r"^[a-zA-Z0-9\-_.,:/@#]{1,128}$")
VALUE_RE: Final = re.compile(r"^[a-zA-Z0-9\-_.,:/@#]{1,512}$")
VALUE_TYPES: Final = frozenset({"string", "int", "integer", "float", "boolean", "deleted"})
DEVICE_STATES: Final = frozenset({"online", "offline", "ok", "unknown", "unhealthy"})
"""States a mapper may report; ``lastOnlineTime`` is set for ``online`` and ``ok`` only."""
ONLINE_STATES: Final = frozenset({"online", "ok"})

BAD_REQUEST: Final = 400
NOT_FOUND: Final = 404
CONFLICT: Final = 409
INTERNAL_ERROR: Final = 500


class Origin(enum.StrEnum):
    """Who changes a twin: the mapper on the edge, or the cloud (Device desired values)."""

    EDGE = "edge"
    CLOUD = "cloud"


class TwinError(ValueError):
    """A refused request; ``code`` and ``reason`` go into the MQTT error result."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Version:
    """Upstream's ``TwinVersion``: how many cloud and edge changes a value has seen."""

    cloud: int = 0
    edge: int = 0

    @classmethod
    def from_json(cls, value: Any, where: str) -> Version | None:
        """Parse ``{"cloud": n, "edge": n}`` (``None`` when absent); raises :class:`TwinError`."""
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise TwinError(BAD_REQUEST, f"{where}: version must be an object")
        out = []
        for key in ("cloud", "edge"):
            n = value.get(key, 0)
            if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < 2**63:
                raise TwinError(BAD_REQUEST, f"{where}: version {key} must be a non-negative integer")
            out.append(n)
        return cls(out[0], out[1])

    def to_json(self) -> dict[str, int]:
        """The wire form."""
        return {"cloud": self.cloud, "edge": self.edge}


@dataclass(frozen=True, slots=True)
class Twin:
    """One stored property twin (a ``device_twin`` row)."""

    name: str
    expected: str | None = None
    actual: str | None = None
    expected_ts: int = 0
    actual_ts: int = 0
    expected_version: Version = Version()
    actual_version: Version = Version()
    optional: bool = True
    attr_type: str = "string"

    def to_json(self) -> dict[str, Any]:
        """Upstream's ``MsgTwin`` for this twin."""
        out: dict[str, Any] = {}
        if self.expected is not None:
            out["expected"] = {"value": self.expected, "metadata": {"timestamp": self.expected_ts}}
            out["expected_version"] = self.expected_version.to_json()
        if self.actual is not None:
            out["actual"] = {"value": self.actual, "metadata": {"timestamp": self.actual_ts}}
            out["actual_version"] = self.actual_version.to_json()
        out["optional"] = self.optional
        out["metadata"] = {"type": self.attr_type}
        return out


@dataclass(frozen=True, slots=True)
class _Change:
    expected: str | None
    actual: str | None
    attr_type: str | None
    optional: bool | None
    expected_version: Version | None
    actual_version: Version | None
    delete: bool


@dataclass
class MergeResult:
    """What an update did: the twins after it, the changed ones before and after, and the delta."""

    twins: dict[str, Twin]
    changed: dict[str, tuple[Twin | None, Twin | None]] = field(default_factory=dict)

    @property
    def delta(self) -> dict[str, str]:
        """Expected values that differ from the actual ones (over all twins, as upstream's delta)."""
        return delta_of(self.twins)


def delta_of(twins: Mapping[str, Twin]) -> dict[str, str]:
    """``{name: expected}`` for every twin whose expected value is set and differs from the actual one."""
    return {
        name: t.expected
        for name, t in sorted(twins.items())
        if t.expected is not None and t.expected != t.actual
    }


def check_key(name: Any, where: str = "property") -> str:
    """A valid twin or attribute key, or :class:`TwinError`."""
    if not isinstance(name, str) or not KEY_RE.fullmatch(name):
        raise TwinError(BAD_REQUEST, f"{where} key {str(name)[:140]!r}: must match {KEY_RE.pattern}")
    return name


def _check_value(name: str, value: Any, attr_type: str) -> str:
    if not isinstance(value, str):
        raise TwinError(BAD_REQUEST, f"property {name!r}: value must be a string")
    if value == "" or attr_type == "deleted":
        return value
    if not VALUE_RE.fullmatch(value):
        raise TwinError(BAD_REQUEST, f"property {name!r}: value {value[:40]!r} must match {VALUE_RE.pattern}")
    try:
        if attr_type in {"int", "integer"}:
            int(value, 10)
        elif attr_type == "float":
            float(value)
        elif attr_type == "boolean" and value not in {"true", "false", "True", "False", "1", "0"}:
            raise ValueError(value)
    except ValueError:
        raise TwinError(
            BAD_REQUEST, f"property {name!r}: value {value!r} is not a valid {attr_type}"
        ) from None
    return value


def _value_of(name: str, part: Any, what: str, attr_type: str) -> str | None:
    if part is None:
        return None
    if not isinstance(part, Mapping):
        raise TwinError(BAD_REQUEST, f"property {name!r}: {what} must be an object")
    value = part.get("value")
    if value is None:
        return None
    return _check_value(name, value, attr_type)


def parse_update(twin: Any) -> dict[str, _Change]:
    """Validate a ``twin`` object of an update; raises :class:`TwinError` naming the first bad property."""
    if not isinstance(twin, Mapping) or not twin:
        raise TwinError(BAD_REQUEST, "twin: must be a non-empty object of properties")
    if len(twin) > limits.TWIN_MAX_PROPERTIES:
        raise TwinError(BAD_REQUEST, f"twin: more than {limits.TWIN_MAX_PROPERTIES} properties")
    changes: dict[str, _Change] = {}
    for name, body in twin.items():
        check_key(name)
        if body is None:
            changes[name] = _Change(None, None, None, None, None, None, delete=True)
            continue
        if not isinstance(body, Mapping):
            raise TwinError(BAD_REQUEST, f"property {name!r}: must be an object")
        metadata = body.get("metadata")
        attr_type: str | None = None
        if metadata is not None:
            if not isinstance(metadata, Mapping):
                raise TwinError(BAD_REQUEST, f"property {name!r}: metadata must be an object")
            raw_type = metadata.get("type")
            if raw_type is not None:
                if not isinstance(raw_type, str) or raw_type.lower() not in VALUE_TYPES:
                    raise TwinError(
                        BAD_REQUEST,
                        f"property {name!r}: metadata.type {str(raw_type)[:40]!r} is not one of "
                        f"{', '.join(sorted(VALUE_TYPES))}",
                    )
                attr_type = raw_type.lower()
        effective = attr_type or "string"
        optional = body.get("optional")
        if optional is not None and not isinstance(optional, bool):
            raise TwinError(BAD_REQUEST, f"property {name!r}: optional must be a boolean")
        changes[name] = _Change(
            expected=_value_of(name, body.get("expected"), "expected", effective),
            actual=_value_of(name, body.get("actual"), "actual", effective),
            attr_type=attr_type,
            optional=optional,
            expected_version=Version.from_json(body.get("expected_version"), f"property {name!r}"),
            actual_version=Version.from_json(body.get("actual_version"), f"property {name!r}"),
            delete=attr_type == "deleted",
        )
    return changes


def _bump(current: Version, requested: Version | None, origin: Origin, name: str) -> Version:
    if origin is Origin.EDGE or requested is None:
        if origin is Origin.EDGE:
            return Version(current.cloud, current.edge + 1)
        return Version(current.cloud + 1, current.edge)
    # A cloud sync that carries versions: neither counter may go backwards (upstream dealVersion).
    if current.cloud > requested.cloud:
        raise TwinError(
            CONFLICT, f"property {name!r}: cloud version {requested.cloud} is older than {current.cloud}"
        )
    if current.edge > requested.edge:
        raise TwinError(
            CONFLICT, f"property {name!r}: edge version {requested.edge} conflicts with {current.edge}"
        )
    return requested


def merge(
    stored: Mapping[str, Twin], update: Mapping[str, _Change], *, origin: Origin, now_ms: int
) -> MergeResult:
    """Apply a validated update; all-or-nothing (raises :class:`TwinError` before changing anything).

    The mapper (``Origin.EDGE``) normally writes ``actual``; the cloud writes ``expected``. Either may
    write both, as upstream allows.
    """
    twins = dict(stored)
    result = MergeResult(twins)
    for name, change in update.items():
        before = twins.get(name)
        if change.delete:
            if before is not None:
                del twins[name]
                result.changed[name] = (before, None)
            continue
        after = before or Twin(name)
        if change.attr_type is not None and change.attr_type != after.attr_type:
            after = _replace(after, attr_type=change.attr_type)
        if change.optional is not None:
            after = _replace(after, optional=change.optional)
        if change.expected is not None and change.expected != after.expected:
            version = _bump(after.expected_version, change.expected_version, origin, name)
            after = _replace(after, expected=change.expected, expected_ts=now_ms, expected_version=version)
        if change.actual is not None and change.actual != after.actual:
            version = _bump(after.actual_version, change.actual_version, origin, name)
            after = _replace(after, actual=change.actual, actual_ts=now_ms, actual_version=version)
        elif change.actual is not None:
            after = _replace(after, actual_ts=now_ms)
        if after != before:
            twins[name] = after
            result.changed[name] = (before, after)
    return result


def _replace(twin: Twin, **changes: Any) -> Twin:
    values = {f: getattr(twin, f) for f in Twin.__dataclass_fields__}
    values.update(changes)
    return Twin(**values)


def check_state(state: Any) -> str:
    """A reportable device state, or :class:`TwinError`."""
    if not isinstance(state, str) or state.lower() not in DEVICE_STATES:
        raise TwinError(
            BAD_REQUEST, f"state {str(state)[:40]!r}: must be one of {', '.join(sorted(DEVICE_STATES))}"
        )
    return state.lower()


def rfc3339(now_ms: int) -> str:
    """``now_ms`` as RFC 3339 UTC with seconds, as Go's ``time.RFC3339``."""
    return datetime.fromtimestamp(now_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_id(payload: Any) -> str:
    """The request's ``event_id`` (echoed in results), ``""`` when absent or not text."""
    if isinstance(payload, Mapping):
        value = payload.get("event_id")
        if isinstance(value, str):
            return value[:128]
    return ""


def twins_json(twins: Mapping[str, Twin]) -> dict[str, Any]:
    """``{name: MsgTwin}`` sorted by name."""
    return {name: twins[name].to_json() for name in sorted(twins)}


def update_result(eid: str, now_ms: int, twins: Mapping[str, Twin]) -> dict[str, Any]:
    """Payload of ``twin/update/result`` and ``twin/get/result``."""
    return {"event_id": eid, "timestamp": now_ms, "twin": twins_json(twins)}


def error_result(eid: str, now_ms: int, error: TwinError) -> dict[str, Any]:
    """An error result: upstream's ``{"event_id","timestamp","code","reason"}``."""
    return {"event_id": eid, "timestamp": now_ms, "code": error.code, "reason": error.reason}


def delta_payload(eid: str, now_ms: int, twins: Mapping[str, Twin]) -> dict[str, Any] | None:
    """``twin/update/delta`` payload, or ``None`` when no expected value differs from its actual one."""
    delta = delta_of(twins)
    if not delta:
        return None
    return {"event_id": eid, "timestamp": now_ms, "twin": twins_json(twins), "delta": delta}


def document_payload(eid: str, now_ms: int, result: MergeResult) -> dict[str, Any]:
    """``twin/update/document`` payload: ``last`` and ``current`` of each changed twin."""
    doc = {
        name: {
            "last": before.to_json() if before is not None else None,
            "current": after.to_json() if after is not None else None,
        }
        for name, (before, after) in sorted(result.changed.items())
    }
    return {"event_id": eid, "timestamp": now_ms, "twin": copy.deepcopy(doc)}
