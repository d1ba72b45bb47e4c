"""JSON codec of the beehive :class:`~kubeedge.proto.message.Message`, byte-compatible with upstream.

Owns the wire form: ``encode`` writes what Go's ``encoding/json`` writes for
beehive's ``model.Message`` (field order of the Go structs, compact separators,
Go's HTML-safe escaping of ``< > &`` and U+2028/U+2029), ``decode`` reads what
Go would read and validates it.

Wire invariants (upstream struct tags):

* ``header``: ``msg_id`` and ``timestamp`` always; ``parent_msg_id``,
  ``resourceversion`` and ``type`` only when non-empty; ``sync`` never (it is an
  in-process flag; decoding forces it false).
* ``route`` is always present (Go's ``omitempty`` has no effect on a struct),
  each of its fields only when non-empty, in the order source, destination,
  group, operation, resource.
* ``content`` is always present, ``null`` for ``None``.

Decoding is as tolerant as Go where that is harmless: unknown fields are
ignored, keys match case-insensitively (an exact match wins), ``null`` leaves a
field empty, text and binary frames (``str`` and ``bytes``) are both accepted,
``route`` may be missing. It is stricter where Go's leniency hides bugs: a
missing or empty ``msg_id`` is rejected, invalid UTF-8 is rejected (Go would
substitute U+FFFD), and NaN/Infinity are rejected as Go does.

Failure: every problem with the input, of any kind, raises :class:`CodecError`
(a ``ValueError``) with a message naming what was wrong. The size bound is
checked before anything is parsed; nesting depth is checked on the parsed value
by an iterative walk (and the C scanner's own recursion guard is turned into a
:class:`CodecError`), so hostile input cannot escape as ``RecursionError``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Self

from kubeedge.proto.message import Header, Message, Route

MAX_JSON_DEPTH: Final = 64
"""Default nesting bound; mirrors ``kit.limits.MAX_JSON_DEPTH`` (proto may not import kit; a test keeps them equal)."""

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1


class CodecError(ValueError):
    """Input that is not a valid beehive message (or content that cannot be written as JSON)."""


# --- encoding ------------------------------------------------------------------------------------------

# Go's encoder escapes these inside strings; they never occur outside strings in
# compact JSON, so a plain replace on the whole document is exact.
_GO_ESCAPES: Final = (
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("&", "\\u0026"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)


def _go_escape(text: str) -> str:
    # str.replace returns the same object when there is nothing to replace,
    # and each pass is a C-speed scan, cheaper than one regex search.
    for raw, escaped in _GO_ESCAPES:
        if raw in text:
            text = text.replace(raw, escaped)
    return text


def to_wire_dict(msg: Message) -> dict[str, Any]:
    """The wire form of ``msg`` as a plain dict, in upstream's field order and with its omissions."""
    h = msg.header
    header: dict[str, Any] = {"msg_id": h.msg_id}
    if h.parent_msg_id:
        header["parent_msg_id"] = h.parent_msg_id
    header["timestamp"] = h.timestamp
    if h.resource_version:
        header["resourceversion"] = h.resource_version
    if h.message_type:
        header["type"] = h.message_type
    r = msg.route
    route: dict[str, str] = {}
    if r.source:
        route["source"] = r.source
    if r.destination:
        route["destination"] = r.destination
    if r.group:
        route["group"] = r.group
    if r.operation:
        route["operation"] = r.operation
    if r.resource:
        route["resource"] = r.resource
    return {"header": header, "route": route, "content": msg.content}


def encode(msg: Message, *, max_size: int | None = None) -> bytes:
    """Serialise ``msg`` as one UTF-8 JSON document, as upstream writes it to a websocket frame.

    Raises :class:`CodecError` if the content is not JSON (non-str keys, NaN,
    cycles, too deep) or the result exceeds ``max_size`` bytes.
    """
    try:
        text = _ENCODER.encode(to_wire_dict(msg))
    except (TypeError, ValueError, RecursionError) as exc:
        raise CodecError(f"message content is not JSON-serialisable: {exc}") from None
    text = _go_escape(text)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (e.g. decoded from a "\ud800" escape) cannot be UTF-8;
        # the ASCII form keeps them as escapes, which Go reads as U+FFFD.
        data = _go_escape(_ASCII_ENCODER.encode(to_wire_dict(msg))).encode("ascii")
    if max_size is not None and len(data) > max_size:
        raise CodecError(f"encoded message is {len(data)} bytes, over the limit of {max_size}")
    return data


# --- decoding ------------------------------------------------------------------------------------------


def _too_deep(value: Any, max_depth: int) -> bool:
    """True if ``value`` nests containers deeper than ``max_depth`` (the top level is depth 1); iterative."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        if depth > max_depth:
            return True
        children = node.values() if type(node) is dict else node if type(node) is list else ()
        for child in children:
            if type(child) is dict or type(child) is list:
                push((child, depth + 1))
    return False


def _reject_constant(name: str) -> Any:
    raise CodecError(f"invalid JSON: {name} is not a JSON number")


def _finite_float(text: str) -> float:
    # A literal such as 1e999 parses to inf, which no JSON encoder (ours or Go's) can write back.
    value = float(text)
    if math.isinf(value):
        raise CodecError(f"invalid JSON: number {text[:32]} is out of range")
    return value


# Built once: json.loads/json.dumps with keyword arguments build a new coder on every call.
_DECODER: Final = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_ASCII_ENCODER: Final = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def loads_bounded(data: bytes | bytearray | str, *, max_size: int, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse any JSON document under the codec's bounds (size first, then depth); raises :class:`CodecError`."""
    if isinstance(data, bytes | bytearray):
        if len(data) > max_size:
            raise CodecError(f"message is {len(data)} bytes, over the limit of {max_size}")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CodecError(f"message is not valid UTF-8 (byte {exc.start})") from None
    elif isinstance(data, str):
        # A str frame's byte size is at least its length; check that before encoding anything.
        if len(data) > max_size:
            raise CodecError(f"message is over the limit of {max_size} bytes")
        try:
            size = len(data.encode("utf-8"))
        except UnicodeEncodeError:
            raise CodecError("message text contains lone surrogates, not valid UTF-8") from None
        if size > max_size:
            raise CodecError(f"message is {size} bytes, over the limit of {max_size}")
        text = data
    else:
        raise CodecError(f"message must be bytes or str, not {type(data).__name__}")
    try:
        value = _DECODER.decode(text)
    except CodecError:
        raise
    except RecursionError:
        # The C scanner checks the interpreter's recursion limit and unwinds cleanly.
        raise CodecError(f"JSON nesting is deeper than the limit of {max_depth}") from None
    except ValueError as exc:
        # JSONDecodeError and the int-digits limit.
        raise CodecError(f"invalid JSON: {exc}") from None
    # Cheap exit: fewer opening brackets in the whole text than the bound (even
    # counting those inside strings) means the bound cannot be exceeded.
    if text.count("{") + text.count("[") > max_depth and _too_deep(value, max_depth):
        raise CodecError(f"JSON nesting is deeper than the limit of {max_depth}")
    return value


_TOP: Final = {"header": "header", "route": "route", "content": "content"}
_HEADER: Final = {
    "msg_id": "msg_id",
    "parent_msg_id": "parent_msg_id",
    "timestamp": "timestamp",
    "resourceversion": "resource_version",
    "sync": "sync",
    "type": "message_type",
}
_ROUTE: Final = {
    "source": "source",
    "destination": "destination",
    "group": "group",
    "operation": "operation",
    "resource": "resource",
}


def _string(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise CodecError(f"{where} must be a string, not {_json_type(value)}")
    return value


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null"


def _field(key: str, known: Mapping[str, str]) -> str | None:
    # Go's decoder: an exact key, else a case-insensitive one.
    field = known.get(key)
    return field if field is not None else known.get(key.lower())


def _header(obj: Any) -> Header:
    if obj is None:
        obj = {}
    elif type(obj) is not dict:
        raise CodecError(f"header must be an object, not {_json_type(obj)}")
    msg_id = parent = rv = mtype = ""
    timestamp = 0
    for key, value in obj.items():
        field = _field(key, _HEADER)
        if field is None:
            continue
        if field == "timestamp":
            if value is None:
                timestamp = 0
            elif type(value) is not int:
                raise CodecError(f"header.timestamp must be an integer (Unix ms), not {_json_type(value)}")
            elif not _INT64_MIN <= value <= _INT64_MAX:
                raise CodecError("header.timestamp is out of the int64 range")
            else:
                timestamp = value
        elif field == "sync":
            # In-process flag only: a wire message is never a pending sync call.
            if value is not None and type(value) is not bool:
                raise CodecError(f"header.sync must be a boolean, not {_json_type(value)}")
        elif value is not None and type(value) is not str:
            raise CodecError(f"header.{field} must be a string, not {_json_type(value)}")
        elif field == "msg_id":
            msg_id = value or ""
        elif field == "parent_msg_id":
            parent = value or ""
        elif field == "resource_version":
            rv = value or ""
        else:
            mtype = value or ""
    if not msg_id:
        raise CodecError("header.msg_id is missing or empty")
    return Header(msg_id, timestamp, parent, rv, False, mtype)


def _route(obj: Any) -> Route:
    if obj is None or obj == {}:
        return _EMPTY_ROUTE
    if type(obj) is not dict:
        raise CodecError(f"route must be an object, not {_json_type(obj)}")
    values: dict[str, str] = {}
    for key, value in obj.items():
        field = _field(key, _ROUTE)
        if field is None:
            continue
        if value is not None and type(value) is not str:
            raise CodecError(f"route.{field} must be a string, not {_json_type(value)}")
        values[field] = value or ""
    return Route(**values)


_EMPTY_ROUTE: Final = Route()


def from_wire_dict(obj: Any) -> Message:
    """Validate a parsed JSON value as a beehive message; raises :class:`CodecError`."""
    if not isinstance(obj, dict):
        raise CodecError(f"message must be a JSON object, not {_json_type(obj)}")
    header = route = content = None
    for key, value in obj.items():
        field = _field(key, _TOP)
        if field == "header":
            header = value
        elif field == "route":
            route = value
        elif field == "content":
            content = value
    return Message(_header(header), _route(route), content)


def decode(data: bytes | bytearray | str, *, max_size: int, max_depth: int = MAX_JSON_DEPTH) -> Message:
    """Parse one websocket frame (text or binary) into a :class:`Message`.

    ``max_size`` (bytes) is checked before any parsing, nesting depth against
    ``max_depth`` (top-level object = 1) after. Any bad input raises :class:`CodecError`.
    """
    return from_wire_dict(loads_bounded(data, max_size=max_size, max_depth=max_depth))


# --- case-lenient helpers for untagged Go structs --------------------------------------------------------

_MISSING: Final = object()


def lenient_get(mapping: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """``mapping[key]`` matched like Go's decoder: exact key first, else the last case-insensitive match."""
    value = mapping.get(key, _MISSING)
    if value is not _MISSING:
        return value
    folded = key.lower()
    found: Any = default
    for k, v in mapping.items():
        if isinstance(k, str) and k.lower() == folded:
            found = v
    return found


def _require_object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise CodecError(f"{what} must be a JSON object, not {_json_type(value)}")
    return value


@dataclass(frozen=True, slots=True)
class ObjectResp:
    """Upstream's untagged ``ObjectResp{Object, Err}``: a query/insert reply with an object or an error."""

    object: Any = None
    err: Any = None
    """Go ``error`` values marshal as ``{}``; a string or k8s status may also appear."""

    @classmethod
    def from_json(cls, value: Any) -> Self:
        """Read from decoded content (case-insensitive keys); raises :class:`CodecError`."""
        obj = _require_object(value, "ObjectResp")
        return cls(object=lenient_get(obj, "Object"), err=lenient_get(obj, "Err"))

    def to_json(self) -> dict[str, Any]:
        """Upstream's spelling: ``{"Object": ..., "Err": ...}``."""
        return {"Object": self.object, "Err": self.err}


@dataclass(frozen=True, slots=True)
class LegacyPodStatus:
    """Legacy ``<ns>/podstatus`` content ``{"UID","Name","Status"}`` (Status is a k8s PodStatus object)."""

    uid: str
    name: str
    status: Mapping[str, Any]

    @classmethod
    def from_json(cls, value: Any) -> Self:
        """Read from decoded content (case-insensitive keys); raises :class:`CodecError`."""
        obj = _require_object(value, "pod status")
        status = lenient_get(obj, "Status")
        return cls(
            uid=_string(lenient_get(obj, "UID"), "pod status UID"),
            name=_string(lenient_get(obj, "Name"), "pod status Name"),
            status=_require_object({} if status is None else status, "pod status Status"),
        )

    def to_json(self) -> dict[str, Any]:
        """Upstream's spelling."""
        return {"UID": self.uid, "Name": self.name, "Status": dict(self.status)}


@dataclass(frozen=True, slots=True)
class LegacyNodeStatus:
    """Legacy ``<ns>/nodestatus/<name>`` content ``{"UID","Status","ExtendResources"}``."""

    uid: str
    status: Mapping[str, Any]
    extend_resources: Any = None

    @classmethod
    def from_json(cls, value: Any) -> Self:
        """Read from decoded content (case-insensitive keys); raises :class:`CodecError`."""
        obj = _require_object(value, "node status")
        status = lenient_get(obj, "Status")
        return cls(
            uid=_string(lenient_get(obj, "UID"), "node status UID"),
            status=_require_object({} if status is None else status, "node status Status"),
            extend_resources=lenient_get(obj, "ExtendResources"),
        )

    def to_json(self) -> dict[str, Any]:
        """Upstream's spelling."""
        return {"UID": self.uid, "Status": dict(self.status), "ExtendResources": self.extend_resources}


@dataclass(frozen=True, slots=True)
class DeviceState:
    """Device state fields of upstream's untagged structs (``{"State", "LastOnlineTime"}``)."""

    state: str
    last_online_time: str = ""

    @classmethod
    def from_json(cls, value: Any) -> Self:
        """Read from decoded content (case-insensitive keys); raises :class:`CodecError`."""
        obj = _require_object(value, "device state")
        return cls(
            state=_string(lenient_get(obj, "State"), "device State"),
            last_online_time=_string(lenient_get(obj, "LastOnlineTime"), "device LastOnlineTime"),
        )

    def to_json(self) -> dict[str, Any]:
        """Upstream's spelling; ``LastOnlineTime`` omitted when empty."""
        out: dict[str, Any] = {"State": self.state}
        if self.last_online_time:
            out["LastOnlineTime"] = self.last_online_time
        return out
